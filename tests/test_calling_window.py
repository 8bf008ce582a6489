"""Calling windows: when the next one opens, in the window's timezone, across DST changes."""

import datetime as dt
import zoneinfo

import pytest

from integrations.outbound.calling_window import CallingWindow, describe_days

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
UTC = dt.UTC
WEEKDAYS_9_TO_5 = CallingWindow(
    days=[0, 1, 2, 3, 4], start=dt.time(9), end=dt.time(17), timezone="America/Los_Angeles"
)


def la(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=LA)


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "now,opens",
    [
        (la("2026-12-07 09:00"), la("2026-12-07 09:00")),  # Monday, the minute it opens: open
        (la("2026-12-07 16:59"), la("2026-12-07 16:59")),  # still open
        (la("2026-12-07 07:30"), la("2026-12-07 09:00")),  # early: later today
        (la("2026-12-07 17:00"), la("2026-12-08 09:00")),  # closed at 17:00 sharp: tomorrow
        (la("2026-12-04 18:30"), la("2026-12-07 09:00")),  # Friday evening: Monday
        (la("2026-12-05 12:00"), la("2026-12-07 09:00")),  # Saturday noon: Monday
    ],
)
def test_next_opening(now, opens):
    assert WEEKDAYS_9_TO_5.next_opening(now) == opens
    assert WEEKDAYS_9_TO_5.is_open(now) == (now == opens)


def test_now_in_utc_is_read_in_the_windows_timezone():
    # 02:00 UTC on Tuesday is still Monday 18:00 in Los Angeles: the next opening is Tuesday 09:00 there.
    opens = WEEKDAYS_9_TO_5.next_opening(utc("2026-12-08 02:00"))
    assert opens == la("2026-12-08 09:00") == utc("2026-12-08 17:00")


def test_spring_forward_weekend_opens_at_9_local_on_the_new_offset():
    # DST starts Sunday 2026-03-08. Friday's window opened at 17:00 UTC (PST); Monday's opens at 16:00 UTC.
    opens = WEEKDAYS_9_TO_5.next_opening(la("2026-03-06 18:00"))
    assert opens.astimezone(UTC) == utc("2026-03-09 16:00")
    assert opens.astimezone(LA).strftime("%H:%M %Z") == "09:00 PDT"


def test_fall_back_weekend_opens_at_9_local_on_the_new_offset():
    # DST ends Sunday 2026-11-01: Monday 09:00 PST is 17:00 UTC, an hour later than Friday's.
    opens = WEEKDAYS_9_TO_5.next_opening(la("2026-10-30 18:00"))
    assert opens.astimezone(UTC) == utc("2026-11-02 17:00")


def test_window_on_the_dst_day_itself():
    every_day = CallingWindow(
        days=list(range(7)), start=dt.time(9), end=dt.time(17), timezone="America/Los_Angeles"
    )
    # Saturday 18:00 PST to Sunday 09:00 PDT: 15 hours on the wall clock, 14 hours of real time.
    opens = every_day.next_opening(la("2026-03-07 18:00"))
    assert opens.astimezone(UTC) == utc("2026-03-08 16:00")
    assert opens.astimezone(UTC) - la("2026-03-07 18:00").astimezone(UTC) == dt.timedelta(hours=14)


def test_a_single_day_window_waits_a_whole_week():
    mondays = CallingWindow(days=[0], start=dt.time(10), end=dt.time(11), timezone="Europe/Paris")
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    now = dt.datetime(2026, 12, 7, 11, 0, tzinfo=paris)  # Monday, just closed
    assert mondays.next_opening(now) == dt.datetime(2026, 12, 14, 10, 0, tzinfo=paris)


def test_a_window_without_days_never_opens():
    with pytest.raises(ValueError, match="never opens"):
        CallingWindow(days=[], start=dt.time(9), end=dt.time(17), timezone="UTC").next_opening(
            utc("2026-12-07 00:00")
        )


def test_describe():
    assert str(WEEKDAYS_9_TO_5) == "Mon–Fri 09:00–17:00 America/Los_Angeles"
    assert describe_days([0, 2, 5]) == "Mon, Wed, Sat"
    assert describe_days(range(7)) == "every day"
    assert describe_days([5, 6]) == "Sat, Sun"
