"""How every path that talks to a vendor behaves when the vendor misbehaves.

GHL faults, each against the three paths that call GHL:

| fault            | how it is made                                           | the client raises     |
| ---------------- | -------------------------------------------------------- | --------------------- |
| rate_limited     | 429 with X-RateLimit-* headers (burst spent, 60 s window) | RateLimited           |
| server_error     | 503 with GHL's JSON error                                 | RetryableError        |
| html_bad_gateway | 502 with an HTML page (a proxy in front of GHL)           | RetryableError        |
| slow             | a REAL server that accepts and never answers              | RetryableError        |
| refused          | a REAL closed port on 127.0.0.1 (GHL_BASE_URL)             | RetryableError        |
| malformed_json   | 200 with a truncated JSON body                            | PermanentError (2xx)  |

- inbound routing fails open: a valid answer (the number's default agent, string variables,
  `contact_found: unknown`) and a RoutingDecision saying why;
- a custom function answers HTTP 200 with a speakable error and logs the invocation;
- the outbox retries what may succeed later (a 429 no sooner than GHL's window) and, after the fault,
  converges on one note.

Retell create-call faults for outbound calls, and the database refusing connections, follow.
"""

import json
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
import responses
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf

from calls import outbox
from calls.models import Call, CallEvent, GhlSyncTask, RoutingDecision, ToolInvocation
from calls.pipeline import process_call_event
from integrations.models import Agent, OutboundCallRequest, OutboundCampaign, PhoneNumber
from tests.conftest import fixture_bytes, fixture_json, post_signed
from tests.ghl_fake import FakeGhl
from tests.real_sockets import closed_port_url, silent_server
from tests.tools.support import make_tool, retell_body

GHL = "https://services.leadconnectorhq.com"
RETELL_CREATE_CALL = "https://api.retellai.com/v2/create-phone-call"
TOKEN = "pit-test-token-0000"
DANA = "c_Dana7Lee01"
DIALLED = "+14155559999"

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Remaining": "0",
    "X-RateLimit-Max": "100",
    "X-RateLimit-Interval-Milliseconds": "60000",
    "X-RateLimit-Daily-Remaining": "151234",
}
CANNED = {
    "rate_limited": {
        "status": 429,
        "json": {"statusCode": 429, "message": "Too Many Requests"},
        "headers": RATE_LIMIT_HEADERS,
    },
    "server_error": {"status": 503, "json": {"statusCode": 503, "message": "Service Unavailable"}},
    "html_bad_gateway": {
        "status": 502,
        "body": "<html><h1>502 Bad Gateway</h1></html>",
        "content_type": "text/html",
    },
    "malformed_json": {"status": 200, "body": '{"contact": {"id": "c_Dana7Lee01", "tags": ["vi'},
}
GHL_FAULTS = ["rate_limited", "server_error", "html_bad_gateway", "slow", "refused", "malformed_json"]
RETRYABLE = {"rate_limited", "server_error", "html_bad_gateway", "slow", "refused"}
# What each fault leaves in the error we record: proof the request really met that fault.
EVIDENCE = {
    "rate_limited": "HTTP 429",
    "server_error": "HTTP 503",
    "html_bad_gateway": "HTTP 502",
    "slow": "timed out",
    "refused": "Connection refused",
    "malformed_json": "not a JSON object",
}


@pytest.fixture(params=GHL_FAULTS)
def ghl_fault(request, settings):
    """GHL misbehaving one way for every request. Short timeouts: `slow` costs a fraction of a second."""
    settings.GHL_READ_TIMEOUT = settings.GHL_LIVE_READ_TIMEOUT = 0.3
    name = request.param
    if name == "refused":
        settings.GHL_BASE_URL = closed_port_url()
        yield name
    elif name == "slow":
        with silent_server() as url:
            settings.GHL_BASE_URL = url
            yield name
    else:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            for method in ("GET", "POST", "PUT", "DELETE"):
                rsps.add(method, re.compile(re.escape(GHL) + r"/.*"), **CANNED[name])
            yield name


def availability_request():
    next_week = (timezone.now() + timedelta(days=7)).date().isoformat()
    return retell_body("check_availability", {"date": next_week})


def assert_speakable(message):
    assert isinstance(message, str) and 10 < len(message) < 200
    for leak in ("HTTP", "Traceback", "GHL", TOKEN, "{", "None"):
        assert leak not in message


# --- Inbound routing: fail open ------------------------------------------------------------------------


@pytest.mark.django_db
def test_inbound_routing_fails_open_with_a_valid_answer(client, ghl_fault, location):
    from django.core.cache import cache

    cache.clear()
    main = Agent.objects.create(retell_agent_id="agent_main", name="Main", location=location)
    PhoneNumber.objects.create(number=DIALLED, location=location, default_agent=main)
    inbound = fixture_json("retell_call_inbound")

    response = post_signed(client, "/api/webhooks/inbound", inbound)

    assert response.status_code == 200
    answer = response.json()["call_inbound"]
    assert answer["override_agent_id"] == "agent_main"  # the number's default route
    variables = answer["dynamic_variables"]
    assert all(isinstance(value, str) for value in variables.values())  # else Retell drops the answer
    assert variables["contact_found"] == "unknown" and variables["contact_id"] == ""
    decision = RoutingDecision.objects.get()
    assert decision.ghl_failed and decision.lookup == "failed"
    assert EVIDENCE[ghl_fault] in decision.ghl_error and TOKEN not in decision.ghl_error
    assert str(decision.pk) == answer["metadata"]["routing_decision_id"]


# --- A custom function: a speakable answer, HTTP 200 ------------------------------------------------


@pytest.mark.django_db
def test_a_custom_function_answers_200_with_something_to_say(client, ghl_fault, location):
    make_tool("check_availability", config={"calendar_id": "cal_Cleanings01"})

    response = post_signed(client, "/api/functions/check_availability", availability_request())

    assert response.status_code == 200  # a non-2xx would only make Retell retry
    answer = response.json()
    assert_speakable(answer["message"])
    invocation = ToolInvocation.objects.get()
    assert invocation.status == "failed"
    assert EVIDENCE[ghl_fault] in invocation.error and TOKEN not in invocation.error
    if ghl_fault in RETRYABLE:
        assert answer["error"] == "ghl_unavailable" and answer["retryable"] is True
    else:  # GHL answered 200 but unreadably: no point in the agent trying again at once
        assert answer["error"] == "ghl_rejected"
    assert invocation.error_code == answer["error"]


# --- The outbox: retry what may succeed, converge on one note ----------------------------------------


@pytest.mark.django_db
def test_the_outbox_retries_after_a_fault_and_then_writes_one_note(client, ghl_fault, agent, settings):
    real_ghl = settings.GHL_BASE_URL
    assert post_signed(client, "/api/webhooks/retell", fixture_bytes("retell_call_ended")).status_code == 204
    process_call_event(CallEvent.objects.get().pk)
    now = timezone.now()

    outbox.run_due_tasks(now=now)

    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "pending" and task.attempts == 1
    assert EVIDENCE[ghl_fault] in task.last_error and TOKEN not in task.last_error
    # Backoff: 30 s ±20% after a first failure, and never sooner than GHL's rate-limit window.
    earliest = timedelta(seconds=60) if ghl_fault == "rate_limited" else timedelta(seconds=24)
    assert task.next_attempt_at >= now + earliest
    assert Call.objects.get().ghl_sync_status == "pending"
    assert outbox.run_due_tasks(now=now + timedelta(seconds=5)) == 0  # not due yet: GHL is left alone

    # GHL recovers, and the rate-limit pause the 429 shared (real time, in the cache) is long over.
    settings.GHL_BASE_URL = real_ghl
    cache.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ghl = FakeGhl(rsps)
        assert outbox.run_due_tasks(now=now + timedelta(hours=2)) == 1
    assert len(ghl.notes_for(DANA)) == 1
    assert GhlSyncTask.objects.get(kind="note").status == "done"
    assert Call.objects.get().ghl_sync_status == "synced"


@pytest.mark.django_db
def test_a_note_ghl_created_but_answered_unreadably_is_adopted_not_written_twice(client, agent):
    """GHL wrote the note and its 201 came back truncated: the retry must find it, not add another."""
    assert post_signed(client, "/api/webhooks/retell", fixture_bytes("retell_call_ended")).status_code == 204
    process_call_event(CallEvent.objects.get().pk)
    now = timezone.now()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:

        def acted_then_garbled(request):
            status, headers, body = ghl._handle(request)
            return status, headers, body[: len(body) // 2]

        # Registered before the fake's own routes, so only the first note POST is garbled.
        rsps.add_callback("POST", re.compile(re.escape(GHL) + r"/contacts/[^/]+/notes"), acted_then_garbled)
        ghl = FakeGhl(rsps)

        outbox.run_due_tasks(now=now)
        task = GhlSyncTask.objects.get(kind="note")
        assert len(ghl.notes_for(DANA)) == 1  # GHL did write it
        assert task.status == "pending" and "not a JSON object" in task.last_error

        outbox.run_due_tasks(now=now + timedelta(hours=1))

    assert len(ghl.notes_for(DANA)) == 1
    task.refresh_from_db()
    assert task.status == "done" and task.ghl_id == ghl.notes_for(DANA)[0]["id"]


# --- Retell create-call failures for outbound calls --------------------------------------------------


@pytest.fixture
def campaign(agent, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    campaign = OutboundCampaign(
        slug="new-leads", name="New leads", agent=agent, location=agent.location, from_number="+14155550100"
    )
    secret = campaign.set_new_secret()
    campaign.save()
    campaign.secret = secret
    return campaign


def request_a_call(client, campaign):
    return client.post(
        f"/api/webhooks/ghl/outbound/{campaign.slug}",
        data=fixture_bytes("ghl_workflow_webhook"),
        content_type="application/json",
        HTTP_X_WEBHOOK_SECRET=campaign.secret,
    )


RETELL_REFUSALS = [400, 401, 402, 404, 422]
RETELL_HICCUPS = {
    "429": {"status": 429, "json": {"status": "error", "message": "Too many requests"}},
    "500": {"status": 500, "json": {"status": "error", "message": "Internal error"}},
    "502 html": {"status": 502, "body": "<html>Bad Gateway</html>", "content_type": "text/html"},
    "503": {"status": 503, "json": {"status": "error", "message": "Service unavailable"}},
    "read timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    # Retell accepted (2xx) but the answer is unreadable: the call may be ringing already.
    "201 truncated": {"status": 201, "body": '{"call_id": "call_9a1b2c3d4e5f", "call_sta'},
}


@pytest.mark.django_db
@pytest.mark.parametrize("status", RETELL_REFUSALS)
def test_retell_refusing_the_call_is_a_502_and_nobody_is_dialled_again(client, campaign, status):
    with responses.RequestsMock() as rsps:
        rsps.post(RETELL_CREATE_CALL, status=status, json={"status": "error", "message": "not allowed"})
        response = request_a_call(client, campaign)
    assert response.status_code == 502
    assert response.json()["error"] == "retell_error" and response.json()["retell_status"] == status
    assert OutboundCallRequest.objects.get().status == "failed"


@pytest.mark.django_db
@pytest.mark.parametrize("answer", RETELL_HICCUPS.values(), ids=RETELL_HICCUPS.keys())
def test_retell_hiccups_queue_the_call_for_a_retry_with_the_same_idempotency_key(client, campaign, answer):
    with responses.RequestsMock() as rsps:
        rsps.post(RETELL_CREATE_CALL, **answer)
        response = request_a_call(client, campaign)
        sent_key = json.loads(rsps.calls[0].request.body)["idempotency_key"]

    assert response.status_code == 202 and response.json()["status"] == "queued"
    request = OutboundCallRequest.objects.get()
    assert request.status == "queued" and request.scheduled_for > timezone.now()
    assert request.idempotency_key == sent_key  # the retry is recognised by Retell, never a second call
    assert request.last_error


@pytest.mark.django_db
def test_retell_unreachable_for_real_is_queued_for_a_retry(client, campaign, settings):
    settings.RETELL_BASE_URL = closed_port_url()
    response = request_a_call(client, campaign)
    assert response.status_code == 202 and response.json()["status"] == "queued"
    request = OutboundCallRequest.objects.get()
    assert "Retell unreachable" in request.last_error and request.retell_status is None


# --- The database refusing connections (PostgreSQL: a real refused connection) -------------------------
#
# Ingestion has its own test (tests/test_retell_webhook.py: 503, and the retry is stored once). Here:
# every other endpoint answers in JSON, and nothing is done that could not be recorded.


@contextmanager
def database_down():
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there: the database refuses connections
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(real)


needs_postgres = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="the in-memory SQLite test database cannot be taken down"
)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_database_down_each_endpoint_answers_json_and_acts_on_nothing(agent, campaign):
    make_tool("check_availability", config={"calendar_id": "cal_Cleanings01"})
    client = Client()
    with responses.RequestsMock() as vendors, database_down():  # any GHL or Retell request would fail it
        inbound = post_signed(client, "/api/webhooks/inbound", fixture_json("retell_call_inbound"))
        tool = post_signed(client, "/api/functions/check_availability", availability_request())
        outbound = request_a_call(client, campaign)
        health = client.get("/healthz")
        assert not vendors.calls

    # Inbound: the caller is ringing; an empty answer lets Retell connect the number's own agent.
    assert inbound.status_code == 200 and inbound.json() == {"call_inbound": {}}
    # A custom function: the tools' contract, a 200 with words for the agent.
    assert tool.status_code == 200 and tool.json()["error"] == "temporarily_unavailable"
    assert_speakable(tool.json()["message"])
    # GHL's workflow webhook: a 503 GHL retries later; nothing was dialled.
    assert outbound.status_code == 503 and outbound.json()["error"] == "unavailable"
    assert health.status_code == 503 and health.json()["database"]["ok"] is False

    assert not OutboundCallRequest.objects.exists() and not ToolInvocation.objects.exists()
