"""Calling windows ("Mon–Fri 09:00–17:00 America/Los_Angeles") and when the next one opens.

All arithmetic is done on wall-clock times in the window's own timezone and compared as aware instants,
so a window opening on the far side of a DST change lands on the right UTC instant (never "+24 h").
A boundary that falls in a spring-forward gap is read with the pre-transition offset, as zoneinfo does
(02:30 on that day means 03:30 of the new time); windows normally sit far from 02:00, where DST moves.
"""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass(frozen=True)
class CallingWindow:
    days: list  # weekday numbers, 0 = Monday
    start: dt.time
    end: dt.time
    timezone: str

    @property
    def tz(self):
        return zoneinfo.ZoneInfo(self.timezone)

    def is_open(self, at):
        return self.next_opening(at) == at

    def next_opening(self, at):
        """`at` itself when the window is open at `at`, else the instant it next opens (aware)."""
        # Compare in UTC: Python compares two datetimes sharing one tzinfo by wall time, ignoring DST.
        instant = at.astimezone(dt.UTC)
        local_today = at.astimezone(self.tz).date()
        for offset in range(8):  # a week and a day: the same weekday again, after today's window closed
            day = local_today + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens, closes = self._at(day, self.start), self._at(day, self.end)
            if opens <= instant < closes:
                return at
            if instant < opens:
                return opens.astimezone(self.tz)
        raise ValueError(f"Calling window {self} has no days: it never opens.")

    def _at(self, day, wall_time):
        return dt.datetime.combine(day, wall_time, tzinfo=self.tz).astimezone(dt.UTC)

    def __str__(self):
        return f"{describe_days(self.days)} {self.start:%H:%M}–{self.end:%H:%M} {self.timezone}"


def describe_days(days):
    """[0, 1, 2, 3, 4] → "Mon–Fri"; [0, 2, 5] → "Mon, Wed, Sat"."""
    days = sorted(set(days))
    if len(days) == 7:
        return "every day"
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{DAY_NAMES[days[0]]}–{DAY_NAMES[days[-1]]}"
    return ", ".join(DAY_NAMES[day] for day in days)
