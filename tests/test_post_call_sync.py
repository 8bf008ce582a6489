"""Post-call sync: events → outbox tasks → one GHL note per call, tags, workflow; retries; ordering."""

import json
import threading
import time
from datetime import timedelta

import pytest
import responses
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from calls import outbox
from calls.models import Call, CallEvent, GhlSyncTask
from calls.pipeline import process_call_event
from tests.conftest import fixture_bytes, fixture_json, post_signed
from tests.ghl_fake import FakeGhl

URL = "/api/webhooks/retell"
CALL_ID = "call_8f14e45fceea167a5a36dedd4bea2543"
DANA = "c_Dana7Lee01"


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeGhl(rsps)


def deliver(client, *names, now=None):
    """Post fixtures as Retell would, then do what the queue would: process events, run due tasks."""
    for name in names:
        body = fixture_bytes(name) if isinstance(name, str) else json.dumps(name).encode()
        assert post_signed(client, URL, body).status_code == 204
    return drain(now=now)


def drain(now=None):
    for event_id in CallEvent.objects.filter(status="received").order_by("pk").values_list("pk", flat=True):
        process_call_event(event_id, now=now)
    return outbox.run_due_tasks(now=now or timezone.now())


@pytest.fixture
def dana_agent(agent):
    agent.workflow_id = "wf_AfterCall"
    agent.save()
    return agent


@pytest.mark.django_db
def test_call_ended_writes_one_note_with_header_and_transcript_turns(client, ghl, agent):
    deliver(client, "retell_call_ended")
    [note] = ghl.notes_for(DANA)
    body = note["body"]
    assert "Inbound AI call with Bright Dental Receptionist" in body
    assert "When: Thu, Dec 3, 2026 8:00 AM (America/Los_Angeles)" in body  # location timezone
    assert "Duration: 37 s" in body and "Ended: agent_hangup" in body
    assert "Recording: https://dxc03zgurdly9.cloudfront.net/" in body
    assert f"Call log: https://retellghl.example.com/calls/{CALL_ID}/" in body
    assert "Agent: Thanks for calling Bright Dental, this is Ava." in body
    assert "Caller: Hi Ava, it's Dana Lee." in body
    assert "Summary" not in body
    call = Call.objects.get()
    assert call.ghl_sync_status == "synced"
    assert GhlSyncTask.objects.get(kind="note").ghl_id == note["id"]


@pytest.mark.django_db
def test_call_analyzed_updates_the_same_note_with_the_summary(client, ghl, dana_agent):
    deliver(client, "retell_call_ended")
    deliver(client, "retell_call_analyzed")
    [note] = ghl.notes_for(DANA)
    assert ghl.count("POST", r"/notes$") == 1 and ghl.count("PUT", r"/notes/") == 1
    assert "Dana Lee called to book a teeth cleaning." in note["body"]
    assert "Sentiment: Positive · Outcome: successful" in note["body"]
    assert "appointment_booked: True" in note["body"]
    assert "Caller: Hi Ava, it's Dana Lee." in note["body"]  # the transcript is still there
    assert {"ai-call", "call-successful"} <= ghl.tags[DANA]
    assert ghl.workflows == [(DANA, "wf_AfterCall")]


def final_state(ghl):
    call = Call.objects.values().get()
    for volatile in ("id", "created_at", "updated_at"):
        call.pop(volatile)
    return {
        "notes": sorted(note["body"] for note in ghl.notes.values()),
        "tags": {k: sorted(v) for k, v in ghl.tags.items()},
        "workflows": ghl.workflows,
        "call": call,
    }


IN_ORDER = ["retell_call_started", "retell_call_ended", "retell_call_analyzed"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "order",
    [
        ["retell_call_started", "retell_call_analyzed", "retell_call_ended"],
        ["retell_call_analyzed", "retell_call_ended", "retell_call_started"],
        ["retell_call_ended", "retell_call_started", "retell_call_analyzed"],
    ],
)
def test_out_of_order_events_converge_on_the_in_order_result(client, ghl, dana_agent, order):
    for name in order:
        deliver(client, name)
    reordered = final_state(ghl)
    assert len(reordered["notes"]) == 1 and ghl.count("POST", r"/notes$") == 1

    Call.objects.all().delete()
    ghl.notes.clear(), ghl.workflows.clear()
    ghl.tags[DANA] = {"patient", "vip"}
    for name in IN_ORDER:
        deliver(client, name)
    assert final_state(ghl) == reordered


@pytest.mark.django_db
def test_duplicate_deliveries_produce_one_note(client, ghl, dana_agent):
    deliver(client, "retell_call_ended", "retell_call_ended", "retell_call_analyzed", "retell_call_analyzed")
    assert len(ghl.notes) == 1
    assert ghl.count("POST", r"/notes$") == 1
    assert ghl.workflows == [(DANA, "wf_AfterCall")]
    assert ghl.count("POST", r"/tags$") == 1


@pytest.mark.django_db
def test_429_then_success_waits_as_ghl_asked_and_writes_once(client, ghl, agent):
    ghl.fail(
        "POST",
        r"/notes$",
        429,
        headers={
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Max": "100",
            # Longer than our own first backoff (30 s ±20%), so only honouring it passes.
            "X-RateLimit-Interval-Milliseconds": "120000",
        },
    )
    now = timezone.now()
    deliver(client, "retell_call_ended", now=now)
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "pending" and task.attempts == 1
    assert "429" in task.last_error
    assert task.next_attempt_at >= now + timedelta(seconds=120)
    assert Call.objects.get().ghl_sync_status == "pending"

    assert outbox.run_due_tasks(now=now + timedelta(seconds=100)) == 0  # not due yet
    cache.clear()  # the shared rate-limit pause is on the wall clock: stands in for the 2 minutes passing
    outbox.run_due_tasks(now=now + timedelta(minutes=2))
    task.refresh_from_db()
    assert task.status == "done" and task.attempts == 2 and task.last_error == ""
    assert len(ghl.notes) == 1 and Call.objects.get().ghl_sync_status == "synced"


@pytest.mark.django_db
def test_5xx_several_times_then_success_with_growing_backoff(client, ghl, agent):
    ghl.fail("POST", r"/notes$", 502, times=3)
    now = timezone.now()
    deliver(client, "retell_call_ended", now=now)
    delays = []
    for _ in range(3):
        task = GhlSyncTask.objects.get(kind="note")
        delays.append(task.next_attempt_at - now)
        now = task.next_attempt_at
        outbox.run_due_tasks(now=now)
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "done" and task.attempts == 4
    assert delays[0] < delays[1] < delays[2]  # exponential
    assert len(ghl.notes) == 1


@pytest.mark.django_db
def test_timeout_after_ghl_created_the_note_adopts_it_instead_of_duplicating(client, ghl, agent):
    # GHL stores the note but our read times out: the retry must find it, not write a second one.
    original = FakeGhl._add_note

    def slow_add_note(self, request, body, contact_id):
        original(self, request, body, contact_id)
        raise __import__("requests").exceptions.ReadTimeout("read timed out")

    FakeGhl.routes = [(p, m, slow_add_note if h is original else h) for p, m, h in FakeGhl.routes]
    try:
        now = timezone.now()
        deliver(client, "retell_call_ended", now=now)
    finally:
        FakeGhl.routes = [(p, m, original if h is slow_add_note else h) for p, m, h in FakeGhl.routes]
    assert GhlSyncTask.objects.get(kind="note").status == "pending"
    outbox.run_due_tasks(now=now + timedelta(hours=1))
    assert len(ghl.notes) == 1
    assert GhlSyncTask.objects.get(kind="note").ghl_id == next(iter(ghl.notes))


@pytest.mark.django_db
def test_404_fails_permanently_without_retrying(client, ghl, agent):
    ghl.fail("POST", r"/notes$", 404, body={"message": "Contact not found"})
    now = timezone.now()
    deliver(client, "retell_call_ended", now=now)
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "failed" and task.attempts == 1 and "Contact not found" in task.last_error
    outbox.run_due_tasks(now=now + timedelta(days=1))
    assert GhlSyncTask.objects.get(kind="note").attempts == 1
    call = Call.objects.get()
    assert call.ghl_sync_status == "failed" and "Contact not found" in call.ghl_sync_error


@pytest.mark.django_db
def test_retryable_errors_give_up_after_max_attempts(client, ghl, agent):
    ghl.fail("POST", r"/notes$", 500, times=100)
    now = timezone.now()
    deliver(client, "retell_call_ended", now=now)
    for _ in range(20):
        now += timedelta(hours=2)
        outbox.run_due_tasks(now=now)
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "failed" and task.attempts == task.max_attempts == 8
    assert task.last_error.startswith("gave up after 8 attempts")


@pytest.mark.django_db
def test_operator_retry_requeues_and_succeeds(
    client, ghl, agent, admin_client, django_capture_on_commit_callbacks
):
    ghl.fail("POST", r"/notes$", 404)
    deliver(client, "retell_call_ended")
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "failed"
    with django_capture_on_commit_callbacks() as callbacks:
        admin_client.post(
            "/admin/calls/ghlsynctask/", {"action": "retry_selected", "_selected_action": [task.pk]}
        )
    assert len(callbacks) == 1  # the retry is handed to the queue
    outbox.run_due_tasks()
    assert GhlSyncTask.objects.get(kind="note").status == "done" and len(ghl.notes) == 1


@pytest.mark.django_db
def test_unknown_caller_is_looked_up_by_phone(client, ghl, agent):
    payload = fixture_json("retell_call_ended")
    payload["call"]["retell_llm_dynamic_variables"] = {}
    deliver(client, payload)
    assert (
        ghl.count("GET", r"/contacts/search/duplicate\?locationId=loc_BrightDental1&number=%2B14155550123")
        == 1
    )
    assert len(ghl.notes_for(DANA)) == 1
    assert Call.objects.get().ghl_contact_id == DANA


@pytest.mark.django_db
def test_caller_not_in_ghl_is_marked_no_contact(client, ghl, agent):
    payload = fixture_json("retell_call_ended")
    payload["call"].update(retell_llm_dynamic_variables={}, from_number="+14155550999")
    deliver(client, payload)
    assert ghl.notes == {}
    call = Call.objects.get()
    assert call.ghl_sync_status == "no_contact" and "+14155550999" in call.ghl_sync_error


@pytest.mark.django_db
def test_caller_not_in_ghl_becomes_a_contact_when_the_agent_says_so(client, ghl, agent):
    agent.create_unknown_contacts = True
    agent.save()
    payload = fixture_json("retell_call_ended")
    payload["call"].update(
        retell_llm_dynamic_variables={"customer_name": "Sam Rivera"}, from_number="+14155550142"
    )
    deliver(client, payload)
    [upsert] = [c for c in ghl.rsps.calls if c.request.path_url == "/contacts/upsert"]
    assert json.loads(upsert.request.body) == {
        "phone": "+14155550142",
        "source": "AI phone call",
        "firstName": "Sam",
        "lastName": "Rivera",
        "locationId": "loc_BrightDental1",
    }
    new_id = Call.objects.get().ghl_contact_id
    assert new_id.startswith("c_new") and len(ghl.notes_for(new_id)) == 1


@pytest.mark.django_db
def test_outbound_call_matches_the_dialled_number(client, ghl, agent):
    payload = fixture_json("retell_call_ended")
    payload["call"].update(
        direction="outbound",
        from_number="+14155559999",
        to_number="+14155550123",
        retell_llm_dynamic_variables={},
    )
    deliver(client, payload)
    assert Call.objects.get().ghl_contact_id == DANA


@pytest.mark.django_db
def test_analysis_written_to_configured_custom_fields(client, ghl, agent):
    agent.analysis_custom_fields = {
        "cf_LastOutcome": "call_summary",
        "cf_Booked": "custom:appointment_booked",
    }
    agent.save()
    deliver(client, "retell_call_ended", "retell_call_analyzed")
    [put] = [
        c for c in ghl.rsps.calls if c.request.method == "PUT" and c.request.path_url == f"/contacts/{DANA}"
    ]
    summary = fixture_json("retell_call_analyzed")["call"]["call_analysis"]["call_summary"]
    assert json.loads(put.request.body) == {
        "customFields": [
            {"id": "cf_Booked", "field_value": "true"},
            {"id": "cf_LastOutcome", "field_value": summary},
        ]
    }


@pytest.mark.django_db
def test_agent_template_and_switches_shape_the_note(client, ghl, agent):
    agent.note_template = (
        "AI call {{ call.call_id }} lasted {{ duration }}.{% if has_analysis %} {{ summary }}{% endif %}"
    )
    agent.sync_summary_note = False
    agent.save()
    deliver(client, "retell_call_ended", "retell_call_analyzed")
    [note] = ghl.notes.values()
    assert note["body"] == f"AI call {CALL_ID} lasted 37 s.\n"


@pytest.mark.django_db
def test_events_the_agent_does_not_act_on_are_stored_but_ignored(client, ghl, agent):
    agent.events_to_process = ["call_analyzed"]
    agent.save()
    deliver(client, "retell_call_ended")
    assert ghl.notes == {} and CallEvent.objects.get().status == "ignored"


@pytest.mark.django_db
def test_calls_of_unconfigured_agents_are_stored_and_skipped(client, ghl):
    deliver(client, "retell_call_ended")
    assert ghl.requests == []
    assert Call.objects.get().ghl_sync_status == "skipped"
    assert CallEvent.objects.get().status == "ignored"


@pytest.mark.django_db
def test_new_data_while_the_note_task_runs_triggers_one_more_run(client, ghl, agent):
    deliver(client, "retell_call_ended")
    task = GhlSyncTask.objects.get(kind="note")
    GhlSyncTask.objects.filter(pk=task.pk).update(status="running")  # a worker is mid-flight
    post_signed(client, URL, fixture_bytes("retell_call_analyzed"))
    event = CallEvent.objects.get(event="call_analyzed")
    process_call_event(event.pk)
    task.refresh_from_db()
    assert task.rerun_requested is True and task.status == "running"
    outbox._record_success(task, {"ghl_id": task.ghl_id}, now=timezone.now())  # the worker finishes
    task.refresh_from_db()
    assert task.status == "pending"  # goes round again with the analysis
    outbox.run_due_tasks()
    assert "Dana Lee called to book" in next(iter(ghl.notes.values()))["body"]


@pytest.mark.django_db
def test_a_task_is_claimed_by_one_worker_only(client, ghl, agent):
    post_signed(client, URL, fixture_bytes("retell_call_ended"))
    process_call_event(CallEvent.objects.get().pk)
    task = GhlSyncTask.objects.get(kind="note")
    now = timezone.now()
    assert outbox.claim(task.pk, now=now) is True
    assert outbox.claim(task.pk, now=now) is False
    assert outbox.run_task(task.pk) is None  # already running elsewhere: nothing done
    assert ghl.notes == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_and_workers_write_one_note(agent):
    if connection.vendor == "sqlite":
        pytest.skip("real concurrency needs PostgreSQL")
    from django.test import Client

    body = fixture_bytes("retell_call_ended")
    barrier = threading.Barrier(4)

    def deliver_and_work():
        try:
            barrier.wait()
            post_signed(Client(), URL, body)
            for event_id in CallEvent.objects.values_list("pk", flat=True):
                process_call_event(event_id)
            barrier.wait()
            outbox.run_due_tasks()
        finally:
            connection.close()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ghl = FakeGhl(rsps)
        threads = [threading.Thread(target=deliver_and_work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert CallEvent.objects.get().delivery_count == 4
        assert GhlSyncTask.objects.filter(kind="note").count() == 1
        assert ghl.count("POST", r"/notes$") == 1 and len(ghl.notes) == 1


@pytest.mark.django_db
def test_queue_wiring_runs_the_pipeline_after_commit(
    client, ghl, agent, django_capture_on_commit_callbacks, monkeypatch
):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs queued functions inline
    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, URL, fixture_bytes("retell_call_ended"))
    assert len(ghl.notes_for(DANA)) == 1
    assert CallEvent.objects.get().status == "processed"
    assert GhlSyncTask.objects.get(kind="note").status == "done"


@pytest.mark.django_db
def test_call_events_link_the_inbound_routing_decision_and_reuse_its_contact(client, ghl, agent):
    from calls.models import RoutingDecision

    answer = post_signed(client, "/api/webhooks/inbound", fixture_json("retell_call_inbound")).json()
    decision_id = answer["call_inbound"]["metadata"]["routing_decision_id"]
    lookups = ghl.count("GET", r"/contacts/search/duplicate")

    ended = fixture_json("retell_call_ended")
    ended["call"].update(retell_llm_dynamic_variables={}, metadata=answer["call_inbound"]["metadata"])
    deliver(client, ended)
    decision = RoutingDecision.objects.get(pk=decision_id)
    call = Call.objects.get()
    assert decision.call == call and call.ghl_contact_id == DANA
    assert ghl.count("GET", r"/contacts/search/duplicate") == lookups  # no second lookup after the call
    assert len(ghl.notes_for(DANA)) == 1


@pytest.mark.django_db
def test_an_event_whose_queue_hand_off_was_lost_is_processed_by_the_sweeper(client, ghl, agent):
    """The delivery is stored but its processing never ran (the broker was down at commit, or a worker
    died mid-task: django-q2 re-runs nothing, max_attempts=1). Retell's retry is a duplicate and is not
    queued again, so only the sweeper can still bring the note to GHL."""
    post_signed(client, URL, fixture_bytes("retell_call_ended"))  # on_commit never runs in this test
    post_signed(client, URL, fixture_bytes("retell_call_ended"))  # Retell's retry: a duplicate
    event = CallEvent.objects.get()
    assert event.status == "received" and event.delivery_count == 2
    received = event.received_at

    outbox.run_due_tasks(now=received + timedelta(minutes=1))  # maybe still queued: leave it alone
    assert CallEvent.objects.get().status == "received" and ghl.notes == {}

    outbox.run_due_tasks(now=received + timedelta(minutes=15))
    assert CallEvent.objects.get().status == "processed"
    outbox.run_due_tasks(now=received + timedelta(minutes=15))
    assert len(ghl.notes_for(DANA)) == 1 and Call.objects.get().ghl_sync_status == "synced"


@pytest.mark.django_db
def test_a_broker_outage_after_commit_still_acknowledges_the_stored_event(
    client, ghl, agent, django_capture_on_commit_callbacks, monkeypatch
):
    """The event is committed before the hand-off: a 5xx now would only make Retell resend a duplicate.
    The answer is 204 and the event waits, 'received', for the sweeper."""

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("retellghl.queue.enqueue", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, URL, fixture_bytes("retell_call_ended"))

    assert response.status_code == 204
    assert CallEvent.objects.get().status == "received"


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL and real concurrency")
@pytest.mark.django_db(transaction=True)
def test_two_tasks_finishing_at_once_leave_the_call_synced(agent):
    """Found on the product tour: a call whose tasks were all done stayed "pending" for good, because a
    refresh that read the tasks before the other worker's task finished wrote its answer last."""
    call = Call.objects.create(call_id="call_race_sync", agent=agent)
    note = GhlSyncTask.objects.create(call=call, kind="note", dedupe_key="race:note", status="done")
    tags = GhlSyncTask.objects.create(call=call, kind="tags", dedupe_key="race:tags", status="running")
    in_transaction, finish = threading.Event(), threading.Event()

    def other_worker_finishing_tags():  # holds the call row while its task turns done, as a save may
        try:
            with transaction.atomic():
                Call.objects.select_for_update().get(pk=call.pk)
                GhlSyncTask.objects.filter(pk=tags.pk).update(status="done")
                in_transaction.set()
                finish.wait(5)
        finally:
            connection.close()

    def refresh():
        try:
            outbox.refresh_call_sync_status(call.pk)
        finally:
            connection.close()

    other = threading.Thread(target=other_worker_finishing_tags)
    other.start()
    assert in_transaction.wait(5)
    refresher = threading.Thread(target=refresh)  # this worker just finished the note task
    refresher.start()
    time.sleep(0.3)  # let it read (unlocked, it would see the tags task still running)
    finish.set()
    other.join()
    refresher.join()

    assert note.pk and GhlSyncTask.objects.filter(call=call).exclude(status="done").count() == 0
    assert Call.objects.get(pk=call.pk).ghl_sync_status == "synced"
