"""Calendar tools through the custom-function endpoint: availability wording across timezones and DST,
booking against a re-checked slot, alternatives when it is taken, rescheduling and cancelling."""

import copy
from datetime import UTC, datetime

import pytest
import requests

from calls.models import ToolInvocation
from integrations.ghl import CALENDARS_API, CONTACTS_API
from integrations.models import GhlLocation
from tests.tools.support import (
    GHL,
    assert_ghl_headers,
    call_tool,
    epoch_ms,
    free_slots,
    make_tool,
    query,
    sent_json,
)

FREE_SLOTS_URL = f"{GHL}/calendars/cal_Cleanings01/free-slots"
APPOINTMENTS_URL = f"{GHL}/calendars/events/appointments"
DANA_APPOINTMENTS_URL = f"{GHL}/contacts/c_Dana7Lee01/appointments"
DECEMBER_SLOTS = free_slots(
    "2026-12-08T09:00:00-08:00",
    "2026-12-08T14:00:00-08:00",
    "2026-12-08T16:00:00-08:00",
    "2026-12-09T10:30:00-08:00",
)


@pytest.fixture
def availability(location):
    return make_tool("check_availability")


@pytest.fixture
def booking(location):
    return make_tool("book_appointment", config={"slots_to_offer": 2})


# --- check_availability --------------------------------------------------------------------------


def test_availability_speaks_slots_in_the_location_timezone(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)

    response = call_tool(client, "check_availability", {"date": "2026-12-08", "time_of_day": "afternoon"})

    assert response.status_code == 200
    assert response.json() == {
        "available": True,
        "date": "2026-12-08",
        "end_date": "2026-12-08",
        "time_of_day": "afternoon",
        "timezone": "America/Los_Angeles",
        "calendar_id": "cal_Cleanings01",
        "slots": [
            {"start_time": "2026-12-08T14:00:00-08:00", "spoken": "Tuesday, December 8 at 2:00 PM"},
            {"start_time": "2026-12-08T16:00:00-08:00", "spoken": "Tuesday, December 8 at 4:00 PM"},
        ],
        "total_matching": 2,
        "message": "I have Tuesday, December 8 at 2:00 PM or 4:00 PM.",
    }
    (request,) = ghl.calls
    assert_ghl_headers(request, CALENDARS_API)
    # The asked day from local midnight, plus 7 days of look-ahead for alternatives, in epoch ms.
    assert query(request) == {
        "startDate": str(epoch_ms("2026-12-08T00:00:00-08:00")),
        "endDate": str(epoch_ms("2026-12-16T00:00:00-08:00") - 1),
        "timezone": "America/Los_Angeles",
    }


def test_availability_in_the_callers_timezone_keeps_ghl_strings(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)

    body = call_tool(
        client, "check_availability", {"date": "2026-12-08", "timezone": "America/New_York"}
    ).json()

    assert body["timezone"] == "America/New_York"
    # Same instants, spoken in New York time; the strings are exactly GHL's, for booking.
    assert body["slots"] == [
        {"start_time": "2026-12-08T09:00:00-08:00", "spoken": "Tuesday, December 8 at 12:00 PM"},
        {"start_time": "2026-12-08T14:00:00-08:00", "spoken": "Tuesday, December 8 at 5:00 PM"},
        {"start_time": "2026-12-08T16:00:00-08:00", "spoken": "Tuesday, December 8 at 7:00 PM"},
    ]
    assert query(ghl.calls[0])["startDate"] == str(epoch_ms("2026-12-08T00:00:00-05:00"))
    assert query(ghl.calls[0])["timezone"] == "America/New_York"


def test_availability_in_the_contacts_timezone_from_the_call(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    variables = {"contact_id": "c_Dana7Lee01", "timezone": "America/Chicago"}

    body = call_tool(
        client, "check_availability", {"date": "2026-12-08"}, retell_llm_dynamic_variables=variables
    ).json()

    # No timezone argument and none on the tool: the contact's (a dynamic variable) beats the location's.
    assert body["timezone"] == "America/Chicago"
    assert [slot["spoken"] for slot in body["slots"]] == [
        "Tuesday, December 8 at 11:00 AM",
        "Tuesday, December 8 at 4:00 PM",
        "Tuesday, December 8 at 6:00 PM",
    ]
    assert query(ghl.calls[0])["timezone"] == "America/Chicago"
    assert query(ghl.calls[0])["startDate"] == str(epoch_ms("2026-12-08T00:00:00-06:00"))


def test_time_of_day_is_the_callers_part_of_the_day(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)

    body = call_tool(
        client,
        "check_availability",
        {"date": "2026-12-08", "time_of_day": "evening", "timezone": "America/New_York"},
    ).json()

    # 2 PM and 4 PM in Los Angeles are 5 PM and 7 PM in New York: evening there.
    assert [slot["spoken"] for slot in body["slots"]] == [
        "Tuesday, December 8 at 5:00 PM",
        "Tuesday, December 8 at 7:00 PM",
    ]


def test_availability_across_the_autumn_dst_change(client, ghl, clock, location):
    clock.now = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    location.timezone = "America/New_York"
    location.save()
    make_tool("check_availability", config={"slots_to_offer": 5, "search_ahead_days": 0})
    ghl.get(
        FREE_SLOTS_URL,
        json=free_slots(
            "2026-10-31T09:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",  # the repeated hour: a different instant
            "2026-11-01T09:00:00-05:00",
            "2026-11-02T09:00:00-05:00",
        ),
    )

    body = call_tool(client, "check_availability", {"date": "2026-10-31", "end_date": "2026-11-02"}).json()

    assert [slot["spoken"] for slot in body["slots"]] == [
        "Saturday, October 31 at 9:00 AM",
        "Sunday, November 1 at 1:30 AM EDT",
        "Sunday, November 1 at 1:30 AM EST",
        "Sunday, November 1 at 9:00 AM",
        "Monday, November 2 at 9:00 AM",
    ]
    assert body["message"] == (
        "I have Saturday, October 31 at 9:00 AM, Sunday, November 1 at 1:30 AM EDT, 1:30 AM EST, or 9:00 AM, "
        "or Monday, November 2 at 9:00 AM."
    )
    # Local midnight before the change (EDT) to the end of the last day after it (EST).
    assert query(ghl.calls[0])["startDate"] == str(epoch_ms("2026-10-31T00:00:00-04:00"))
    assert query(ghl.calls[0])["endDate"] == str(epoch_ms("2026-11-03T00:00:00-05:00") - 1)


def test_the_spring_dst_day_is_23_hours_long(client, ghl, clock, location):
    clock.now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    location.timezone = "America/New_York"
    location.save()
    make_tool("check_availability", config={"search_ahead_days": 0})
    ghl.get(FREE_SLOTS_URL, json=free_slots("2027-03-14T01:00:00-05:00", "2027-03-14T03:00:00-04:00"))

    body = call_tool(client, "check_availability", {"date": "2027-03-14"}).json()

    request = query(ghl.calls[0])
    assert int(request["endDate"]) + 1 - int(request["startDate"]) == 23 * 3600 * 1000
    # An hour apart on the clock face would be 2 hours; it is one real hour, spoken as local time.
    assert [slot["spoken"] for slot in body["slots"]] == [
        "Sunday, March 14 at 1:00 AM",
        "Sunday, March 14 at 3:00 AM",
    ]


def test_no_slots_on_the_day_offers_the_nearest_later_ones(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=free_slots("2026-12-09T10:30:00-08:00", "2026-12-10T08:00:00-08:00"))

    body = call_tool(client, "check_availability", {"date": "2026-12-08", "time_of_day": "morning"}).json()

    assert body["available"] is False
    assert body["slots"] == []
    assert [slot["start_time"] for slot in body["alternatives"]] == [
        "2026-12-09T10:30:00-08:00",
        "2026-12-10T08:00:00-08:00",
    ]
    assert body["message"] == (
        "I don't have anything on Tuesday, December 8 in the morning. The nearest openings are "
        "Wednesday, December 9 at 10:30 AM, or Thursday, December 10 at 8:00 AM."
    )


def test_slots_already_past_are_never_offered(client, ghl, clock, availability):
    clock.now = datetime(2026, 12, 8, 20, 0, tzinfo=UTC)  # noon in Los Angeles
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)

    body = call_tool(client, "check_availability", {}).json()  # no date: today

    assert [slot["start_time"] for slot in body["slots"]] == [
        "2026-12-08T14:00:00-08:00",
        "2026-12-08T16:00:00-08:00",
    ]
    # The search starts now, not at midnight.
    assert query(ghl.calls[0])["startDate"] == str(epoch_ms("2026-12-08T12:00:00-08:00"))


def test_slot_limit_and_year_for_next_year(client, ghl, clock, location):
    make_tool("check_availability", config={"slots_to_offer": 1, "timezone": "Europe/Paris"})
    ghl.get(FREE_SLOTS_URL, json=free_slots("2027-01-04T09:00:00+01:00", "2027-01-04T10:00:00+01:00"))

    body = call_tool(client, "check_availability", {"date": "2027-01-04"}).json()

    assert body["slots"] == [
        {"start_time": "2027-01-04T09:00:00+01:00", "spoken": "Monday, January 4, 2027 at 9:00 AM"}
    ]
    assert body["total_matching"] == 2


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"date": "2026-12-01"}, "date_in_past"),
        ({"date": "2026-12-10", "end_date": "2026-12-09"}, "invalid_date_range"),
        ({"date": "2026-12-10", "end_date": "2027-01-30"}, "date_range_too_long"),
        ({"date": "2026-12-10", "timezone": "Mars/Olympus"}, "invalid_timezone"),
    ],
)
def test_unusable_dates_get_a_speakable_error_without_calling_ghl(
    client, ghl, clock, availability, args, code
):
    response = call_tool(client, "check_availability", args)

    assert response.status_code == 200
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert len(ghl.calls) == 0


def test_missing_calendar_is_reported_not_invented(client, ghl, clock, location):
    location.default_calendar_id = ""
    location.save()
    make_tool("check_availability")

    body = call_tool(client, "check_availability", {"date": "2026-12-08"}).json()

    assert body["error"] == "not_configured"
    assert "set up" in body["message"]


# --- book_appointment ----------------------------------------------------------------------------


def test_booking_uses_the_exact_ghl_slot_string(client, ghl, clock, location):
    make_tool(
        "book_appointment",
        config={
            "duration_minutes": 60,
            "appointment_title": "Cleaning - {name}",
            "assigned_user_id": "u_Hyg1",
        },
    )
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.post(APPOINTMENTS_URL, json={"id": "a_7Hk2mQ", "startTime": "2026-12-08T14:00:00-08:00"})

    # The LLM re-serialised the slot in UTC: it still names the same instant.
    response = call_tool(client, "book_appointment", {"start_time": "2026-12-08T22:00:00Z"})

    assert response.status_code == 200
    assert response.json() == {
        "booked": True,
        "appointment_id": "a_7Hk2mQ",
        "start_time": "2026-12-08T14:00:00-08:00",
        "spoken_time": "Tuesday, December 8 at 2:00 PM",
        "timezone": "America/Los_Angeles",
        "contact_id": "c_Dana7Lee01",
        "message": "You're booked for Tuesday, December 8 at 2:00 PM.",
    }
    slots_request, booking_request = ghl.calls
    assert query(slots_request)["startDate"] == str(epoch_ms("2026-12-08T00:00:00-08:00"))
    assert_ghl_headers(booking_request, CALENDARS_API)
    assert sent_json(booking_request) == {
        "calendarId": "cal_Cleanings01",
        "locationId": "loc_BrightDental1",
        "contactId": "c_Dana7Lee01",  # from the call's dynamic variables: no lookup needed
        "startTime": "2026-12-08T14:00:00-08:00",
        "endTime": "2026-12-08T15:00:00-08:00",
        "title": "Cleaning - Dana Lee",
        "appointmentStatus": "confirmed",
        "assignedUserId": "u_Hyg1",
    }
    invocation = ToolInvocation.objects.get()
    assert invocation.status == ToolInvocation.Status.SUCCEEDED
    assert invocation.call_id == "call_8f14e45fceea167a5a36dedd4bea2543"
    assert invocation.idempotency_key


def test_taken_slot_books_nothing_and_offers_the_nearest(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=free_slots("2026-12-08T09:00:00-08:00", "2026-12-08T16:00:00-08:00"))
    ghl.get(DANA_APPOINTMENTS_URL, json={"events": []})  # not taken by Dana herself

    response = call_tool(client, "book_appointment", {"start_time": "2026-12-08T14:00:00-08:00"})

    assert response.status_code == 200
    assert response.json() == {
        "error": "slot_unavailable",
        "message": "Sorry, that time was just taken. The closest openings are Tuesday, December 8 at "
        "9:00 AM or 4:00 PM.",
        "alternatives": [
            {"start_time": "2026-12-08T09:00:00-08:00", "spoken": "Tuesday, December 8 at 9:00 AM"},
            {"start_time": "2026-12-08T16:00:00-08:00", "spoken": "Tuesday, December 8 at 4:00 PM"},
        ],
    }
    assert not [call for call in ghl.calls if call.request.method == "POST"]
    assert ToolInvocation.objects.get().error_code == "slot_unavailable"


def test_slot_taken_by_the_callers_own_lost_booking_is_a_success(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=free_slots("2026-12-08T16:00:00-08:00"))
    ghl.get(
        DANA_APPOINTMENTS_URL,
        json={
            "events": [
                {
                    "id": "a_7Hk2mQ",
                    "calendarId": "cal_Cleanings01",
                    "startTime": "2026-12-08T14:00:00-08:00",
                    "appointmentStatus": "confirmed",
                }
            ]
        },
    )

    body = call_tool(client, "book_appointment", {"start_time": "2026-12-08T14:00:00-08:00"}).json()

    assert body["booked"] is True
    assert body["already_booked"] is True
    assert body["appointment_id"] == "a_7Hk2mQ"
    assert not [call for call in ghl.calls if call.request.method == "POST"]


def test_unknown_caller_is_created_from_the_name_they_gave(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.get(f"{GHL}/contacts/search/duplicate", json={"contact": None})
    ghl.post(f"{GHL}/contacts/upsert", json={"new": True, "contact": {"id": "c_New1"}})
    ghl.post(APPOINTMENTS_URL, json={"id": "a_New1"})

    body = call_tool(
        client,
        "book_appointment",
        {"start_time": "2026-12-08T14:00:00-08:00", "first_name": "Sam", "last_name": "Rivera"},
        retell_llm_dynamic_variables={},
    ).json()

    assert body["contact_id"] == "c_New1"
    _slots, search, upsert, booking_request = ghl.calls
    assert query(search) == {"locationId": "loc_BrightDental1", "number": "+14155550123"}
    assert_ghl_headers(upsert, CONTACTS_API)
    assert sent_json(upsert) == {
        "firstName": "Sam",
        "lastName": "Rivera",
        "phone": "+14155550123",
        "locationId": "loc_BrightDental1",
    }
    assert sent_json(booking_request)["contactId"] == "c_New1"


def test_unknown_caller_without_a_name_is_asked_for_it(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.get(f"{GHL}/contacts/search/duplicate", json={"contact": None})

    body = call_tool(
        client,
        "book_appointment",
        {"start_time": "2026-12-08T14:00:00-08:00"},
        retell_llm_dynamic_variables={},
    ).json()

    assert body["error"] == "contact_details_needed"
    assert "name" in body["message"]


@pytest.mark.parametrize(
    ("start_time", "code"),
    [("2026-12-08 14:00", "invalid_start_time"), ("2026-12-01T14:00:00-08:00", "slot_in_past")],
)
def test_unusable_start_times_book_nothing(client, ghl, clock, booking, start_time, code):
    body = call_tool(client, "book_appointment", {"start_time": start_time}).json()

    assert body["error"] == code
    assert len(ghl.calls) == 0


def test_a_retried_booking_books_once_and_answers_the_same(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.post(APPOINTMENTS_URL, json={"id": "a_7Hk2mQ"})
    args = {"start_time": "2026-12-08T14:00:00-08:00"}

    first = call_tool(client, "book_appointment", args)
    retry = call_tool(client, "book_appointment", args)

    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert len([call for call in ghl.calls if call.request.method == "POST"]) == 1
    invocation = ToolInvocation.objects.get()
    assert invocation.duplicate_count == 1


def test_same_slot_on_another_call_is_not_a_duplicate(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.post(APPOINTMENTS_URL, json={"id": "a_1"})
    args = {"start_time": "2026-12-08T14:00:00-08:00"}

    call_tool(client, "book_appointment", args)
    call_tool(client, "book_appointment", args, call_id="call_other")

    assert len([call for call in ghl.calls if call.request.method == "POST"]) == 2


def test_ghl_failure_is_graceful_and_a_retry_acts_again(client, ghl, clock, booking):
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.post(APPOINTMENTS_URL, status=500, json={"statusCode": 500, "message": "Internal server error"})
    args = {"start_time": "2026-12-08T14:00:00-08:00"}

    failed = call_tool(client, "book_appointment", args)

    assert failed.status_code == 200
    assert failed.json() == {
        "error": "ghl_unavailable",
        "message": "I'm having trouble reaching the calendar right now, so I can't confirm that yet.",
        "retryable": True,
    }
    ghl.replace("POST", APPOINTMENTS_URL, json={"id": "a_7Hk2mQ"})

    retried = call_tool(client, "book_appointment", args)

    assert retried.json()["booked"] is True
    first, second = ToolInvocation.objects.order_by("created_at", "pk")
    assert first.status == ToolInvocation.Status.FAILED
    assert first.error_code == "ghl_unavailable"
    assert first.error.startswith("GHL HTTP 500: POST /calendars/events/appointments")
    assert first.idempotency_key is None  # given up to the retry, the log row kept
    assert second.status == ToolInvocation.Status.SUCCEEDED


def test_ghl_timeout_is_graceful(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, body=requests.exceptions.ReadTimeout("read timed out"))

    response = call_tool(client, "check_availability", {"date": "2026-12-08"})

    assert response.status_code == 200
    assert response.json()["error"] == "ghl_unavailable"
    assert response.json()["message"].startswith("I'm having trouble reaching the calendar")
    invocation = ToolInvocation.objects.get()
    assert invocation.success is False
    assert "timed out" in invocation.error


def test_live_calls_use_the_short_read_timeout(client, ghl, clock, availability, settings):
    settings.GHL_LIVE_READ_TIMEOUT = 4.5
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)

    call_tool(client, "check_availability", {"date": "2026-12-08"})

    assert ghl.calls[0].request.req_kwargs["timeout"] == (settings.GHL_CONNECT_TIMEOUT, 4.5)


def test_a_second_calendar_is_just_another_definition(client, ghl, clock, location):
    make_tool("check_consult_slots", "check_availability", config={"calendar_id": "cal_Consults02"})
    ghl.get(f"{GHL}/calendars/cal_Consults02/free-slots", json=free_slots("2026-12-08T11:00:00-08:00"))

    body = call_tool(client, "check_consult_slots", {"date": "2026-12-08"}).json()

    assert body["calendar_id"] == "cal_Consults02"
    assert ToolInvocation.objects.get().handler == "check_availability"


def test_a_pinned_location_wins_over_the_agents(client, ghl, clock, location):
    other = GhlLocation.objects.create(
        location_id="loc_Other", name="Other", token="pit-other", timezone="Europe/London"
    )
    make_tool("check_availability", location=other, config={"calendar_id": "cal_London"})
    ghl.get(f"{GHL}/calendars/cal_London/free-slots", json=free_slots())

    body = call_tool(client, "check_availability", {"date": "2026-12-08"}).json()

    assert body["timezone"] == "Europe/London"
    assert ghl.calls[0].request.headers["Authorization"] == "Bearer pit-other"


# --- appointments: list, reschedule, cancel ------------------------------------------------------

DANA_EVENTS = {
    "events": [
        {
            "id": "a_Old",
            "calendarId": "cal_Cleanings01",
            "title": "Cleaning",
            "startTime": "2026-11-02 09:00:00",  # past
            "endTime": "2026-11-02 10:00:00",
            "appointmentStatus": "showed",
        },
        {
            "id": "a_Next",
            "calendarId": "cal_Cleanings01",
            "title": "Cleaning",
            "startTime": "2026-12-08 09:00:00",  # naive: the location's timezone
            "endTime": "2026-12-08 09:45:00",
            "appointmentStatus": "confirmed",
        },
        {
            "id": "a_Gone",
            "calendarId": "cal_Cleanings01",
            "startTime": "2026-12-10T09:00:00-08:00",
            "appointmentStatus": "cancelled",
        },
    ]
}


def test_list_upcoming_appointments(client, ghl, clock, location):
    make_tool("list_contact_appointments")
    ghl.get(DANA_APPOINTMENTS_URL, json=DANA_EVENTS)

    body = call_tool(client, "list_contact_appointments", {}).json()

    assert body["appointments"] == [
        {
            "appointment_id": "a_Next",
            "calendar_id": "cal_Cleanings01",
            "title": "Cleaning",
            "start_time": "2026-12-08 09:00:00",
            "spoken_time": "Tuesday, December 8 at 9:00 AM",
            "status": "confirmed",
        }
    ]
    assert body["message"] == "You have an appointment on Tuesday, December 8 at 9:00 AM."
    assert_ghl_headers(ghl.calls[0], CONTACTS_API)


def test_reschedule_keeps_the_length_and_rechecks_the_slot(client, ghl, clock, location):
    make_tool("reschedule_appointment")
    ghl.get(DANA_APPOINTMENTS_URL, json=DANA_EVENTS)
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.put(f"{APPOINTMENTS_URL}/a_Next", json={"id": "a_Next"})

    body = call_tool(client, "reschedule_appointment", {"new_start_time": "2026-12-08T16:00:00-08:00"}).json()

    assert body["rescheduled"] is True
    assert body["message"] == "Done, your appointment is now Tuesday, December 8 at 4:00 PM."
    update = ghl.calls[-1]
    assert_ghl_headers(update, CALENDARS_API)
    assert sent_json(update) == {
        "startTime": "2026-12-08T16:00:00-08:00",
        "endTime": "2026-12-08T16:45:00-08:00",
    }


def test_reschedule_checks_the_slot_for_the_user_who_holds_the_appointment(client, ghl, clock, location):
    make_tool("reschedule_appointment", config={"user_id": "u_Configured"})
    events = copy.deepcopy(DANA_EVENTS)
    events["events"][1]["assignedUserId"] = "u_Hygienist7"
    ghl.get(DANA_APPOINTMENTS_URL, json=events)
    ghl.get(FREE_SLOTS_URL, json=DECEMBER_SLOTS)
    ghl.put(f"{APPOINTMENTS_URL}/a_Next", json={"id": "a_Next"})

    call_tool(client, "reschedule_appointment", {"new_start_time": "2026-12-08T16:00:00-08:00"})

    (slots_request,) = [call for call in ghl.calls if "free-slots" in call.request.url]
    assert query(slots_request)["userId"] == "u_Hygienist7"


def test_cancel_the_only_upcoming_appointment(client, ghl, clock, location):
    make_tool("cancel_appointment")
    ghl.get(DANA_APPOINTMENTS_URL, json=DANA_EVENTS)
    ghl.put(f"{APPOINTMENTS_URL}/a_Next", json={"id": "a_Next"})

    body = call_tool(client, "cancel_appointment", {}).json()

    assert body["cancelled"] is True
    assert body["message"] == "Your appointment on Tuesday, December 8 at 9:00 AM is cancelled."
    assert sent_json(ghl.calls[-1]) == {"appointmentStatus": "cancelled"}


def test_cancel_asks_which_when_there_are_several(client, ghl, clock, location):
    make_tool("cancel_appointment")
    events = {
        "events": [
            {"id": "a_1", "startTime": "2026-12-08T09:00:00-08:00", "appointmentStatus": "confirmed"},
            {"id": "a_2", "startTime": "2026-12-15T09:00:00-08:00", "appointmentStatus": "confirmed"},
        ]
    }
    ghl.get(DANA_APPOINTMENTS_URL, json=events)

    body = call_tool(client, "cancel_appointment", {}).json()

    assert body["error"] == "which_appointment"
    assert body["message"] == (
        "I see 2 upcoming appointments: Tuesday, December 8 at 9:00 AM or Tuesday, December 15 at 9:00 AM. "
        "Which one do you mean?"
    )
    assert [item["appointment_id"] for item in body["appointments"]] == ["a_1", "a_2"]
    assert not [call for call in ghl.calls if call.request.method == "PUT"]


def test_cancel_refuses_an_appointment_that_is_not_the_callers(client, ghl, clock, location):
    make_tool("cancel_appointment")
    ghl.get(DANA_APPOINTMENTS_URL, json=DANA_EVENTS)

    body = call_tool(client, "cancel_appointment", {"appointment_id": "a_SomeoneElse"}).json()

    assert body["error"] == "appointment_not_found"
    assert not [call for call in ghl.calls if call.request.method == "PUT"]


def test_a_date_an_overridden_schema_let_through_is_refused_speakably(client, ghl, clock, location):
    make_tool(
        "check_availability", argument_schema={"type": "object", "properties": {"date": {"type": "string"}}}
    )

    body = call_tool(client, "check_availability", {"date": "next tuesday"}).json()

    assert body == {
        "error": "invalid_date",
        "message": "Which date would you like?",
        "hint": "Dates are YYYY-MM-DD.",
    }
    assert len(ghl.calls) == 0
