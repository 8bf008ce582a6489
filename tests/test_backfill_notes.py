"""backfill_ghl_notes: selection, dry run, one note per call through the live outbox, resume, 429s."""

import io
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from calls import outbox
from calls.backfill import NoteBackfill, NoteSelection, SelectionError, plan_notes
from calls.ingest import upsert_call
from calls.models import Call, CallEvent, GhlSyncTask
from calls.notes import build_note_body
from calls.pipeline import ghl_client_for, process_call_event, shared_ghl_clients
from integrations.models import Agent, GhlLocation
from tests.conftest import fixture_json, post_signed
from tests.ghl_fake import FakeGhl

DANA = "c_Dana7Lee01"
AGENT_ID = "agent_5d3e1c9b2a7f4e6d8c0b"
DAY = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeGhl(rsps)


class FakeClock:
    """Time for the backfill's waits: sleeping moves the clock, nothing really sleeps."""

    def __init__(self):
        self.current = timezone.now()
        self.slept = []

    def __call__(self):
        return self.current

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.current += timedelta(seconds=seconds)


def stored_call(n, *, analysed=True, started=DAY, agent_id=AGENT_ID, **changes):
    """A finished call in the call log whose GHL sync never ran (as after a webhook outage)."""
    data = fixture_json("retell_call_analyzed" if analysed else "retell_call_ended")["call"]
    data.update(
        call_id=f"call_backfill_{n:03d}",
        agent_id=agent_id,
        start_timestamp=int((started + timedelta(minutes=n)).timestamp() * 1000),
        end_timestamp=int((started + timedelta(minutes=n, seconds=37)).timestamp() * 1000),
    )
    data.update(changes)
    with transaction.atomic():
        return upsert_call(data, "call_analyzed" if analysed else "call_ended")


def run(*args):
    out = io.StringIO()
    call_command("backfill_ghl_notes", *args, stdout=out)
    return out.getvalue()


def run_failing(*args):
    out = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("backfill_ghl_notes", *args, stdout=out)
    assert error.value.returncode == 1  # the exit status of `manage.py backfill_ghl_notes`
    return out.getvalue(), str(error.value)


def note_task(call):
    return GhlSyncTask.objects.get(call=call, kind="note")


# --- selection ------------------------------------------------------------------------------------


def planned(**options):
    return [item.call_id for item in plan_notes(NoteSelection(**options)).notes]


@pytest.mark.django_db
def test_selection_filters(agent, location):
    other_location = GhlLocation.objects.create(location_id="loc_Other", name="Other", token="pit-other")
    sales = Agent.objects.create(retell_agent_id="agent_sales", name="Sales", location=other_location)
    first, second = stored_call(1), stored_call(2, started=DAY + timedelta(days=1))
    third = stored_call(3, agent_id="agent_sales", started=DAY + timedelta(days=2))
    assert third.agent == sales
    everything = [first.call_id, second.call_id, third.call_id]

    assert planned() == everything  # oldest first
    assert planned(since=DAY + timedelta(hours=1)) == everything[1:]
    assert planned(until=DAY + timedelta(days=1)) == everything[:1]
    assert planned(agent_ids=["agent_sales"]) == everything[2:]
    assert planned(location_ids=["loc_Other"]) == everything[2:]
    assert planned(location_ids=["loc_BrightDental1"]) == everything[:2]
    assert planned(call_ids=[second.call_id, "call_unknown"]) == [second.call_id]
    assert planned(limit=2) == everything[:2]
    # Calls sync to the call's location, else its agent's, else the default (GHL_LOCATION_ID) one,
    # also for calls not linked to their agent yet.
    roaming = Agent.objects.create(retell_agent_id="agent_roaming", name="No location")
    fourth = stored_call(4, agent_id="agent_roaming", started=DAY + timedelta(days=3))
    Call.objects.filter(pk=third.pk).update(agent=None, location=None)
    assert planned(location_ids=["loc_BrightDental1"]) == [first.call_id, second.call_id, fourth.call_id]
    assert planned(location_ids=["loc_Other"]) == [third.call_id]
    assert fourth.agent == roaming and fourth.location is None
    with pytest.raises(SelectionError, match='unknown agent "agent_nope"'):
        planned(agent_ids=["agent_nope"])
    with pytest.raises(SelectionError, match='unknown location "loc_nope"'):
        planned(location_ids=["loc_nope"])


@pytest.mark.django_db
def test_the_command_options_reach_the_selection(ghl, agent):
    other = GhlLocation.objects.create(location_id="loc_Other", name="Other", token="pit-other")
    calls = [stored_call(n, started=DAY + timedelta(days=n)) for n in range(1, 5)]  # Dec 4, 5, 6, 7

    def selected(*options):
        last = run("--dry-run", *options).splitlines()[-1]
        return int(last.removeprefix("Backfill GHL notes (dry run): ").split(" ")[0])

    assert selected() == 4
    assert selected("--since", "2026-12-05") == 3
    assert selected("--until", "2026-12-05") == 2  # a date includes that day
    assert selected("--since", "2026-12-05", "--until", "2026-12-05T23:59:59+00:00") == 1
    assert selected("--call-id", calls[0].call_id, "--call-id", calls[2].call_id) == 2
    assert selected("--agent", AGENT_ID) == 4
    assert selected("--location", other.location_id) == 0
    assert selected("--location", "loc_BrightDental1", "--limit", "3") == 3
    with pytest.raises(CommandError, match="--limit: must be at least 1"):
        run("--limit", "0")  # not "no limit"
    assert ghl.requests == [] and not GhlSyncTask.objects.exists()


@pytest.mark.django_db
def test_progress_lines_when_not_a_terminal(ghl, agent):
    [stored_call(n) for n in range(1, 4)]
    lines = run("--sync").splitlines()
    assert lines[0].startswith("Backfill GHL notes: 1/3  33%")
    assert lines[-2].startswith("Backfill GHL notes: 3/3  100%") and lines[-1].endswith("0 failed.")


@pytest.mark.django_db
def test_selection_takes_missing_failed_and_no_contact_notes_but_not_written_ones(agent):
    missing, failed, no_contact, written, pending = (stored_call(n) for n in range(1, 6))
    common = {"kind": "note", "location": agent.location}
    GhlSyncTask.objects.create(
        call=failed, dedupe_key=f"call:{failed.call_id}:note", status="failed", **common
    )
    GhlSyncTask.objects.create(
        call=no_contact,
        dedupe_key=f"call:{no_contact.call_id}:note",
        status="done",
        payload={"skipped": "no_contact"},
        **common,
    )
    GhlSyncTask.objects.create(
        call=written, dedupe_key=f"call:{written.call_id}:note", status="done", ghl_id="n_1", **common
    )
    GhlSyncTask.objects.create(
        call=pending, dedupe_key=f"call:{pending.call_id}:note", status="pending", **common
    )

    assert planned() == [missing.call_id, failed.call_id, no_contact.call_id, pending.call_id]
    assert planned(include_synced=True) == [
        c.call_id for c in (missing, failed, no_contact, written, pending)
    ]


@pytest.mark.django_db
def test_selection_skips_calls_no_agent_would_write_a_note_for(agent):
    ongoing = stored_call(1, analysed=False, call_status="ongoing", end_timestamp=None)
    stored_call(2, agent_id="agent_never_configured")
    quiet = Agent.objects.create(retell_agent_id="agent_quiet", name="Quiet", sync_transcript_note=False,
                                 sync_summary_note=False)  # fmt: skip
    stored_call(3, agent_id=quiet.retell_agent_id)
    analysed_only = Agent.objects.create(
        retell_agent_id="agent_analysed_only", name="Analysed only", events_to_process=["call_analyzed"]
    )
    not_analysed = stored_call(4, analysed=False, agent_id=analysed_only.retell_agent_id)
    Agent.objects.create(retell_agent_id="agent_off", name="Off", is_active=False)
    stored_call(5, agent_id="agent_off")
    ok = stored_call(6)

    plan = plan_notes(NoteSelection())
    assert [item.call_id for item in plan.notes] == [ok.call_id]
    assert plan.not_eligible == 3  # quiet, not analysed yet, inactive; unfinished calls are not candidates
    assert ongoing.call_id not in planned() and not_analysed.call_id not in planned()


# --- running --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backfill_writes_one_note_per_call_and_a_rerun_writes_nothing(ghl, agent):
    calls = [stored_call(n) for n in range(1, 4)]
    output = run("--sync")
    assert output.splitlines()[-1] == (
        "Backfill GHL notes: 3 calls: 3 written, 0 updated, 0 unchanged, 0 skipped (no contact), 0 failed."
    )
    notes = ghl.notes_for(DANA)
    assert sorted(note["body"] for note in notes) == sorted(
        build_note_body(Call.objects.get(pk=c.pk)) for c in calls
    )
    for call in calls:
        task = note_task(call)
        assert task.status == "done" and task.ghl_id and task.payload["last_action"] == "created"
        assert Call.objects.get(pk=call.pk).ghl_sync_status == "synced"

    requests_before = len(ghl.requests)
    output = run("--sync")
    assert output.splitlines()[-1].startswith("Backfill GHL notes: 0 calls: 0 written")
    assert len(ghl.requests) == requests_before and len(ghl.notes) == 3


@pytest.mark.django_db
def test_a_backfilled_note_is_the_live_note(client, ghl, agent):
    # The live pipeline writes the note; a forced backfill finds GHL already holds exactly that text.
    for name in ("retell_call_ended", "retell_call_analyzed"):
        post_signed(client, "/api/webhooks/retell", fixture_json(name))
    for event in CallEvent.objects.order_by("pk"):
        process_call_event(event.pk)
    outbox.run_due_tasks()
    [live_note] = ghl.notes.values()
    requests_before = len(ghl.requests)

    output = run("--sync", "--include-synced")
    assert "1 call: 0 written, 0 updated, 1 unchanged" in output
    assert ghl.requests[requests_before:] == []  # same body: nothing to send
    assert list(ghl.notes.values()) == [live_note]


@pytest.mark.django_db
def test_include_synced_rewrites_the_existing_note_in_place(ghl, agent):
    call = stored_call(1)
    run("--sync")
    [note_id] = ghl.notes
    agent.note_template = "Call {{ call.call_id }}: {{ summary }}"
    agent.save()

    assert "0 calls" in run("--sync")  # already written: not selected without --include-synced
    output = run("--sync", "--include-synced")
    assert "1 call: 0 written, 1 updated" in output
    assert ghl.count("POST", r"/notes$") == 1 and ghl.count("PUT", rf"/notes/{note_id}$") == 1
    assert ghl.notes[note_id]["body"] == f"Call {call.call_id}: {call.summary}\n"


@pytest.mark.django_db
def test_calls_of_an_agent_configured_after_the_calls_are_linked_and_written(client, ghl):
    post_signed(client, "/api/webhooks/retell", fixture_json("retell_call_ended"))
    process_call_event(CallEvent.objects.get().pk)
    call = Call.objects.get()
    assert call.agent is None and call.ghl_sync_status == "skipped"

    location = GhlLocation.objects.create(location_id="loc_BrightDental1", name="Bright Dental")
    agent = Agent.objects.create(retell_agent_id=AGENT_ID, name="Ava", location=location)
    output = run("--sync")
    assert "1 written" in output
    call.refresh_from_db()
    assert call.agent == agent and call.location == location and call.ghl_sync_status == "synced"
    assert len(ghl.notes_for(DANA)) == 1


@pytest.mark.django_db
def test_dry_run_writes_nothing_and_shows_the_bodies(ghl, agent):
    new = stored_call(1)
    done = stored_call(2)
    run("--sync", "--call-id", done.call_id)
    agent.note_template = "Call {{ call.call_id }}"
    agent.save()
    requests_before, tasks_before = len(ghl.requests), list(GhlSyncTask.objects.values())
    calls_before = list(Call.objects.values())

    output = run("--dry-run", "--include-synced", "-v", "2")
    assert ghl.requests[requests_before:] == []
    assert list(GhlSyncTask.objects.values()) == tasks_before and list(Call.objects.values()) == calls_before
    assert (
        f"--- {new.call_id} (Bright Dental Receptionist): would write a note\nCall {new.call_id}\n" in output
    )
    assert f"--- {done.call_id} (Bright Dental Receptionist): would update note " in output
    assert output.splitlines()[-1] == (
        "Backfill GHL notes (dry run): 2 calls: would write 1, would update 1, unchanged 0; "
        "nothing was sent to GHL."
    )


@pytest.mark.django_db
def test_summary_and_exit_code_when_notes_fail_or_have_no_contact(ghl, agent):
    ok = stored_call(1)
    nobody = stored_call(2, retell_llm_dynamic_variables={}, from_number="+14155550999")
    gone = stored_call(3, retell_llm_dynamic_variables={"contact_id": "c_Deleted"})
    output, error = run_failing("--sync")
    lines = output.splitlines()
    assert (
        f"  failed   {gone.call_id}: GHL HTTP 404: POST /contacts/c_Deleted/notes: Contact not found" in lines
    )
    assert lines[-1] == (
        "Backfill GHL notes: 3 calls: 1 written, 0 updated, 0 unchanged, 1 skipped (no contact), 1 failed."
    )
    assert error == "1 note(s) failed"
    assert Call.objects.get(pk=ok.pk).ghl_sync_status == "synced"
    assert Call.objects.get(pk=nobody.pk).ghl_sync_status == "no_contact"
    assert Call.objects.get(pk=gone.pk).ghl_sync_status == "failed"

    # The caller became a contact meanwhile: the next run writes the note it skipped.
    ghl.add_contact({"id": "c_Later", "phone": "+14155550999"})
    output, _ = run_failing("--sync")
    assert "2 calls: 1 written, 0 updated, 0 unchanged, 0 skipped (no contact), 1 failed" in output
    assert len(ghl.notes_for("c_Later")) == 1
    assert Call.objects.get(pk=nobody.pk).ghl_sync_status == "synced"


def interrupt_on_note_post(number):
    """Make the fake GHL store the `number`-th new note, then raise KeyboardInterrupt (Ctrl-C while
    its answer is on the way: the worst moment)."""
    original = FakeGhl._add_note
    seen = []

    def add_note_then_interrupt(self, request, body, contact_id):
        answer = original(self, request, body, contact_id)
        seen.append(1)
        if len(seen) == number:
            raise KeyboardInterrupt
        return answer

    FakeGhl.routes = [(p, m, add_note_then_interrupt if h is original else h) for p, m, h in FakeGhl.routes]
    return lambda: setattr(
        FakeGhl,
        "routes",
        [(p, m, original if h is add_note_then_interrupt else h) for p, m, h in FakeGhl.routes],
    )


@pytest.mark.django_db
def test_ctrl_c_mid_run_then_a_rerun_finishes_without_duplicates(ghl, agent):
    calls = [stored_call(n) for n in range(1, 5)]
    restore = interrupt_on_note_post(2)
    try:
        out = io.StringIO()
        with pytest.raises(CommandError, match="interrupted") as error:
            call_command("backfill_ghl_notes", "--sync", stdout=out)
    finally:
        restore()
    assert error.value.returncode == 130  # the shell's status for Ctrl-C
    assert "Interrupted: re-run the same command to resume" in out.getvalue()
    assert len(ghl.notes) == 2  # the second note reached GHL, its answer never came back
    interrupted = note_task(calls[1])
    assert interrupted.status == "pending" and interrupted.ghl_id == ""  # released for the re-run
    assert interrupted.payload["create_started"] is True

    output = run("--sync")
    assert "3 calls: 3 written" in output  # the interrupted one adopts its note, two are new
    assert len(ghl.notes) == 4 and ghl.count("POST", r"/notes$") == 4
    assert sorted(n["body"] for n in ghl.notes.values()) == sorted(
        build_note_body(Call.objects.get(pk=c.pk)) for c in calls
    )
    assert note_task(calls[1]).payload["last_action"] == "adopted"
    assert "0 calls" in run("--sync")


@pytest.mark.django_db
def test_a_crashed_run_is_resumed_once_its_claim_is_stale(ghl, agent):
    # A killed process leaves its task "running" with a note created in GHL but no id stored.
    call = stored_call(1)
    run("--sync")
    task = note_task(call)
    clock = FakeClock()
    GhlSyncTask.objects.filter(pk=task.pk).update(
        status="running",
        ghl_id="",
        claimed_at=clock() - timedelta(minutes=1),
        payload={"create_started": True},
    )
    Call.objects.filter(pk=call.pk).update(ghl_sync_status="pending")

    plan = plan_notes(NoteSelection())
    summary = NoteBackfill(
        plan, out=io.StringIO(), sync=True, now=clock, sleep=clock.sleep, timeout=3600
    ).run()
    assert summary.ok and summary.written == 1
    assert sum(clock.slept) >= (outbox.STALE_CLAIM - timedelta(minutes=1)).total_seconds()
    assert len(ghl.notes) == 1 and ghl.count("POST", r"/notes$") == 1
    assert note_task(call).payload["last_action"] == "adopted"


@pytest.mark.django_db
def test_429_waits_for_the_backoff_then_writes_and_is_counted(ghl, agent):
    calls = [stored_call(n) for n in range(1, 4)]
    ghl.fail("POST", r"/notes$", 429, headers={"Retry-After": "20"})
    clock = FakeClock()
    out = io.StringIO()
    summary = NoteBackfill(
        plan_notes(NoteSelection()), out=out, sync=True, now=clock, sleep=clock.sleep, timeout=600
    ).run()
    assert summary.ok and summary.written == 3 and summary.rate_limited == 1
    assert summary.line().endswith("0 failed; 1 rate-limited (429) attempts retried.")
    assert sum(clock.slept) >= 20  # at least what GHL asked
    assert len(ghl.notes) == 3
    assert note_task(calls[0]).attempts == 2


@pytest.mark.django_db
def test_notes_share_the_burst_budget_ghl_reports(ghl, agent, location):
    # GHL says the burst window is spent: the next note waits for the window instead of drawing a 429.
    stored_call(1), stored_call(2)
    spent = {
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Max": "100",
        "X-RateLimit-Interval-Milliseconds": "10000",
    }
    original = FakeGhl._add_note

    def add_note_spent(self, request, body, contact_id):
        status, _, text = original(self, request, body, contact_id)
        return status, spent, text

    FakeGhl.routes = [(p, m, add_note_spent if h is original else h) for p, m, h in FakeGhl.routes]
    waits = []
    try:
        with shared_ghl_clients():
            client = ghl_client_for(location)
            client._sleep, client._clock = waits.append, lambda: 1000.0
            summary = NoteBackfill(plan_notes(NoteSelection()), out=io.StringIO(), sync=True).run()
    finally:
        FakeGhl.routes = [(p, m, original if h is add_note_spent else h) for p, m, h in FakeGhl.routes]
    assert summary.written == 2
    assert waits == [10.0]  # once, before the second note's request


@pytest.mark.django_db(transaction=True)  # tasks are queued on commit, as in production
def test_default_mode_queues_to_the_workers_and_waits(ghl, agent, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs queued functions inline: a worker pool of one
    calls = [stored_call(n) for n in range(1, 3)]
    output = run()
    assert "2 calls: 2 written" in output.splitlines()[-1]
    assert all(note_task(c).status == "done" for c in calls) and len(ghl.notes) == 2


@pytest.mark.django_db
def test_without_workers_the_wait_times_out_and_reports_unfinished(ghl, agent):
    call = stored_call(1)
    clock = FakeClock()
    out = io.StringIO()
    summary = NoteBackfill(
        plan_notes(NoteSelection()), out=out, now=clock, sleep=clock.sleep, timeout=120, poll_interval=1
    ).run()
    assert not summary.ok and summary.unfinished == [(call.call_id, "pending")]
    assert "is `manage.py qcluster` running? (or use --sync)" in out.getvalue()
    assert ghl.requests == [] and note_task(call).status == "pending"  # still queued for the workers


@pytest.mark.django_db
def test_bad_options_are_command_errors(agent):
    with pytest.raises(CommandError, match='unknown agent "agent_x"'):
        run("--agent", "agent_x")
    with pytest.raises(CommandError, match="is not a date"):
        run("--since", "yesterday-ish")


@pytest.mark.django_db(transaction=True)
def test_two_backfills_at_once_write_each_note_once(agent):
    import threading

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("real concurrency needs PostgreSQL")
    calls = [stored_call(n) for n in range(1, 7)]
    barrier = threading.Barrier(2)
    summaries = []

    def backfill():
        try:
            plan = plan_notes(NoteSelection())
            barrier.wait()
            summaries.append(
                NoteBackfill(plan, out=io.StringIO(), sync=True, poll_interval=0.02, timeout=60).run()
            )
        finally:
            connection.close()

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ghl = FakeGhl(rsps)
        threads = [threading.Thread(target=backfill) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ghl.notes) == len(calls) and ghl.count("POST", r"/notes$") == len(calls)
    assert all(summary.ok for summary in summaries) and len(summaries) == 2
    # Each run reports every call as written: none had a note when it began, all have one now.
    assert [summary.written for summary in summaries] == [len(calls), len(calls)]
    assert all(GhlSyncTask.objects.get(call_id=c.pk, kind="note").status == "done" for c in calls)
