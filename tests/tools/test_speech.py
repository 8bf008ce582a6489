"""How times are worded for the caller."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from integrations.tools.speech import join_and, join_or, spoken_datetime, spoken_slot_list, spoken_time

NEW_YORK = ZoneInfo("America/New_York")


def test_twelve_hour_clock():
    assert spoken_time(datetime(2026, 12, 8, 0, 5)) == "12:05 AM"
    assert spoken_time(datetime(2026, 12, 8, 12, 0)) == "12:00 PM"
    assert spoken_time(datetime(2026, 12, 8, 23, 30)) == "11:30 PM"


def test_the_year_is_said_only_when_it_is_not_this_one():
    moment = datetime(2027, 1, 4, 9, 0, tzinfo=NEW_YORK)
    assert spoken_datetime(moment, today=date(2027, 1, 1)) == "Monday, January 4 at 9:00 AM"
    assert spoken_datetime(moment, today=date(2026, 12, 30)) == "Monday, January 4, 2027 at 9:00 AM"


def test_the_repeated_hour_of_a_dst_change_names_its_zone():
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert (spoken_time(first), spoken_time(second)) == ("1:30 AM EDT", "1:30 AM EST")
    assert spoken_time(datetime(2026, 11, 1, 3, 30, tzinfo=NEW_YORK)) == "3:30 AM"


def test_lists():
    assert join_or(["a"]) == "a"
    assert join_or(["a", "b"]) == "a or b"
    assert join_and(["a", "b", "c"]) == "a, b, and c"
    slots = [datetime(2026, 12, 8, 14, 0), datetime(2026, 12, 8, 16, 0), datetime(2026, 12, 9, 9, 0)]
    assert spoken_slot_list(slots) == (
        "Tuesday, December 8 at 2:00 PM or 4:00 PM, or Wednesday, December 9 at 9:00 AM"
    )
