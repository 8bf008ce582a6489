"""`manage.py simulate_call` against a real running server (pytest-django's live_server) on the GHL sandbox.

This is the product tour as a test: the command plays a Retell call over HTTP, the server routes it,
runs the tools, stores the webhooks and (django-q2 running tasks inline) syncs the call to the
sandbox. Only the live server may be reached over the network: GHL is the in-process sandbox.
"""

import io
import json
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from requests.adapters import HTTPAdapter

from calls.models import Call, CallEvent, RoutingDecision, ToolInvocation
from integrations.sandbox.adapter import rate_limiter
from integrations.sandbox.models import SandboxAppointment, SandboxContact, SandboxNote
from integrations.sandbox.seed import VIP_AGENT_ID
from integrations.simulator import next_weekday

pytestmark = pytest.mark.django_db(transaction=True)  # the live server commits; so must we

DANA = "c_Dana7Lee01"


@pytest.fixture
def tour(settings, monkeypatch, live_server):
    """What `scripts/run` sets up without credentials: sandbox on, seeded, a worker running tasks."""
    from django_q.conf import Conf

    settings.GHL_SANDBOX = True
    settings.GHL_API_TOKEN = ""
    settings.GHL_LOCATION_ID = ""
    rate_limiter.reset()  # per-process budget, shared with every earlier test
    cache.clear()  # inbound contact lookups are cached
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs queued work inline, as a worker would

    real_send = HTTPAdapter.send

    def local_only(adapter, request, **kwargs):
        if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"a request left the machine: {request.url}")
        return real_send(adapter, request, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", local_only)
    call_command("seed_sandbox", stdout=io.StringIO())
    return live_server


def simulate(server, *options):
    out = io.StringIO()
    call_command("simulate_call", "--url", server.url, "--json", *options, stdout=out)
    return json.loads(out.getvalue())


def test_a_simulated_call_is_routed_booked_stored_and_synced_once(tour):
    result = simulate(tour)

    assert result["ok"], result["summary"]
    assert [step["name"] for step in result["steps"]] == [
        "inbound webhook",
        "call_started",
        "check_availability",
        "book_appointment",
        "transcript_updated",
        "call_ended",
        "call_analyzed",
    ]
    assert result["agent_id"] == VIP_AGENT_ID  # Dana is tagged vip: the seeded rule routed her
    booked = result["booked"]

    call = Call.objects.get(call_id=result["call_id"])
    assert call.status == "ended" and call.agent.retell_agent_id == VIP_AGENT_ID
    assert call.call_analysis["call_successful"] is True and booked["spoken_time"] in call.summary
    assert call.dynamic_variables["vip_tier"] == "gold"  # what the inbound answer gave the call
    assert RoutingDecision.objects.get().call == call  # linked through the metadata Retell echoes
    assert call.ghl_contact_id == DANA and call.ghl_sync_status == "synced"
    assert sorted(CallEvent.objects.filter(call=call).values_list("event", flat=True)) == [
        "call_analyzed",
        "call_ended",
        "call_started",
        "transcript_updated",
    ]

    # The transcript quotes what the tools really answered, and lists their calls and results.
    assert f"You're booked for {booked['spoken_time']}." in call.transcript
    results = [item for item in call.transcript_with_tool_calls if item["role"] == "tool_call_result"]
    assert [json.loads(item["content"]) for item in results][-1] == booked
    invocations = [item for item in call.transcript_with_tool_calls if item["role"] == "tool_call_invocation"]
    assert [item["name"] for item in invocations] == ["check_availability", "book_appointment"]
    assert json.loads(invocations[1]["arguments"]) == {"start_time": booked["start_time"]}

    [note] = SandboxNote.objects.filter(contact_id=DANA)
    assert "Caller: The first one, please." in note.body  # the transcript
    assert call.summary in note.body  # and the summary, in the same note
    [appointment] = SandboxAppointment.objects.all()
    assert appointment.contact_id == DANA and appointment.pk == booked["appointment_id"]
    assert appointment.start_time == datetime.fromisoformat(booked["start_time"])
    assert {"ai-call", "vip-call", "call-successful"} <= set(SandboxContact.objects.get(pk=DANA).tags)

    logged = ToolInvocation.objects.filter(call_id=call.call_id).order_by("created_at")
    assert [(row.tool_name, row.status, row.agent_id) for row in logged] == [
        ("check_availability", "succeeded", VIP_AGENT_ID),
        ("book_appointment", "succeeded", VIP_AGENT_ID),
    ]


def test_duplicated_and_reordered_deliveries_still_make_one_note_and_one_booking(tour):
    result = simulate(tour, "--duplicates", "3", "--out-of-order")

    assert result["ok"], result["summary"]
    names = [step["name"] for step in result["steps"]]
    assert (
        names.index("call_analyzed (1/3)")
        < names.index("call_ended (1/3)")
        < names.index("call_started (1/3)")
    )
    assert len(names) == 1 + 3 * 6

    call = Call.objects.get(call_id=result["call_id"])
    assert call.status == "ended" and call.call_analysis and call.ghl_sync_status == "synced"
    assert CallEvent.objects.get(call=call, event="call_ended").delivery_count == 3
    [note] = SandboxNote.objects.filter(contact_id=DANA)
    assert call.summary in note.body and "Caller: The first one, please." in note.body
    assert SandboxAppointment.objects.count() == 1
    booking = ToolInvocation.objects.get(call_id=call.call_id, tool_name="book_appointment")
    assert booking.duplicate_count == 2  # Retell's retries were answered from the first booking


def test_an_unknown_caller_is_asked_for_a_name_and_becomes_a_contact(tour):
    result = simulate(tour, "--from", "+14155550177")

    assert result["ok"], result["summary"]
    assert result["agent_id"] == "agent_sandbox_reception"  # the demo line's default agent
    contact = SandboxContact.objects.get(phone="+14155550177")
    assert (contact.first_name, contact.last_name) == ("Jordan", "Baker")
    assert SandboxAppointment.objects.get().contact == contact
    assert SandboxNote.objects.filter(contact=contact).count() == 1


def test_no_booking_checks_availability_only(tour):
    result = simulate(tour, "--no-booking")

    assert result["ok"] and result["booked"] is None
    assert [step["name"] for step in result["steps"] if "/functions/" in step["path"]] == [
        "check_availability"
    ]
    assert not SandboxAppointment.objects.exists()
    assert "will call back" in Call.objects.get().summary


def test_a_wrong_key_fails_every_step_and_exits_non_zero(tour):
    out = io.StringIO()
    with pytest.raises(CommandError, match="6 of 6 requests failed"):
        call_command("simulate_call", "--url", tour.url, "--api-key", "wrong", stdout=out)
    assert "invalid_signature" in out.getvalue() and "FAILED" in out.getvalue()
    assert not Call.objects.exists() and not CallEvent.objects.exists()


def test_a_server_that_is_not_running_is_a_clear_error(tour):
    with pytest.raises(CommandError, match="Is the server running"):
        call_command("simulate_call", "--url", "http://127.0.0.1:9", stdout=io.StringIO())


def test_the_caller_asks_for_the_next_weekday():
    assert next_weekday(datetime(2026, 12, 4).date()).isoformat() == "2026-12-07"  # Friday → Monday
    assert next_weekday(datetime(2026, 12, 7).date()).isoformat() == "2026-12-08"
