"""Outbound calls from GHL workflows: POST /api/webhooks/ghl/outbound/<slug> → Retell create-phone-call."""

import datetime as dt
import json
import threading

import pytest
import requests
import responses
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from calls.models import Call
from integrations.models import OutboundCallRequest, OutboundCampaign
from integrations.outbound import services
from integrations.outbound.services import DIAL_TASK, dial_request
from tests.conftest import fixture_json

CREATE_CALL = "https://api.retellai.com/v2/create-phone-call"
URL = "/api/webhooks/ghl/outbound/new-leads"
PACIFIC = "America/Los_Angeles"
on_postgres = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="needs PostgreSQL and real threads"
)


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _queue_runs_inline(monkeypatch):
    """django-q2 tasks run inline, as a qcluster worker would run them."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def campaign(agent):
    campaign = OutboundCampaign(
        slug="new-leads", name="New leads", agent=agent, location=agent.location, from_number="+14155550100"
    )
    campaign.secret = campaign.set_new_secret()  # kept on the instance for the tests only
    campaign.save()
    return campaign


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def frozen(monkeypatch):
    """Set the clock: `frozen(datetime)`. timezone.now feeds our services and auto_now_add alike."""

    def freeze(when):
        monkeypatch.setattr(timezone, "now", lambda: when)
        return when

    return freeze


def registered_call(**overrides):
    return {**fixture_json("retell_create_phone_call"), **overrides}


def ok(mocked, **overrides):
    mocked.post(CREATE_CALL, json=registered_call(**overrides), status=201)


def lead(**overrides):
    return {**fixture_json("ghl_workflow_webhook"), **overrides}


def post(client, payload=None, *, secret=None, campaign=None, url=URL, **extra):
    """POST a GHL workflow webhook with the campaign secret in the X-Webhook-Secret header."""
    body = payload if isinstance(payload, bytes | str) else json.dumps(lead() if payload is None else payload)
    headers = {}
    if secret is not False:
        headers["HTTP_X_WEBHOOK_SECRET"] = secret or campaign.secret
    return client.post(url, data=body, content_type="application/json", **headers, **extra)


def sent(mocked, index=0):
    return json.loads(mocked.calls[index].request.body)


def at(text, tz=PACIFIC):
    """An aware datetime from local wall time: at("2026-12-03 10:00")."""
    import zoneinfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz))


def with_window(campaign, days=(0, 1, 2, 3, 4), start="09:00", end="17:00", tz=PACIFIC):
    campaign.call_days = list(days)
    campaign.call_start = dt.time.fromisoformat(start)
    campaign.call_end = dt.time.fromisoformat(end)
    campaign.call_timezone = tz
    campaign.save()
    return campaign


def dial_schedules():
    """Our django-q2 schedules (other features keep their own, e.g. a repeating outbox sweeper)."""
    return Schedule.objects.filter(func=DIAL_TASK)


def run_due_schedules():
    """What the qcluster does: turn due django-q2 schedules into tasks (run inline: Conf.SYNC)."""
    from django_q.scheduler import scheduler

    scheduler()


# --- the Retell request --------------------------------------------------------------------------


@pytest.mark.django_db
def test_sample_ghl_payload_becomes_this_exact_retell_request(client, campaign, mocked):
    ok(mocked)
    response = post(client, campaign=campaign)

    assert response.status_code == 201, response.content
    request = OutboundCallRequest.objects.get()
    assert response.json() == {
        "status": "placed",
        "call_id": "call_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "request_id": request.pk,
        "duplicate": False,
    }
    assert len(mocked.calls) == 1
    sent_request = mocked.calls[0].request
    assert sent_request.url == CREATE_CALL
    assert sent_request.headers["Authorization"] == "Bearer key_test_retell_api_key"
    assert sent_request.headers["Content-Type"] == "application/json"
    assert json.loads(sent_request.body) == {
        "from_number": "+14155550100",
        "to_number": "+14155550142",
        "override_agent_id": "agent_5d3e1c9b2a7f4e6d8c0b",
        "retell_llm_dynamic_variables": {
            "contact_id": "c_NewLead042",
            "first_name": "Sam",
            "customer_name": "Sam Rivera",
            "service_interest": "whitening",
            "campaign": "winter-promo",
        },
        "metadata": {
            "source": "ghl_outbound",
            "campaign": "new-leads",
            "outbound_request_id": request.pk,
            "ghl_contact_id": "c_NewLead042",
            "ghl_location_id": "loc_BrightDental1",
            "ghl_workflow_id": "wf_NewLeadCall",
        },
        "idempotency_key": request.idempotency_key,
    }
    assert request.idempotency_key.startswith("ghl-outbound-")


@pytest.mark.django_db
def test_the_call_is_recorded_registered_with_its_ghl_contact(client, campaign, agent, location, mocked):
    ok(mocked)
    post(client, campaign=campaign)

    call = Call.objects.get()
    assert call.call_id == "call_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert call.status == Call.Status.REGISTERED
    assert call.direction == Call.Direction.OUTBOUND
    assert (call.from_number, call.to_number) == ("+14155550100", "+14155550142")
    assert call.caller_number == "+14155550142"
    assert call.agent == agent and call.location == location
    assert (call.retell_agent_id, call.agent_version) == ("agent_5d3e1c9b2a7f4e6d8c0b", 4)
    assert call.ghl_contact_id == "c_NewLead042"
    assert call.dynamic_variables["contact_id"] == "c_NewLead042"
    assert call.metadata["campaign"] == "new-leads" and call.metadata["ghl_contact_id"] == "c_NewLead042"
    request = OutboundCallRequest.objects.get()
    assert request.status == "placed" and request.call == call and request.attempts == 1


@pytest.mark.django_db
def test_agent_version_pinned_on_the_agent_or_overridden_by_the_campaign(client, campaign, agent, mocked):
    ok(mocked)
    agent.retell_agent_version = 4
    agent.save()
    post(client, campaign=campaign)
    assert sent(mocked, 0)["override_agent_version"] == 4

    campaign.agent_version = 7
    campaign.save()
    post(client, lead(contact_id="c_Other"), campaign=campaign)
    assert sent(mocked, 1)["override_agent_version"] == 7


@pytest.mark.django_db
def test_a_call_row_written_first_by_retells_webhook_is_completed_not_overwritten(client, campaign, mocked):
    ok(mocked)
    Call.objects.create(
        call_id="call_0a1b2c3d4e5f60718293a4b5c6d7e8f9", status="ongoing", direction="outbound", duration_ms=5
    )
    assert post(client, campaign=campaign).status_code == 201
    call = Call.objects.get()
    assert call.status == "ongoing" and call.duration_ms == 5  # the webhook's data stands
    assert call.ghl_contact_id == "c_NewLead042" and call.agent == campaign.agent  # ours fills the gaps


# --- dynamic variables -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_variable_mapping_adds_payload_fields_and_every_value_is_a_string(client, campaign, mocked):
    ok(mocked)
    campaign.variable_mapping = {
        "email": "email",
        "location.name": "business_name",
        "contact_source": "source",
        "missing.path": "nothing",
    }
    campaign.save()
    payload = lead(customData={"visits": 3, "vip": True, "interests": ["whitening", "braces"], "note": None})
    post(client, payload, campaign=campaign)
    assert sent(mocked)["retell_llm_dynamic_variables"] == {
        "contact_id": "c_NewLead042",
        "first_name": "Sam",
        "customer_name": "Sam Rivera",
        "visits": "3",
        "vip": "true",
        "interests": '["whitening", "braces"]',
        "note": "",
        "email": "sam.rivera@example.com",
        "business_name": "Bright Dental",
        "source": "facebook form",
        "nothing": "",
    }


@pytest.mark.django_db
def test_custom_data_can_be_left_out_but_contact_id_cannot_be_overridden(client, campaign, mocked):
    ok(mocked)
    campaign.include_custom_data = False
    campaign.variable_mapping = {"customData.service_interest": "service", "email": "contact_id"}
    campaign.save()
    payload = lead(full_name="", last_name="Rivera-Lopez")
    post(client, payload, campaign=campaign)
    assert sent(mocked)["retell_llm_dynamic_variables"] == {
        "contact_id": "c_NewLead042",
        "first_name": "Sam",
        "customer_name": "Sam Rivera-Lopez",
        "service": "whitening",
    }


# --- authentication and bad input ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "how,status,error",
    [
        ("none", 401, "missing_secret"),
        ("wrong header", 401, "invalid_secret"),
        ("wrong token", 401, "invalid_secret"),
        ("other campaign's secret", 401, "invalid_secret"),
        ("unknown campaign", 404, "unknown_campaign"),
    ],
)
def test_requests_without_this_campaigns_secret_dial_nobody(
    client, campaign, agent, mocked, how, status, error
):
    other = OutboundCampaign(slug="other", name="Other", agent=agent, from_number="+14155550100")
    other_secret = other.set_new_secret()
    other.save()
    body = json.dumps(lead())
    if how == "none":
        response = post(client, body, secret=False)
    elif how == "wrong header":
        response = post(client, body, secret=campaign.secret + "x")
    elif how == "wrong token":
        response = post(client, body, secret=False, url=f"{URL}?token=nope")
    elif how == "other campaign's secret":
        response = post(client, body, secret=other_secret)
    else:
        response = post(client, body, secret=campaign.secret, url="/api/webhooks/ghl/outbound/no-such")
    assert response.status_code == status
    assert response.json()["error"] == error
    assert campaign.secret not in response.content.decode()
    assert len(mocked.calls) == 0 and not OutboundCallRequest.objects.exists()


@pytest.mark.django_db
def test_token_query_parameter_and_trailing_slash_are_accepted(client, campaign, mocked):
    ok(mocked)
    response = post(client, secret=False, url=f"{URL}/?token={campaign.secret}")
    assert response.status_code == 201


@pytest.mark.django_db
def test_disabled_campaign_answers_409_but_only_to_a_caller_with_the_secret(client, campaign, mocked):
    campaign.enabled = False
    campaign.save()
    assert post(client, secret="wrong").status_code == 401
    response = post(client, campaign=campaign)
    assert response.status_code == 409
    assert response.json() == {
        "error": "campaign_disabled",
        "message": "Campaign 'new-leads' is disabled: no call was placed.",
    }
    assert len(mocked.calls) == 0


@pytest.mark.django_db
def test_secret_is_stored_hashed_and_checked(campaign):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM integrations_outboundcampaign WHERE id = %s", [campaign.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert campaign.secret not in row
    assert campaign.secret.startswith("whs_") and len(campaign.secret) > 40
    assert campaign.secret_hint == campaign.secret[:8]
    assert campaign.check_secret(campaign.secret)
    assert not campaign.check_secret(campaign.secret[:-1]) and not campaign.check_secret("")
    assert not OutboundCampaign(secret_hash="").check_secret("anything")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,status,error,field",
    [
        ("{not json", 400, "invalid_json", None),
        (b"\xff\xfe", 400, "invalid_json", None),
        ("[1, 2]", 400, "invalid_payload", None),
        (json.dumps(lead(phone="12")), 422, "invalid_payload", "phone"),
        (json.dumps({"contact_id": "c_1", "first_name": "Sam"}), 422, "invalid_payload", "phone"),
        (json.dumps(lead(customData="whitening")), 422, "invalid_payload", "customData"),
        (json.dumps(lead(location={"id": "loc_SomeoneElse"})), 422, "invalid_payload", "location.id"),
    ],
)
def test_bad_bodies_get_a_json_4xx_and_dial_nobody(client, campaign, mocked, body, status, error, field):
    response = post(client, body, campaign=campaign)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json().get("field") == field
    if field:
        assert field in response.json()["message"]
    assert len(mocked.calls) == 0 and not OutboundCallRequest.objects.exists()


@pytest.mark.django_db
def test_a_contact_id_longer_than_any_ghl_id_is_a_422_not_a_database_error(client, campaign, mocked):
    response = post(client, lead(contact_id="c" * 65), campaign=campaign)
    assert response.status_code == 422
    assert (response.json()["error"], response.json()["field"]) == ("invalid_payload", "contact_id")
    assert not OutboundCallRequest.objects.exists()


@pytest.mark.django_db
def test_nan_is_not_json_and_is_a_400(client, campaign, mocked):
    body = json.dumps(lead(customData={"score": float("nan")}))  # Python writes NaN; JSON has none
    response = post(client, body, campaign=campaign)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    assert not OutboundCallRequest.objects.exists()


@pytest.mark.django_db
def test_oversized_body_is_413_and_get_is_405(client, campaign):
    padding = "x" * (1024 * 1024)
    response = post(client, json.dumps(lead(customData={"pad": padding})), campaign=campaign)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    response = client.get(URL, HTTP_X_WEBHOOK_SECRET=campaign.secret)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


@pytest.mark.django_db
def test_a_database_failure_is_a_json_503_not_a_traceback(client, campaign, monkeypatch):
    from django.db import OperationalError

    from integrations.outbound import views

    def down(**kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(views, "outbound_request_accept", down)
    response = post(client, campaign=campaign)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"


# --- idempotency -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_ghl_redelivery_never_dials_twice(client, campaign, mocked):
    ok(mocked)
    first = post(client, campaign=campaign)
    # GHL renders the payload again on a retry: fields outside the fingerprint may differ.
    again = post(client, lead(tags="new lead, facebook, hot"), campaign=campaign)

    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(mocked.calls) == 1
    assert OutboundCallRequest.objects.count() == 1 and Call.objects.count() == 1


@pytest.mark.django_db
def test_redelivery_while_retrying_or_scheduled_is_the_same_request(client, campaign, mocked):
    mocked.post(CREATE_CALL, json={"status": "error", "message": "upstream busy"}, status=503)
    first = post(client, campaign=campaign)
    again = post(client, campaign=campaign)
    assert first.status_code == again.status_code == 202
    assert again.json()["duplicate"] is True and again.json()["request_id"] == first.json()["request_id"]
    assert len(mocked.calls) == 1
    assert dial_schedules().count() == 1


@pytest.mark.django_db
def test_a_new_request_after_the_redelivery_window_dials_again(client, campaign, mocked):
    ok(mocked)
    post(client, campaign=campaign)
    OutboundCallRequest.objects.update(created_at=timezone.now() - dt.timedelta(minutes=91))
    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(call_id="call_second"), status=201)

    response = post(client, campaign=campaign)
    assert response.status_code == 201 and response.json()["call_id"] == "call_second"
    first_key, second_key = sent(mocked, 0)["idempotency_key"], sent(mocked, 1)["idempotency_key"]
    assert first_key != second_key


@pytest.mark.django_db
def test_another_workflow_or_customdata_step_is_a_new_request(client, campaign, mocked):
    ok(mocked)
    post(client, campaign=campaign)
    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(call_id="call_2"), status=201)
    assert post(client, lead(workflow={"id": "wf_Reactivation"}), campaign=campaign).status_code == 201
    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(call_id="call_3"), status=201)
    second_step = lead(customData={**lead()["customData"], "attempt": "2"})
    assert post(client, second_step, campaign=campaign).status_code == 201
    assert len(mocked.calls) == 3 and Call.objects.count() == 3


@on_postgres
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_redeliveries_dial_once(campaign, mocked):
    ok(mocked)
    results = _post_concurrently(campaign, [lead()] * 6)
    # The first placed the call; the others repeat it (200 once placed, 202 while still dialling).
    assert results.count(201) == 1 and set(results) <= {200, 201, 202}
    assert len(mocked.calls) == 1
    assert OutboundCallRequest.objects.count() == 1 and Call.objects.count() == 1


def _post_concurrently(campaign, payloads):
    from django.test import Client

    barrier = threading.Barrier(len(payloads))
    results = []

    def deliver(payload):
        try:
            barrier.wait()
            results.append(post(Client(), payload, campaign=campaign).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- calling window --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_outside_the_window_the_call_is_scheduled_for_the_next_opening(client, campaign, mocked, frozen):
    with_window(campaign)
    frozen(at("2026-12-04 18:30"))  # a Friday evening in Los Angeles
    response = post(client, campaign=campaign)

    assert response.status_code == 202
    request = OutboundCallRequest.objects.get()
    assert response.json() == {
        "status": "scheduled",
        "scheduled_for": "2026-12-07T09:00:00-08:00",
        "message": "Outside the calling window (Mon–Fri 09:00–17:00 America/Los_Angeles): "
        "the call will be placed at 2026-12-07 09:00 PST.",
        "request_id": request.pk,
        "duplicate": False,
    }
    assert len(mocked.calls) == 0
    assert request.status == "scheduled" and request.scheduled_for == at("2026-12-07 09:00")
    schedule = dial_schedules().get()
    assert (schedule.func, schedule.schedule_type) == (DIAL_TASK, Schedule.ONCE)
    assert schedule.args == f"({request.pk},)" and schedule.next_run == at("2026-12-07 09:00")

    # A re-delivery over the weekend joins the same scheduled request.
    frozen(at("2026-12-05 11:00"))
    again = post(client, campaign=campaign)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert dial_schedules().count() == 1

    # Monday, 09:00:30: the qcluster's scheduler runs the task, which dials once.
    ok(mocked)
    frozen(at("2026-12-07 09:00:30"))
    run_due_schedules()
    request.refresh_from_db()
    assert request.status == "placed" and request.call.call_id == registered_call()["call_id"]
    assert len(mocked.calls) == 1 and not dial_schedules().exists()
    assert sent(mocked)["idempotency_key"] == request.idempotency_key

    # A duplicate run of the task (a second worker, a retried schedule) finds nothing to do.
    assert dial_request(request.pk) == "placed"
    assert len(mocked.calls) == 1


@pytest.mark.redis  # also runs in the Redis pass, with Redis as the broker
@pytest.mark.django_db(transaction=True)  # the worker closes connections between tasks, as in production
def test_a_scheduled_call_goes_through_the_real_broker_and_worker(
    client, campaign, mocked, frozen, monkeypatch
):
    from django_q.brokers import get_broker

    from tests.redis_queue import drain

    monkeypatch.setattr(Conf, "SYNC", False)
    get_broker().purge_queue()
    with_window(campaign)
    frozen(at("2026-12-04 18:30"))
    request_id = post(client, campaign=campaign).json()["request_id"]

    ok(mocked)
    frozen(at("2026-12-07 09:00:30"))
    run_due_schedules()  # the scheduler only enqueues: nothing is dialled before a worker runs it
    assert len(mocked.calls) == 0
    frozen(at("2026-12-07 09:00:31"))  # a worker picks the task up a moment later
    results = drain()
    dials = [result for result in results if result["func"] == DIAL_TASK]
    assert len(dials) == 1 and dials[0]["success"], results
    assert OutboundCallRequest.objects.get(pk=request_id).status == "placed"
    assert len(mocked.calls) == 1


@pytest.mark.django_db
def test_inside_the_window_the_call_goes_out_now(client, campaign, mocked, frozen):
    ok(mocked)
    with_window(campaign)
    frozen(at("2026-12-07 09:00"))  # Monday, the minute it opens
    assert post(client, campaign=campaign).status_code == 201


@pytest.mark.django_db
def test_the_task_checks_the_window_and_the_campaign_again_when_it_runs(client, campaign, mocked, frozen):
    with_window(campaign)
    frozen(at("2026-12-04 18:30"))
    request_id = post(client, campaign=campaign).json()["request_id"]

    # The window was moved to the afternoon meanwhile: at 09:00 the task waits again, until 13:00.
    with_window(campaign, start="13:00", end="17:00")
    frozen(at("2026-12-07 09:00:30"))
    run_due_schedules()
    request = OutboundCallRequest.objects.get(pk=request_id)
    assert request.status == "scheduled" and request.scheduled_for == at("2026-12-07 13:00")
    assert dial_schedules().get().next_run == at("2026-12-07 13:00")

    # Then the campaign is disabled: nobody is called.
    campaign.enabled = False
    campaign.save()
    frozen(at("2026-12-07 13:00:30"))
    run_due_schedules()
    request.refresh_from_db()
    assert request.status == "cancelled" and len(mocked.calls) == 0


@pytest.mark.django_db
def test_window_defaults_to_the_locations_timezone(campaign, location):
    with_window(campaign, tz="")
    location.timezone = "Europe/Paris"
    location.save()
    campaign = OutboundCampaign.objects.get(pk=campaign.pk)
    assert campaign.calling_window.timezone == "Europe/Paris"


# --- Retell errors ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retell_4xx_is_recorded_and_answered_502_with_retells_message(client, campaign, mocked):
    mocked.post(
        CREATE_CALL,
        json={"status": "error", "message": "from_number +14155550100 is not owned by this account"},
        status=422,
    )
    response = post(client, campaign=campaign)

    assert response.status_code == 502
    request = OutboundCallRequest.objects.get()
    assert response.json() == {
        "error": "retell_error",
        "message": "from_number +14155550100 is not owned by this account",
        "retell_status": 422,
        "request_id": request.pk,
        "duplicate": False,
    }
    assert request.status == "failed" and request.retell_status == 422
    assert request.last_error == "from_number +14155550100 is not owned by this account"
    assert not Call.objects.exists() and not dial_schedules().exists()
    assert len(mocked.calls) == 1


@pytest.mark.django_db
def test_retell_5xx_is_queued_and_retried_with_backoff_and_the_same_idempotency_key(
    client, campaign, mocked, frozen
):
    now = frozen(at("2026-12-07 10:00"))
    mocked.post(CREATE_CALL, json={"status": "error", "message": "internal error"}, status=500)
    response = post(client, campaign=campaign)

    assert response.status_code == 202
    request = OutboundCallRequest.objects.get()
    assert response.json() == {
        "status": "queued",
        "retry_at": "2026-12-07T10:00:30-08:00",
        "message": "Retell HTTP 500: internal error; retrying at 2026-12-07T10:00:30-08:00.",
        "request_id": request.pk,
        "duplicate": False,
    }
    assert request.status == "queued" and request.attempts == 1
    assert dial_schedules().get().next_run == now + dt.timedelta(seconds=30)

    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(), status=201)
    frozen(now + dt.timedelta(seconds=31))
    run_due_schedules()
    request.refresh_from_db()
    assert request.status == "placed" and request.attempts == 2 and Call.objects.count() == 1
    assert sent(mocked, 0)["idempotency_key"] == sent(mocked, 1)["idempotency_key"] == request.idempotency_key


@pytest.mark.django_db
def test_retell_429_waits_as_long_as_retell_asks(client, campaign, mocked, frozen):
    now = frozen(at("2026-12-07 10:00"))
    mocked.post(CREATE_CALL, json={"message": "slow down"}, status=429, headers={"Retry-After": "120"})
    assert post(client, campaign=campaign).status_code == 202
    assert dial_schedules().get().next_run == now + dt.timedelta(seconds=120)


@pytest.mark.django_db
def test_retell_timeouts_exhaust_the_retries_then_fail(client, campaign, mocked, frozen):
    now = frozen(at("2026-12-07 10:00"))
    mocked.post(CREATE_CALL, body=requests.ReadTimeout("read timed out"))
    assert post(client, campaign=campaign).status_code == 202
    request = OutboundCallRequest.objects.get()
    delays = []
    for _ in range(services.MAX_ATTEMPTS - 1):
        due = dial_schedules().get().next_run
        delays.append(int((due - now).total_seconds()))
        now = frozen(due + dt.timedelta(seconds=1))
        run_due_schedules()
    request.refresh_from_db()
    assert delays == [30, 120, 480, 1200]  # each counted from the attempt that failed
    assert request.status == "failed" and request.attempts == services.MAX_ATTEMPTS
    assert "Retell unreachable" in request.last_error and not dial_schedules().exists()
    assert len(mocked.calls) == services.MAX_ATTEMPTS
    assert len({sent(mocked, i)["idempotency_key"] for i in range(services.MAX_ATTEMPTS)}) == 1

    replay = post(client, campaign=campaign)  # a GHL re-delivery gets the same verdict
    assert replay.status_code == 502 and replay.json()["duplicate"] is True


@pytest.mark.django_db
def test_no_retell_key_fails_the_request_clearly(client, campaign, mocked, settings):
    settings.RETELL_API_KEY = ""
    response = post(client, campaign=campaign)
    assert response.status_code == 502
    assert "RETELL_API_KEY" in response.json()["message"]


# --- daily limit -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_daily_limit_per_contact_in_the_campaigns_timezone(client, campaign, mocked, frozen):
    ok(mocked)
    campaign.max_calls_per_contact_per_day = 1
    campaign.call_timezone = PACIFIC
    campaign.save()
    frozen(at("2026-12-07 10:00"))
    assert post(client, campaign=campaign).status_code == 201

    # Another workflow, same contact, same day: refused, recorded, nobody dialled.
    response = post(client, lead(workflow={"id": "wf_Other"}), campaign=campaign)
    assert response.status_code == 409
    assert response.json()["error"] == "daily_limit_reached"
    assert response.json()["message"] == (
        "Daily limit reached: 1 call(s) per contact per day (America/Los_Angeles)."
    )
    # Same number under another GHL contact id is the same person on the phone.
    assert (
        post(client, lead(contact_id="c_Dup", workflow={"id": "wf_3"}), campaign=campaign).status_code == 409
    )
    assert len(mocked.calls) == 1
    assert OutboundCallRequest.objects.filter(status="limited").count() == 2

    # 23:59 Pacific is still the same day; 00:01 is the next.
    frozen(at("2026-12-07 23:59"))
    assert post(client, lead(workflow={"id": "wf_4"}), campaign=campaign).status_code == 409
    frozen(at("2026-12-08 00:01"))
    assert post(client, lead(workflow={"id": "wf_5"}), campaign=campaign).status_code == 201


@pytest.mark.django_db
def test_failed_requests_do_not_count_against_the_daily_limit(client, campaign, mocked):
    campaign.max_calls_per_contact_per_day = 1
    campaign.save()
    mocked.post(CREATE_CALL, json={"message": "bad from_number"}, status=400)
    assert post(client, campaign=campaign).status_code == 502
    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(), status=201)
    assert post(client, lead(workflow={"id": "wf_Other"}), campaign=campaign).status_code == 201


@on_postgres
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_exceed_the_daily_limit(campaign, mocked):
    import uuid

    mocked.add_callback(
        responses.POST,
        CREATE_CALL,
        callback=lambda request: (201, {}, json.dumps(registered_call(call_id=f"call_{uuid.uuid4().hex}"))),
    )
    campaign.max_calls_per_contact_per_day = 2
    campaign.save()
    payloads = [lead(workflow={"id": f"wf_{n}"}) for n in range(6)]
    results = _post_concurrently(campaign, payloads)
    assert sorted(results) == [201, 201, 409, 409, 409, 409]
    assert len(mocked.calls) == 2


# --- campaign configuration ------------------------------------------------------------------------


@pytest.mark.django_db
def test_campaign_validation(agent):
    from django.core.exceptions import ValidationError

    def errors(**fields):
        campaign = OutboundCampaign(
            **{"slug": "x", "name": "X", "agent": agent, "from_number": "+14155550100", **fields}
        )
        try:
            campaign.full_clean(exclude=["secret_hash", "secret_hint"])
        except ValidationError as exc:
            return exc.message_dict
        return {}

    assert errors() == {}
    assert "E.164" in errors(from_number="(415) 555-0100")["from_number"][0]
    assert errors(from_number="12")["from_number"]
    assert errors(call_start=dt.time(9))  # one end only
    assert errors(call_start=dt.time(17), call_end=dt.time(9))["call_end"]
    assert errors(call_days=[], call_start=dt.time(9), call_end=dt.time(17))["call_days"]
    assert errors(call_days=[7])["call_days"]
    assert errors(call_timezone="Mars/Olympus")["call_timezone"]
    assert errors(variable_mapping={"email": "has space"})["variable_mapping"]
    assert errors(variable_mapping=["email"])["variable_mapping"]
    assert errors(variable_mapping={"email": "email", "location.name": "business_name"}) == {}


# --- admin -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_a_new_secret_once_and_never_again(admin_client, agent, location):
    form = {
        "name": "Reactivation",
        "slug": "reactivation",
        "enabled": "on",
        "location": location.pk,
        "agent": agent.pk,
        "agent_version": "",
        "from_number": "+14155550100",
        "call_days": ["0", "1", "2", "3", "4"],
        "call_start": "09:00",
        "call_end": "17:00",
        "call_timezone": PACIFIC,
        "include_custom_data": "on",
        "variable_mapping": "{}",
        "max_calls_per_contact_per_day": "2",
        "redelivery_window_minutes": "90",
    }
    add = reverse("admin:integrations_outboundcampaign_add")
    assert admin_client.get(add).status_code == 200
    response = admin_client.post(add, form, follow=True)
    assert response.status_code == 200
    campaign = OutboundCampaign.objects.get(slug="reactivation")
    shown = next(str(m) for m in response.context["messages"] if "shown only now" in str(m))
    secret = shown.split("copy it into GHL): ")[1].split()[0]
    assert campaign.check_secret(secret)
    assert "https://retellghl.example.com/api/webhooks/ghl/outbound/reactivation" in shown
    assert campaign.call_days == [0, 1, 2, 3, 4]

    change = reverse("admin:integrations_outboundcampaign_change", args=[campaign.pk])
    page = admin_client.get(change)
    assert page.status_code == 200 and secret.encode() not in page.content
    assert b"/api/webhooks/ghl/outbound/reactivation" in page.content
    admin_client.post(change, {**form, "name": "Renamed"})
    campaign.refresh_from_db()
    assert campaign.name == "Renamed" and campaign.check_secret(secret)  # editing keeps the secret
    listing = admin_client.get(reverse("admin:integrations_outboundcampaign_changelist"), {"q": "react"})
    assert secret.encode() not in listing.content and b"Mon\xe2\x80\x93Fri 09:00" in listing.content


@pytest.mark.django_db
def test_admin_rotate_secret(admin_client, campaign):
    url = reverse("admin:integrations_outboundcampaign_changelist")
    response = admin_client.post(
        url, {"action": "rotate_secret", "_selected_action": [campaign.pk]}, follow=True
    )
    shown = next(str(m) for m in response.context["messages"] if "shown only now" in str(m))
    new_secret = shown.split("copy it into GHL): ")[1].split()[0]
    campaign.refresh_from_db()
    assert campaign.check_secret(new_secret) and not campaign.check_secret(campaign.secret)


@pytest.mark.django_db
def test_admin_lists_requests_and_retries_failed_ones_with_a_fresh_idempotency_key(
    admin_client, client, campaign, mocked, django_capture_on_commit_callbacks
):
    mocked.post(CREATE_CALL, json={"message": "agent not found"}, status=404)
    post(client, campaign=campaign)
    request = OutboundCallRequest.objects.get()
    assert request.status == "failed"

    url = reverse("admin:integrations_outboundcallrequest_changelist")
    assert admin_client.get(url, {"q": "c_NewLead042"}).status_code == 200
    assert admin_client.get(url, {"status": "failed", "has_error": "yes"}).status_code == 200
    detail = admin_client.get(reverse("admin:integrations_outboundcallrequest_change", args=[request.pk]))
    assert detail.status_code == 200 and b"winter-promo" in detail.content

    mocked.replace(responses.POST, CREATE_CALL, json=registered_call(), status=201)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url, {"action": "retry_selected", "_selected_action": [request.pk]}, follow=True
        )
    assert b"1 outbound request(s) queued for a new attempt." in response.content
    request.refresh_from_db()
    assert request.status == "placed" and request.attempts == 1
    assert sent(mocked, 1)["idempotency_key"] == request.idempotency_key != sent(mocked, 0)["idempotency_key"]


@pytest.mark.django_db
def test_retry_picks_up_a_request_stuck_dialing_and_keeps_its_idempotency_key(
    campaign, mocked, frozen, django_capture_on_commit_callbacks
):
    ok(mocked)
    now = frozen(at("2026-12-07 10:00"))
    stuck = OutboundCallRequest.objects.create(
        campaign=campaign,
        fingerprint="f1",
        idempotency_key="ghl-outbound-k1",
        to_number="+14155550142",
        payload={},
        status="dialing",
    )
    # Still in flight (last touched just now): leave it alone.
    assert services.outbound_requests_retry(OutboundCallRequest.objects.all(), now=now) == 0

    now = frozen(now + services.STUCK_AFTER + dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.outbound_requests_retry(OutboundCallRequest.objects.all(), now=now) == 1
    stuck.refresh_from_db()
    assert stuck.status == "placed" and stuck.idempotency_key == "ghl-outbound-k1"
    assert sent(mocked)["idempotency_key"] == "ghl-outbound-k1"  # Retell recognises a lost attempt


# --- with the post-call pipeline (issue 3) ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("echoed", [True, False], ids=["variables-echoed", "nothing-echoed"])
def test_call_ended_webhook_writes_its_note_to_the_contact_from_the_campaign_payload(
    client, campaign, mocked, django_capture_on_commit_callbacks, echoed
):
    """Retell echoes the call's dynamic variables and metadata on its webhooks; even when a webhook
    carries neither, the Call row recorded at dial time links the note to the campaign's contact (no
    phone lookup: none is mocked, so one would leave the note unwritten)."""
    from tests.conftest import post_signed

    ok(mocked)
    assert post(client, campaign=campaign).status_code == 201
    call_id = registered_call()["call_id"]

    ended = fixture_json("retell_call_ended")
    ended["call"].update(
        call_id=call_id, direction="outbound", from_number="+14155550100", to_number="+14155550142"
    )
    if echoed:
        ended["call"].update(
            retell_llm_dynamic_variables=registered_call()["retell_llm_dynamic_variables"],
            metadata=registered_call()["metadata"],
        )
    else:
        ended["call"].pop("retell_llm_dynamic_variables", None)
        ended["call"].pop("metadata", None)
    ghl = "https://services.leadconnectorhq.com"
    mocked.get(f"{ghl}/contacts/c_NewLead042", json=fixture_json("ghl_contact"))
    mocked.post(f"{ghl}/contacts/c_NewLead042/notes", json=fixture_json("ghl_note_created"), status=201)
    mocked.post(f"{ghl}/contacts/c_NewLead042/tags", json={"tags": ["ai-call"]}, status=201)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, "/api/webhooks/retell", ended)
    assert response.status_code == 204

    notes = [c.request for c in mocked.calls if c.request.url.endswith("/contacts/c_NewLead042/notes")]
    assert len(notes) == 1
    assert "Two o'clock is perfect." in json.loads(notes[0].body)["body"]
    assert Call.objects.get(call_id=call_id).ghl_contact_id == "c_NewLead042"
