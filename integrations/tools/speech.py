"""Dates and times as an agent should say them: "Tuesday, December 8 at 2:00 PM".

Written out by hand rather than with locale-dependent strftime codes, so the words do not change
with the server's locale.
"""

from datetime import date, datetime
from itertools import groupby

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def spoken_date(day: date, *, today: date | None = None) -> str:
    """ "Tuesday, December 8"; the year is added when it is not the current one."""
    text = f"{WEEKDAYS[day.weekday()]}, {MONTHS[day.month - 1]} {day.day}"
    if today is not None and day.year != today.year:
        text += f", {day.year}"
    return text


def spoken_time(moment: datetime) -> str:
    """ "2:00 PM", "12:30 AM"; "1:30 AM EST" in the hour a DST change repeats, where it is ambiguous."""
    hour = moment.hour % 12 or 12
    text = f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    if moment.tzinfo is not None and moment.replace(fold=0).utcoffset() != moment.replace(fold=1).utcoffset():
        text += f" {moment.tzname()}"
    return text


def spoken_datetime(moment: datetime, *, today: date | None = None) -> str:
    """`moment` must already be in the timezone the caller hears."""
    return f"{spoken_date(moment.date(), today=today)} at {spoken_time(moment)}"


def join_or(items) -> str:
    return _join(items, "or")


def join_and(items) -> str:
    return _join(items, "and")


def _join(items, word):
    items = list(items)
    if len(items) <= 2:
        return f" {word} ".join(items)
    return ", ".join(items[:-1]) + f", {word} " + items[-1]


def spoken_slot_list(moments, *, today: date | None = None) -> str:
    """Slots grouped by day: "Tuesday, December 8 at 2:00 PM or 4:00 PM, or Wednesday, December 9 at 9:00 AM".

    `moments` are sorted local datetimes.
    """
    days = []
    for day, group in groupby(moments, key=lambda moment: moment.date()):
        days.append(f"{spoken_date(day, today=today)} at {join_or(spoken_time(m) for m in group)}")
    # A comma between days keeps "2:00 PM or 4:00 PM, or Wednesday..." from running together.
    return ", or ".join(days) if len(days) == 2 else join_or(days)
