"""POST /api/functions/<tool_name>: signatures, both body forms, permissions, argument errors, logging,
and the one place concurrency matters: two identical bookings at once must book once."""

import json
import re
import threading
import time
from dataclasses import replace

import pytest
from django.db import connection
from django.test import Client

from calls.models import ToolInvocation
from integrations.models import Agent
from integrations.tools import service
from integrations.tools.registry import HANDLERS
from tests.conftest import fixture_bytes, fixture_json, post_signed, retell_signature
from tests.tools.support import AGENT_ID, CALL_ID, GHL, call_tool, free_slots, make_tool, retell_body

FREE_SLOTS_URL = f"{GHL}/calendars/cal_Cleanings01/free-slots"
APPOINTMENTS_URL = f"{GHL}/calendars/events/appointments"
SLOTS = free_slots("2026-12-08T14:00:00-08:00", "2026-12-08T16:00:00-08:00")


@pytest.fixture
def availability(location):
    return make_tool("check_availability")


# --- Transport -----------------------------------------------------------------------------------


def test_the_retell_fixture_request_is_answered(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)

    response = post_signed(
        client, "/api/functions/check_availability", fixture_bytes("retell_custom_function")
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["message"] == "I have Tuesday, December 8 at 2:00 PM or 4:00 PM."
    invocation = ToolInvocation.objects.get()
    assert invocation.source == ToolInvocation.Source.CUSTOM_FUNCTION
    assert invocation.call_id == CALL_ID
    assert invocation.agent_id == AGENT_ID
    assert invocation.tool_name == "check_availability"
    assert invocation.definition == availability
    assert invocation.arguments == {"date": "2026-12-08", "time_of_day": "afternoon"}
    assert invocation.result == response.json()
    assert invocation.latency_ms is not None and invocation.latency_ms >= 0
    assert invocation.idempotency_key is None  # read-only tools are never deduplicated


def test_the_time_spent_on_ghl_is_reported_apart_from_ours(client, ghl, clock, availability):
    """Server-Timing `ghl;dur=` and ToolInvocation.ghl_ms: what bench/ subtracts to find our overhead."""

    def slow_free_slots(request):
        time.sleep(0.03)
        return 200, {}, json.dumps(SLOTS)

    ghl.add_callback("GET", FREE_SLOTS_URL, callback=slow_free_slots)

    response = post_signed(
        client, "/api/functions/check_availability", fixture_bytes("retell_custom_function")
    )

    assert response.status_code == 200
    timing = re.fullmatch(r'ghl;dur=([0-9.]+);desc="GHL, 1 request\(s\)"', response["Server-Timing"])
    assert timing and float(timing.group(1)) >= 30
    invocation = ToolInvocation.objects.get()
    assert 30 <= invocation.ghl_ms <= invocation.latency_ms


def test_a_tool_that_needs_no_ghl_reports_zero_ghl_time(client, ghl, clock, availability):
    response = post_signed(client, "/api/functions/check_availability", b"{not json")

    assert response["Server-Timing"].startswith("ghl;dur=0.00;")


def test_args_only_body_works_without_a_call(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)

    response = post_signed(
        client, "/api/functions/check_availability", fixture_bytes("retell_custom_function_args_only")
    )

    assert response.status_code == 200
    assert len(response.json()["slots"]) == 2
    invocation = ToolInvocation.objects.get()
    assert (invocation.call_id, invocation.agent_id) == ("", "")


def test_trailing_slash_is_served_without_a_redirect(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)

    response = post_signed(
        client, "/api/functions/check_availability/", retell_body("x", {"date": "2026-12-08"})
    )

    assert response.status_code == 200


def test_unsigned_request_is_refused(client, availability):
    body = json.dumps(retell_body("check_availability", {})).encode()
    response = client.post("/api/functions/check_availability", data=body, content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"] == "missing_signature"
    assert not ToolInvocation.objects.exists()


def test_wrongly_signed_request_is_refused(client, availability):
    body = json.dumps(retell_body("check_availability", {})).encode()
    response = client.post(
        "/api/functions/check_availability",
        data=body,
        content_type="application/json",
        HTTP_X_RETELL_SIGNATURE=retell_signature(body, key="some-other-key"),
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"


def test_malformed_json_is_a_400(client, availability):
    response = post_signed(client, "/api/functions/check_availability", b"{not json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert response.json()["message"].startswith("Body is not valid JSON: Expecting property name")
    assert not ToolInvocation.objects.exists()


@pytest.mark.parametrize("body", [b'{"date": NaN}', b"[" * 100_000 + b"]" * 100_000])
def test_json_no_database_can_store_is_a_400(client, availability, body):
    response = post_signed(client, "/api/functions/check_availability", body)

    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
    assert not ToolInvocation.objects.exists()


def test_a_null_body_is_answered_and_logged(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)  # found by fuzzing: the log row needs arguments ({} here)

    response = post_signed(client, "/api/functions/check_availability", b"null")

    assert response.status_code == 200
    assert ToolInvocation.objects.get().arguments == {}


def test_nul_and_lone_surrogates_in_the_call_are_logged_as_replacement_characters(client, ghl, availability):
    body = json.dumps(retell_body("check_availability", {"date": "2099-01-05"}, call_id="call_\x00\ud800"))

    response = post_signed(client, "/api/functions/check_availability", body.encode())

    assert response.status_code == 200
    assert ToolInvocation.objects.get().call_id == "call_\ufffd\ufffd"


@pytest.mark.parametrize("name", ["no spaces", "x" * 65, "%00", "caf%C3%A9"])
def test_a_name_no_tool_can_have_is_a_json_404_without_a_query(client, availability, name):
    response = post_signed(client, f"/api/functions/{name}", retell_body("x", {}))

    assert response.status_code == 404 and response.json()["error"] == "unknown_tool"


def test_get_is_a_json_405(client, availability):
    response = client.get("/api/functions/check_availability", HTTP_X_RETELL_SIGNATURE=retell_signature(b""))

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    "changes",
    [{"enabled": False}, {"expose_as_custom_function": False}, {"name": "something_else"}],
)
def test_unknown_or_disabled_tool_is_a_404(client, availability, changes):
    for field, value in changes.items():
        setattr(availability, field, value)
    availability.save()

    response = call_tool(client, "check_availability", {})

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_tool"
    assert not ToolInvocation.objects.exists()


def test_tool_limited_to_other_agents_is_a_403(client, location, agent):
    other = Agent.objects.create(retell_agent_id="agent_other", name="Other", location=location)
    make_tool("check_availability", agents=[other])

    response = call_tool(client, "check_availability", {"date": "2026-12-08"})

    assert response.status_code == 403
    assert response.json()["error"] == "agent_not_allowed"
    assert not ToolInvocation.objects.exists()


def test_tool_limited_to_agents_refuses_the_args_only_form(client, location, agent):
    make_tool("check_availability", agents=[agent])

    response = post_signed(client, "/api/functions/check_availability", {"date": "2026-12-08"})

    assert response.status_code == 403
    assert "args_at_root" in response.json()["message"]


def test_allowed_agent_uses_its_own_location(client, ghl, clock, agent):
    from integrations.models import GhlLocation

    branch = GhlLocation.objects.create(
        location_id="loc_Branch",
        name="Branch",
        token="pit-branch",
        timezone="America/Chicago",
        default_calendar_id="cal_Branch",
    )
    agent.location = branch
    agent.save()
    make_tool("check_availability", agents=[agent])
    ghl.get(f"{GHL}/calendars/cal_Branch/free-slots", json=free_slots())

    body = call_tool(client, "check_availability", {"date": "2026-12-08"}).json()

    assert body["timezone"] == "America/Chicago"
    assert ghl.calls[0].request.headers["Authorization"] == "Bearer pit-branch"


# --- Arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        ({}, "'start_time' is a required property"),
        ({"start_time": 1796313600}, "start_time: 1796313600 is not of type 'string'"),
        ({"start_time": "x" * 41}, "start_time: '" + "x" * 41 + "' is too long"),
    ],
)
def test_schema_violation_is_a_200_the_llm_can_act_on(client, ghl, clock, location, args, detail):
    make_tool("book_appointment")

    response = call_tool(client, "book_appointment", args)

    assert response.status_code == 200
    body = response.json()
    assert body["error"] == "invalid_arguments"
    assert body["message"] == "I'm missing some details to do that."
    assert body["details"] == [detail]
    assert len(ghl.calls) == 0
    invocation = ToolInvocation.objects.get()
    assert invocation.error_code == "invalid_arguments"
    assert invocation.idempotency_key is None  # refused before any claim


def test_formats_and_enums_are_checked(client, ghl, clock, availability):
    body = call_tool(client, "check_availability", {"date": "next tuesday", "time_of_day": "noon"}).json()

    assert body["error"] == "invalid_arguments"
    assert body["details"] == [
        "date: 'next tuesday' is not a 'date'",
        "time_of_day: 'noon' is not one of ['morning', 'afternoon', 'evening', 'any']",
    ]


def test_nulls_and_undeclared_arguments_are_ignored(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)

    response = call_tool(
        client, "check_availability", {"date": "2026-12-08", "time_of_day": None, "patient_mood": "great"}
    )

    assert response.json()["available"] is True
    assert ToolInvocation.objects.get().arguments == {"date": "2026-12-08"}


def test_an_overridden_schema_is_what_gets_validated(client, ghl, clock, location):
    make_tool(
        "check_availability",
        argument_schema={
            "type": "object",
            "properties": {"date": {"type": "string", "format": "date"}},
            "required": ["date"],
        },
    )

    body = call_tool(client, "check_availability", {}).json()

    assert body["details"] == ["'date' is a required property"]


def test_the_compiled_validator_follows_edits(client, ghl, clock, availability):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)
    assert "error" not in call_tool(client, "check_availability", {}).json()

    availability.argument_schema = {
        "type": "object",
        "properties": {"date": {"type": "string"}},
        "required": ["date"],
    }
    availability.save()

    assert call_tool(client, "check_availability", {}).json()["error"] == "invalid_arguments"


def test_a_bug_in_a_handler_still_answers_speakably(client, ghl, clock, availability, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("oops")

    spec = HANDLERS["check_availability"]
    monkeypatch.setitem(HANDLERS, "check_availability", replace(spec, function=broken))

    response = call_tool(client, "check_availability", {"date": "2026-12-08"})

    assert response.status_code == 200
    assert response.json() == {
        "error": "internal_error",
        "message": "Something went wrong on my side, so I can't do that right now.",
    }
    assert ToolInvocation.objects.get().error == "KeyError: 'oops'"


# --- Transport-independent service (what the MCP server calls) ------------------------------------


def test_run_tool_without_a_call_is_logged_and_never_deduplicated(ghl, clock, location):
    from integrations.tools.context import MCP, ToolContext

    definition = make_tool("add_note", expose_over_mcp=True)
    ghl.post(f"{GHL}/contacts/c_Dana7Lee01/notes", json=fixture_json("ghl_note_created"))
    ghl.post(f"{GHL}/contacts/c_Dana7Lee01/notes", json=fixture_json("ghl_note_created"))
    context = ToolContext(source=MCP, location=location)
    args = {"body": "Prefers mornings", "contact_id": "c_Dana7Lee01"}

    first = service.run_tool(definition, args, context)
    second = service.run_tool(definition, args, context)

    assert not first.is_error and not second.replayed
    assert first.payload == {
        "note_id": "n_4Qw8Zt",
        "contact_id": "c_Dana7Lee01",
        "message": "I've added that note.",
    }
    assert ToolInvocation.objects.filter(source=ToolInvocation.Source.MCP, idempotency_key=None).count() == 2


def test_idempotency_key_is_canonical():
    key = service.idempotency_key
    assert key("call_1", "book", {"a": 1, "b": 2}) == key("call_1", "book", {"b": 2, "a": 1})
    assert key("call_1", "book", {"a": 1}) != key("call_2", "book", {"a": 1})
    assert key("call_1", "book", {"a": 1}) != key("call_1", "book_consult", {"a": 1})


def test_a_success_older_than_the_window_acts_again(client, ghl, clock, location, settings):
    settings.TOOL_IDEMPOTENCY_WINDOW_SECONDS = 0
    make_tool("book_appointment")
    ghl.get(FREE_SLOTS_URL, json=SLOTS)
    ghl.post(APPOINTMENTS_URL, json={"id": "a_1"})
    args = {"start_time": "2026-12-08T14:00:00-08:00"}

    call_tool(client, "book_appointment", args)
    call_tool(client, "book_appointment", args)

    assert len([call for call in ghl.calls if call.request.method == "POST"]) == 2
    assert ToolInvocation.objects.filter(status=ToolInvocation.Status.SUCCEEDED).count() == 2


def test_a_duplicate_of_a_still_running_call_says_so(client, ghl, clock, location, settings):
    settings.TOOL_DUPLICATE_WAIT_SECONDS = 0
    definition = make_tool("book_appointment")
    args = {"start_time": "2026-12-08T14:00:00-08:00"}
    ToolInvocation.objects.create(
        idempotency_key=service.idempotency_key(CALL_ID, definition.name, args),
        tool_name=definition.name,
        source=ToolInvocation.Source.CUSTOM_FUNCTION,
        status=ToolInvocation.Status.RUNNING,
    )

    body = call_tool(client, "book_appointment", args).json()

    assert body == {
        "error": "in_progress",
        "message": "I'm still working on that, one moment please.",
        "retryable": True,
    }
    assert len(ghl.calls) == 0


# --- Concurrency (PostgreSQL, real threads) ------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_bookings_book_once(ghl, clock, location, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: concurrent writers and the unique index's blocking semantics")
    make_tool("book_appointment")
    ghl.get(FREE_SLOTS_URL, json=SLOTS)

    # Hold the winner's POST until the loser is provably waiting on the winner's RUNNING row, so the
    # two requests really overlap (no sleeps, no timing assumptions).
    loser_waiting = threading.Event()
    real_pause = service.pause

    def pause():
        loser_waiting.set()
        real_pause()

    monkeypatch.setattr(service, "pause", pause)

    def book(request):
        assert loser_waiting.wait(timeout=10), "the duplicate never waited for the first booking"
        return 201, {}, json.dumps({"id": "a_Once"})

    ghl.add_callback("POST", APPOINTMENTS_URL, callback=book, content_type="application/json")

    start = threading.Barrier(2)
    answers = []

    def request_booking():
        try:
            start.wait(timeout=10)
            response = call_tool(Client(), "book_appointment", {"start_time": "2026-12-08T14:00:00-08:00"})
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=request_booking) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1] == answers[1][1]
    assert answers[0][1]["appointment_id"] == "a_Once"
    posts = [call for call in ghl.calls if call.request.method == "POST"]
    assert len(posts) == 1
    assert len([call for call in ghl.calls if call.request.method == "GET"]) == 1  # the loser never ran
    invocation = ToolInvocation.objects.get()
    assert invocation.status == ToolInvocation.Status.SUCCEEDED
    assert invocation.duplicate_count == 1


def test_location_edits_reach_the_next_call(client, ghl, clock, availability, location):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)
    ghl.get(FREE_SLOTS_URL, json=SLOTS)
    assert (
        call_tool(client, "check_availability", {"date": "2026-12-08"}).json()["timezone"]
        == "America/Los_Angeles"
    )

    location.timezone = "America/Denver"
    location.save()

    assert (
        call_tool(client, "check_availability", {"date": "2026-12-08"}).json()["timezone"] == "America/Denver"
    )


def test_the_default_location_serves_agents_without_one(db, client, ghl, clock, settings):
    # No location row yet: the first tool call creates the GHL_LOCATION_ID one (token from the env).
    make_tool("lookup_contact")
    ghl.get(f"{GHL}/contacts/c_Dana7Lee01", json=fixture_json("ghl_contact"))

    body = call_tool(client, "lookup_contact", {}).json()

    assert body["found"] is True
    assert ghl.calls[0].request.headers["Authorization"] == f"Bearer {settings.GHL_API_TOKEN}"


def test_a_schema_that_cannot_be_applied_answers_speakably(client, ghl, clock, location):
    # Valid against the metaschema, so the admin accepts it, but its $ref cannot be resolved here.
    schema = {"type": "object", "properties": {"date": {"$ref": "https://example.com/date.json"}}}
    make_tool("check_availability", argument_schema=schema)

    response = call_tool(client, "check_availability", {"date": "2026-12-08"})

    assert response.status_code == 200
    assert response.json() == {"error": "tool_unavailable", "message": "That tool isn't available right now."}
    assert ToolInvocation.objects.get().error.startswith("argument schema:")
