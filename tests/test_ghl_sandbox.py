"""The built-in GHL sandbox, driven only through the real GhlClient.

No `responses` here: the point is that the client's own code path (headers, Version, error mapping,
rate-limit headers) runs against the sandbox exactly as against GHL. The network is switched off
for every test in this module, so any request that escaped the sandbox would fail loudly.
"""

import io
import json
import threading
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from calls import outbox
from calls.models import Call, CallEvent, RoutingDecision, ToolInvocation
from calls.pipeline import process_call_event
from integrations.errors import DuplicateContact, NotFound, PermanentError, RateLimited, RetryableError
from integrations.ghl import CALENDARS_API, CONTACTS_API, GhlClient
from integrations.models import Agent, GhlLocation, PhoneNumber, RoutingRule, ToolDefinition
from integrations.sandbox import SANDBOX_CALENDAR_ID, SANDBOX_LOCATION_ID
from integrations.sandbox.adapter import SandboxAdapter, rate_limiter
from integrations.sandbox.models import (
    SandboxAppointment,
    SandboxContact,
    SandboxNote,
    SandboxOpportunity,
    SandboxWorkflowEnrolment,
)
from integrations.sandbox.seed import DEMO_LINE, RECEPTION_AGENT_ID, VIP_AGENT_ID
from tests.conftest import fixture_json, post_signed

pytestmark = pytest.mark.django_db

LA = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
DANA = "c_Dana7Lee01"
SAM = "c_NewLead042"
CAL = SANDBOX_CALENDAR_ID
RETELL_AGENT = "agent_5d3e1c9b2a7f4e6d8c0b"  # the agent of the Retell call fixtures
NEXT_YEAR = timezone.now().year + 1


@pytest.fixture(autouse=True)
def sandbox_mode(settings, monkeypatch):
    """Sandbox on, no GHL credentials at all, and no network."""
    settings.GHL_SANDBOX = True
    settings.GHL_API_TOKEN = ""
    settings.GHL_LOCATION_ID = ""
    rate_limiter.reset()

    def no_network(*args, **kwargs):
        raise AssertionError("a GHL request left the sandbox")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", no_network)


@pytest.fixture
def seeded(db):
    out = io.StringIO()
    call_command("seed_sandbox", stdout=out)
    return out.getvalue()


@pytest.fixture
def ghl(seeded):
    return GhlLocation.objects.default().client()


def first_monday_of_january_after_the_10th():
    day = date(NEXT_YEAR, 1, 10)
    return day + timedelta(days=(7 - day.weekday()) % 7)  # winter: Pacific Standard Time (-08:00)


MONDAY = first_monday_of_january_after_the_10th()


def at(day, hour, minute=0, tz=LA):
    return datetime.combine(day, time(hour, minute), tzinfo=tz)


def slot(day, hour, offset="-08:00"):
    return f"{day.isoformat()}T{hour:02d}:00:00{offset}"


def day_slots(ghl, day, tz="America/Los_Angeles"):
    return ghl.get_free_slots(CAL, start=at(day, 0), end=at(day, 23, 59), timezone=tz).get(
        day.isoformat(), []
    )


def book(ghl, start_time, contact_id=DANA, **kwargs):
    return ghl.create_appointment(calendar_id=CAL, contact_id=contact_id, start_time=start_time, **kwargs)


# --- Sandbox mode ----------------------------------------------------------------------------------


def test_sandbox_mode_needs_no_token_and_serves_the_client_in_process(ghl):
    location = GhlLocation.objects.default()
    assert location.location_id == SANDBOX_LOCATION_ID and location.token == ""
    assert isinstance(ghl.session.get_adapter(ghl.base_url + "/contacts/x"), SandboxAdapter)

    contact = ghl.get_contact(DANA)

    assert contact["phone"] == "+14155550123" and contact["tags"] == ["patient", "vip"]
    assert contact["customFields"] == [{"id": "cf_LastOutcome", "value": "booked"}]
    assert ghl.rate_limit.max == 100 and ghl.rate_limit.remaining == 99
    assert ghl.rate_limit.interval_ms == 10_000 and ghl.rate_limit.daily_remaining == 199_999


def test_without_sandbox_mode_the_client_keeps_the_network_adapter(settings):
    settings.GHL_SANDBOX = False
    client = GhlClient(token="pit-x", location_id="loc_x")
    assert isinstance(
        client.session.get_adapter(client.base_url + "/contacts/x"), requests.adapters.HTTPAdapter
    )


# --- Contacts and GHL's duplicate rules ------------------------------------------------------------


def test_duplicate_search_matches_e164_and_the_client_sends_formatted_numbers_as_e164(ghl):
    assert ghl.find_contact_by_phone("+14155550123")["id"] == DANA
    assert ghl.find_contact_by_phone("(415) 555-0123")["id"] == DANA
    assert ghl.find_contact_by_phone("+14155550000") is None

    # On the wire, GHL matches a number as sent: the formatted form is another number.
    params = {"locationId": SANDBOX_LOCATION_ID, "number": "(415) 555-0123"}
    raw = ghl._request("GET", "/contacts/search/duplicate", version=CONTACTS_API, params=params)
    assert raw["contact"] is None


def test_creating_a_contact_whose_phone_exists_raises_duplicate_contact(ghl):
    with pytest.raises(DuplicateContact) as error:
        ghl.create_contact({"firstName": "Dana", "phone": "(415) 555-0123"})  # the client sends E.164

    assert error.value.contact_id == DANA and error.value.status == 400
    assert error.value.body == fixture_json("ghl_error_duplicate_contact")
    assert SandboxContact.objects.filter(phone="+14155550123").count() == 1


def test_creating_a_contact_whose_email_exists_raises_duplicate_contact(ghl):
    with pytest.raises(DuplicateContact) as error:
        ghl.create_contact({"firstName": "D", "email": "Dana.Lee@Example.com"})
    assert error.value.contact_id == DANA and error.value.body["meta"]["matchingField"] == "email"


def test_a_formatted_phone_sent_as_is_creates_the_duplicate_ghl_is_known_for(ghl):
    body = {"locationId": SANDBOX_LOCATION_ID, "firstName": "Dana", "phone": "(415) 555-0123"}
    created = ghl._request("POST", "/contacts/", version=CONTACTS_API, json=body)

    assert created["contact"]["id"] != DANA
    assert SandboxContact.objects.filter(first_name="Dana").count() == 2


def test_create_find_and_upsert_follow_the_phone(ghl):
    new = ghl.create_contact(
        {"firstName": "Ada", "lastName": "Byron", "phone": "415-555-0999", "tags": ["New Lead"]}
    )
    assert new["name"] == "Ada Byron" and new["phone"] == "+14155550999"
    assert new["tags"] == ["new lead"] and new["locationId"] == SANDBOX_LOCATION_ID
    assert ghl.find_contact_by_phone("+14155550999")["id"] == new["id"]

    same, created = ghl.upsert_contact({"phone": "+14155550999", "email": "ada@example.com"})
    assert not created and same["id"] == new["id"] and same["email"] == "ada@example.com"

    other, created = ghl.upsert_contact({"phone": "+14155550998", "firstName": "Grace"})
    assert created and other["id"] != new["id"]
    assert SandboxContact.objects.filter(location_id=SANDBOX_LOCATION_ID).count() == 6


def test_update_contact_replaces_tags_and_writes_custom_fields(ghl):
    updated = ghl.update_contact(
        DANA, {"tags": ["patient"], "customFields": [{"id": "cf_LastOutcome", "field_value": "cancelled"}]}
    )
    assert updated["tags"] == ["patient"]
    assert ghl.get_contact(DANA)["customFields"] == [{"id": "cf_LastOutcome", "value": "cancelled"}]


def test_locationid_on_a_contact_update_is_refused_like_ghl(ghl):
    with pytest.raises(PermanentError) as error:
        ghl._request("PUT", f"/contacts/{DANA}", version=CONTACTS_API, json={"locationId": "loc_x"})
    assert error.value.status == 422
    assert error.value.body == fixture_json("ghl_error_422")


def test_unknown_properties_answer_422(ghl):
    with pytest.raises(PermanentError) as error:
        ghl.create_contact({"phone": "+14155550900", "favouriteColour": "teal", "nickname": "Al"})
    assert error.value.status == 422
    assert error.value.body["message"] == [
        "property favouriteColour should not exist",
        "property nickname should not exist",
    ]
    assert "property favouriteColour should not exist" in str(error.value)


def test_tags_are_added_and_removed_lowercase(ghl):
    assert ghl.add_tags(DANA, ["ai-call", "VIP"]) == ["patient", "vip", "ai-call"]
    assert ghl.remove_tags(DANA, ["vip"]) == ["patient", "ai-call"]
    assert SandboxContact.objects.get(pk=DANA).tags == ["patient", "ai-call"]


def test_notes_are_created_updated_and_listed(ghl):
    note = ghl.add_note(DANA, "First call")
    assert set(note) == set(fixture_json("ghl_note_created")["note"])
    assert note["contactId"] == DANA and note["userId"] is None

    updated = ghl.update_note(DANA, note["id"], "First call, with summary")
    second = ghl.add_note(DANA, "Second call")

    assert updated["id"] == note["id"]
    assert [n["body"] for n in ghl.list_notes(DANA)] == ["Second call", "First call, with summary"]
    assert [n["id"] for n in ghl.list_notes(SAM)] == []
    with pytest.raises(NotFound):
        ghl.update_note(SAM, second["id"], "not Sam's note")


def test_unknown_ids_answer_404_in_ghls_error_shape(ghl):
    with pytest.raises(NotFound) as error:
        ghl.get_contact("c_nobody")
    assert error.value.status == 404
    assert error.value.body == {"statusCode": 404, "message": "Contact not found"}

    for attempt in (
        lambda: ghl.add_note("c_nobody", "x"),
        lambda: ghl.add_tags("c_nobody", ["x"]),
        lambda: ghl.get_free_slots("cal_nope", start=at(MONDAY, 0), end=at(MONDAY, 23), timezone="UTC"),
        lambda: ghl.cancel_appointment("appt_nope"),
        lambda: book(ghl, slot(MONDAY, 9), contact_id="c_nobody"),
    ):
        with pytest.raises(NotFound):
            attempt()


# --- The gateway: token, Version, rate limits ------------------------------------------------------


def test_a_missing_or_wrong_version_header_answers_401(ghl):
    with pytest.raises(PermanentError) as missing:
        ghl._request("GET", f"/contacts/{DANA}", version=None)  # requests drops a None header
    assert missing.value.status == 401 and missing.value.body["statusCode"] == 401

    params = {"startDate": 0, "endDate": 1, "timezone": "UTC"}
    with pytest.raises(PermanentError) as wrong:
        ghl._request("GET", f"/calendars/{CAL}/free-slots", version=CONTACTS_API, params=params)
    assert wrong.value.status == 401


def test_a_missing_bearer_token_answers_401(ghl):
    response = ghl.session.get(f"{ghl.base_url}/contacts/{DANA}", headers={"Version": CONTACTS_API})
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "message": "Invalid token: access token is invalid",
        "error": "Unauthorized",
    }


def test_unknown_routes_answer_404(ghl):
    with pytest.raises(NotFound) as error:
        ghl._request("GET", "/locations/loc_sandbox", version=CONTACTS_API)
    assert error.value.body["message"] == "Cannot GET /locations/loc_sandbox"


def test_rate_limit_headers_count_down_and_a_spent_burst_answers_429(ghl, monkeypatch):
    monkeypatch.setattr(rate_limiter, "burst_max", 3)
    remaining = []
    for _ in range(3):
        ghl.get_contact(DANA)
        remaining.append(ghl.rate_limit.remaining)
    assert remaining == [2, 1, 0]

    with pytest.raises(RateLimited) as error:
        ghl.get_contact(DANA)
    assert error.value.status == 429
    assert error.value.retry_after == 10.0  # no Retry-After: the client waits out the burst window


def test_a_sandbox_crash_reaches_the_client_as_a_retryable_5xx(ghl, monkeypatch):
    from integrations.sandbox import handlers

    def broken(contact):
        raise RuntimeError("bug")

    monkeypatch.setattr(handlers, "contact_json", broken)
    with pytest.raises(RetryableError) as error:
        ghl.get_contact(DANA)
    assert error.value.status == 500


# --- Free slots ------------------------------------------------------------------------------------


def test_free_slots_follow_the_calendars_open_hours_in_its_timezone(ghl):
    week = ghl.get_free_slots(
        CAL, start=at(MONDAY, 0), end=at(MONDAY + timedelta(days=6), 23, 59), timezone="America/Los_Angeles"
    )

    weekdays = [(MONDAY + timedelta(days=n)).isoformat() for n in range(5)]
    assert list(week) == weekdays  # no weekend, no traceId
    assert week[MONDAY.isoformat()] == [slot(MONDAY, hour) for hour in range(9, 17)]


def test_free_slots_are_shown_in_the_requested_timezone(ghl):
    slots = ghl.get_free_slots(CAL, start=at(MONDAY, 0), end=at(MONDAY, 23, 59), timezone="America/New_York")
    assert slots == {MONDAY.isoformat(): [slot(MONDAY, hour, "-05:00") for hour in range(12, 20)]}


def test_free_slots_keep_local_opening_hours_across_the_dst_change(ghl):
    march_first = date(NEXT_YEAR, 3, 1)
    dst_sunday = march_first + timedelta(days=(6 - march_first.weekday()) % 7 + 7)  # 2nd Sunday of March
    friday, monday = dst_sunday - timedelta(days=2), dst_sunday + timedelta(days=1)

    slots = ghl.get_free_slots(
        CAL, start=at(friday, 0), end=at(monday, 23, 59), timezone="America/Los_Angeles"
    )

    assert list(slots) == [friday.isoformat(), monday.isoformat()]
    assert slots[friday.isoformat()][0] == slot(friday, 9, "-08:00")  # 17:00 UTC
    assert slots[monday.isoformat()][0] == slot(monday, 9, "-07:00")  # 16:00 UTC
    assert len(slots[monday.isoformat()]) == 8


def test_free_slots_never_offer_the_past(ghl):
    now = timezone.now()
    slots = ghl.get_free_slots(
        CAL, start=now - timedelta(days=10), end=now + timedelta(days=10), timezone="UTC"
    )
    offered = [datetime.fromisoformat(value) for values in slots.values() for value in values]
    assert offered and min(offered) > now


def test_free_slots_refuse_iso_dates_and_ranges_over_31_days(ghl):
    path = f"/calendars/{CAL}/free-slots"
    iso = {"startDate": "2026-12-08T00:00:00Z", "endDate": "2026-12-09T00:00:00Z"}
    with pytest.raises(PermanentError) as error:
        ghl._request("GET", path, version=CALENDARS_API, params=iso)
    assert error.value.status == 422
    assert "startDate must be a number conforming to the specified constraints" in error.value.body["message"]

    start = int(at(MONDAY, 0).timestamp() * 1000)
    too_long = {"startDate": start, "endDate": start + 32 * 24 * 3600 * 1000}
    with pytest.raises(PermanentError) as error:
        ghl._request("GET", path, version=CALENDARS_API, params=too_long)
    assert error.value.status == 422


# --- Appointments ----------------------------------------------------------------------------------


def test_booking_a_free_slot_returns_ghls_flat_appointment(ghl):
    [first, *_] = day_slots(ghl, MONDAY)
    appointment = book(ghl, first, title="Cleaning - Dana Lee")

    assert set(fixture_json("ghl_appointment_created")) - {"assignedUserId", "meetingLocationType"} <= set(
        appointment
    )
    assert appointment["startTime"] == first == slot(MONDAY, 9)
    assert appointment["endTime"] == slot(MONDAY, 10)
    assert appointment["appointmentStatus"] == "confirmed" and appointment["contactId"] == DANA
    assert first not in day_slots(ghl, MONDAY)
    [event] = ghl.get_contact_appointments(DANA)
    assert event["id"] == appointment["id"] and event["startTime"] == first


def test_booking_a_taken_slot_fails_and_so_do_times_off_the_calendar(ghl):
    book(ghl, slot(MONDAY, 10))

    for taken_or_closed in (
        slot(MONDAY, 10),  # taken (by Dana; Sam now wants it)
        f"{MONDAY.isoformat()}T10:30:00-08:00",  # not a slot start
        slot(MONDAY, 18),  # after hours
        slot(MONDAY - timedelta(days=1), 10),  # Sunday
        at(MONDAY, 10, tz=NEW_YORK).isoformat(),  # 7:00 in Los Angeles
    ):
        with pytest.raises(PermanentError) as error:
            book(ghl, taken_or_closed, contact_id=SAM)
        assert error.value.status == 400
        assert "no longer available" in error.value.body["message"]
    assert SandboxAppointment.objects.count() == 1


def test_the_same_instant_in_another_timezone_is_the_same_slot(ghl):
    book(ghl, slot(MONDAY, 10))
    with pytest.raises(PermanentError):
        book(ghl, at(MONDAY, 13, tz=NEW_YORK).isoformat(), contact_id=SAM)


def test_cancelling_frees_the_slot_and_rescheduling_moves_it(ghl):
    appointment = book(ghl, slot(MONDAY, 11))

    moved = ghl.update_appointment(appointment["id"], {"startTime": slot(MONDAY, 14)})
    assert moved["startTime"] == slot(MONDAY, 14) and moved["endTime"] == slot(MONDAY, 15)
    assert slot(MONDAY, 11) in day_slots(ghl, MONDAY) and slot(MONDAY, 14) not in day_slots(ghl, MONDAY)

    cancelled = ghl.cancel_appointment(appointment["id"])
    assert cancelled["appointmentStatus"] == "cancelled"
    assert slot(MONDAY, 14) in day_slots(ghl, MONDAY)
    rebooked = book(ghl, slot(MONDAY, 14), contact_id=SAM)
    assert rebooked["contactId"] == SAM


def test_reviving_a_cancelled_appointment_needs_its_slot_free(ghl):
    appointment = book(ghl, slot(MONDAY, 11))
    ghl.cancel_appointment(appointment["id"])
    book(ghl, slot(MONDAY, 11), contact_id=SAM)

    with pytest.raises(PermanentError) as error:
        ghl.update_appointment(appointment["id"], {"appointmentStatus": "confirmed"})
    assert error.value.status == 400


def test_appointment_extra_properties_answer_422(ghl):
    appointment = book(ghl, slot(MONDAY, 9))
    with pytest.raises(PermanentError) as error:
        ghl.update_appointment(appointment["id"], {"appointmentStatus": "cancelled", "notes": "moved"})
    assert error.value.status == 422
    assert error.value.body["message"] == ["property notes should not exist"]
    assert SandboxAppointment.objects.get().status == "confirmed"  # nothing applied


def test_appointment_times_need_an_offset(ghl):
    with pytest.raises(PermanentError) as error:
        book(ghl, f"{MONDAY.isoformat()}T09:00:00")
    assert error.value.status == 422


@pytest.mark.django_db(transaction=True)
def test_two_callers_racing_for_one_slot_get_one_booking(seeded):
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL: concurrent writers from real threads")
    barrier = threading.Barrier(2)
    outcomes = []

    def race(contact_id):
        try:
            client = GhlLocation.objects.default().client()
            barrier.wait()
            book(client, slot(MONDAY, 15), contact_id=contact_id)
            outcomes.append("booked")
        except PermanentError as exc:
            outcomes.append(exc.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(contact,)) for contact in (DANA, SAM)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes, key=str) == [400, "booked"]
    assert SandboxAppointment.objects.filter(status="confirmed").count() == 1


# --- Workflows and opportunities -------------------------------------------------------------------


def test_workflow_enrolment_is_recorded(ghl):
    ghl.add_to_workflow(DANA, "wf_Reminders", event_start_time=at(MONDAY, 9))
    enrolment = SandboxWorkflowEnrolment.objects.get()
    assert (enrolment.contact_id, enrolment.workflow_id) == (DANA, "wf_Reminders")
    assert enrolment.event_start_time == at(MONDAY, 9).isoformat()


def test_opportunity_upsert_creates_once_then_updates(ghl):
    created = ghl.upsert_opportunity(pipeline_id="pl_Treatments", contact_id=DANA, name="Whitening")
    won = ghl.upsert_opportunity(
        pipeline_id="pl_Treatments", contact_id=DANA, name="Whitening", status="won", monetary_value=450
    )
    assert won["id"] == created["id"] and won["status"] == "won" and won["monetaryValue"] == 450
    assert SandboxOpportunity.objects.count() == 1


# --- The post-call pipeline against the sandbox ----------------------------------------------------


def deliver(client, *bodies):
    """Post Retell events signed as Retell does, then do what the queue would (as test_post_call_sync)."""
    for body in bodies:
        assert post_signed(client, "/api/webhooks/retell", body).status_code == 204
    for event_id in CallEvent.objects.filter(status="received").order_by("pk").values_list("pk", flat=True):
        process_call_event(event_id)
    outbox.run_due_tasks(now=timezone.now())


@pytest.fixture
def retell_agent(seeded):
    # No location: its calls sync to the default location, which is the sandbox's.
    return Agent.objects.create(
        retell_agent_id=RETELL_AGENT, name="Bright Dental Receptionist", post_call_tags=["ai-call"]
    )


def test_a_call_syncs_one_note_to_the_sandbox_contact(client, retell_agent):
    deliver(client, fixture_json("retell_call_ended"))

    [note] = SandboxNote.objects.filter(contact_id=DANA)
    assert "Caller: Hi Ava, it's Dana Lee." in note.body
    assert Call.objects.get().ghl_sync_status == "synced"

    deliver(client, fixture_json("retell_call_analyzed"))

    [note] = SandboxNote.objects.filter(contact_id=DANA)  # the same note, updated
    assert "Dana Lee called to book a teeth cleaning." in note.body
    assert {"ai-call", "call-successful"} <= set(SandboxContact.objects.get(pk=DANA).tags)
    assert Call.objects.get().ghl_sync_status == "synced"


def test_a_call_without_a_contact_id_finds_the_caller_by_phone(client, retell_agent):
    event = fixture_json("retell_call_ended")
    del event["call"]["retell_llm_dynamic_variables"]["contact_id"]

    deliver(client, event)

    assert Call.objects.get().ghl_contact_id == DANA
    assert SandboxNote.objects.filter(contact_id=DANA).count() == 1


def test_an_unknown_caller_becomes_a_sandbox_contact_when_the_agent_allows(client, retell_agent):
    retell_agent.create_unknown_contacts = True
    retell_agent.save()
    event = fixture_json("retell_call_ended")
    del event["call"]["retell_llm_dynamic_variables"]["contact_id"]
    event["call"]["from_number"] = "+14155550777"

    deliver(client, event)

    contact = SandboxContact.objects.get(phone="+14155550777")
    assert contact.first_name == "Dana" and contact.source == "AI phone call"
    assert contact.notes.count() == 1


# --- Live-call paths: inbound routing and in-call tools ---------------------------------------------


@pytest.mark.django_db(transaction=True)  # the routing lookup runs in its own thread and connection
def test_inbound_routing_looks_the_caller_up_in_the_sandbox(client, seeded):
    cache.clear()
    inbound = fixture_json("retell_call_inbound")
    inbound["call_inbound"].update(agent_id=RECEPTION_AGENT_ID, to_number=DEMO_LINE)

    answer = post_signed(client, "/api/webhooks/inbound", inbound).json()["call_inbound"]

    # Dana is tagged vip in the sandbox: the seeded rule routes her to the VIP agent.
    assert answer["override_agent_id"] == VIP_AGENT_ID
    assert answer["dynamic_variables"]["contact_id"] == DANA
    assert answer["dynamic_variables"]["vip_tier"] == "gold"
    decision = RoutingDecision.objects.get()
    assert decision.lookup == "found" and not decision.ghl_failed


def test_in_call_tools_check_and_book_in_the_sandbox(client, seeded):
    call = fixture_json("retell_custom_function")["call"]
    call.update(agent_id=VIP_AGENT_ID, to_number=DEMO_LINE)

    def tool(name, args):
        response = post_signed(client, f"/api/functions/{name}", {"name": name, "args": args, "call": call})
        assert response.status_code == 200
        return response.json()

    offered = tool("check_availability", {"date": MONDAY.isoformat(), "time_of_day": "morning"})
    assert "error" not in offered, offered
    first = offered["slots"][0]["start_time"]
    assert first == slot(MONDAY, 9)

    booked = tool("book_appointment", {"start_time": first})

    assert booked["booked"] is True, booked
    appointment = SandboxAppointment.objects.get()
    assert (appointment.contact_id, appointment.pk) == (DANA, booked["appointment_id"])
    assert appointment.title == "Cleaning - Dana Lee"
    assert ToolInvocation.objects.filter(status="succeeded").count() == 2


# --- Seeding and the admin -------------------------------------------------------------------------


def test_seeding_is_idempotent_and_keeps_what_calls_wrote(seeded, ghl):
    assert "GHL sandbox seeded: location loc_sandbox (new), 4 demo contacts (4 new)" in seeded
    ghl.add_note(DANA, "kept")
    ghl.add_tags(DANA, ["ai-call"])

    out = io.StringIO()
    call_command("seed_sandbox", stdout=out)

    assert "4 demo contacts (0 new)" in out.getvalue() and "2 demo agents (0 new)" in out.getvalue()
    assert SandboxContact.objects.count() == 4 and Agent.objects.count() == 2
    assert SandboxNote.objects.get().body == "kept"
    assert "ai-call" in SandboxContact.objects.get(pk=DANA).tags
    assert [contact.pk for contact in SandboxContact.objects.all() if "vip" in contact.tags] == [DANA]

    call_command("seed_sandbox", "--reset", stdout=io.StringIO())
    assert SandboxNote.objects.count() == 0 and SandboxContact.objects.get(pk=DANA).tags == ["patient", "vip"]


def test_seeding_sets_up_the_product_tour_once_and_keeps_operator_changes(seeded):
    assert "VIP routing rule (new), demo line +14155550100 (new), 2 calendar tools (2 new)" in seeded
    rule = RoutingRule.objects.get()
    line = PhoneNumber.objects.get()
    tools = {tool.name: tool for tool in ToolDefinition.objects.all()}
    for row in (rule, line, *tools.values()):
        row.full_clean()  # what an operator could have entered in the admin
    assert (rule.tags_any, rule.agent.retell_agent_id, rule.location.location_id) == (
        ["vip"],
        VIP_AGENT_ID,
        SANDBOX_LOCATION_ID,
    )
    assert rule.dynamic_variables["vip_tier"] == "gold"
    assert (line.number, line.default_agent.retell_agent_id) == (DEMO_LINE, RECEPTION_AGENT_ID)
    assert set(tools) == {"check_availability", "book_appointment"}
    assert all(tool.config["calendar_id"] == CAL for tool in tools.values())
    assert all(tool.location.location_id == SANDBOX_LOCATION_ID for tool in tools.values())

    rule.dynamic_variables = {"vip_tier": "platinum"}
    rule.save()
    out = io.StringIO()
    call_command("seed_sandbox", stdout=out)

    assert "VIP routing rule, demo line +14155550100, 2 calendar tools (0 new)" in out.getvalue()
    assert RoutingRule.objects.get().dynamic_variables == {"vip_tier": "platinum"}
    assert (PhoneNumber.objects.count(), ToolDefinition.objects.count()) == (1, 2)


def test_seeding_leaves_an_existing_tool_of_the_same_name_alone(db, settings):
    ToolDefinition.objects.create(name="check_availability", handler="check_availability", config={})
    call_command("seed_sandbox", stdout=io.StringIO())
    assert ToolDefinition.objects.get(name="check_availability").config == {}
    assert ToolDefinition.objects.get(name="book_appointment").config["calendar_id"] == CAL


def test_seeding_does_nothing_when_the_sandbox_is_off(settings, db):
    settings.GHL_SANDBOX = False
    out = io.StringIO()
    call_command("seed_sandbox", stdout=out)
    assert "GHL sandbox is off" in out.getvalue()
    assert not SandboxContact.objects.exists() and not GhlLocation.objects.exists()


SANDBOX_MODELS = [
    "sandboxcontact",
    "sandboxnote",
    "sandboxcalendar",
    "sandboxappointment",
    "sandboxworkflowenrolment",
    "sandboxopportunity",
]


@pytest.mark.parametrize("model", SANDBOX_MODELS)
def test_the_admin_lists_and_searches_what_reached_the_sandbox(admin_client, ghl, model):
    ghl.add_note(DANA, "Called about a cleaning")
    book(ghl, slot(MONDAY, 9))
    ghl.add_to_workflow(DANA, "wf_x")
    ghl.upsert_opportunity(pipeline_id="pl_x", contact_id=DANA, name="Cleaning")

    changelist = reverse(f"admin:integrations_{model}_changelist")
    assert admin_client.get(changelist).status_code == 200
    assert admin_client.get(changelist, {"q": "dana"}).status_code == 200


def test_the_admin_shows_a_contact_with_its_notes_and_appointments(admin_client, ghl):
    ghl.add_note(DANA, "Called about a cleaning")
    book(ghl, slot(MONDAY, 9))
    page = admin_client.get(reverse("admin:integrations_sandboxcontact_change", args=[DANA]))
    assert page.status_code == 200
    assert "Called about a cleaning" in page.content.decode()


def test_contacts_added_in_the_admin_get_an_e164_phone(admin_client, ghl):
    form = {
        "location_id": SANDBOX_LOCATION_ID,
        "first_name": "Operator",
        "last_name": "Test",
        "phone": "(415) 555-0100",
        "email": "",
        "tags": json.dumps(["VIP"]),
        "custom_fields": "{}",
        "timezone": "",
        "source": "",
        "notes-TOTAL_FORMS": 0,
        "notes-INITIAL_FORMS": 0,
        "appointments-TOTAL_FORMS": 0,
        "appointments-INITIAL_FORMS": 0,
        "workflow_enrolments-TOTAL_FORMS": 0,
        "workflow_enrolments-INITIAL_FORMS": 0,
        "opportunities-TOTAL_FORMS": 0,
        "opportunities-INITIAL_FORMS": 0,
    }
    response = admin_client.post(reverse("admin:integrations_sandboxcontact_add"), form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert ghl.find_contact_by_phone("+14155550100")["tags"] == ["vip"]


def test_the_admin_cancel_action_frees_the_slot(admin_client, ghl):
    appointment = book(ghl, slot(MONDAY, 9))
    response = admin_client.post(
        reverse("admin:integrations_sandboxappointment_changelist"),
        {"action": "cancel_selected", "_selected_action": [appointment["id"]]},
    )
    assert response.status_code == 302
    assert slot(MONDAY, 9) in day_slots(ghl, MONDAY)
