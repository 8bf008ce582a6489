"""sync_retell_calls: list-calls pagination, fetching what we missed, merging it as a webhook would."""

import io
import json
from datetime import UTC, datetime

import pytest
import responses
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import transaction

from calls.ingest import upsert_call
from calls.models import Call, CallEvent, GhlSyncTask
from calls.reconcile import RetellReconciler
from integrations.retell import RetellClient
from tests.conftest import fixture_json
from tests.ghl_fake import FakeGhl

AGENT_ID = "agent_5d3e1c9b2a7f4e6d8c0b"
SINCE = datetime(2026, 12, 3, tzinfo=UTC)
UNTIL = datetime(2026, 12, 4, tzinfo=UTC)
RANGE = {"start_timestamp": {"type": "range", "op": "bt", "value": [1796256000000, 1796342399999]}}
TRANSCRIPTS = ("transcript", "transcript_object", "transcript_with_tool_calls")


def call_object(call_id, *, analysed=True, **changes):
    data = fixture_json("retell_call_analyzed" if analysed else "retell_call_ended")["call"]
    return {**data, "call_id": call_id, **changes}


def list_item(call):
    """What list-calls gives for a call: everything but the transcripts."""
    return {key: value for key, value in call.items() if key not in TRANSCRIPTS}


def store(call, event_name):
    with transaction.atomic():
        return upsert_call(call, event_name)


@pytest.fixture
def retell():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def list_page(rsps, items, *, has_more=False, pagination_key=None):
    rsps.add(
        "POST",
        f"{settings.RETELL_BASE_URL}/v3/list-calls",
        json={"items": items, "has_more": has_more, "pagination_key": pagination_key},
    )


def get_call(rsps, call, status=200, headers=None):
    rsps.add(
        "GET",
        f"{settings.RETELL_BASE_URL}/v2/get-call/{call['call_id']}",
        json=call if status == 200 else {"status": "error", "message": "nope"},
        status=status,
        headers=headers,
    )


def sent(rsps, method, path):
    return [c.request for c in rsps.calls if c.request.method == method and c.request.path_url == path]


def run(*args):
    out = io.StringIO()
    call_command("sync_retell_calls", "--since", "2026-12-03", "--until", "2026-12-03", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_pages_through_list_calls_with_the_range_and_agent_filter(retell, agent):
    page_one = [list_item(call_object(f"call_p1_{n}", call_status="ongoing")) for n in range(2)]
    page_two = [list_item(call_object("call_p2_0", call_status="registered"))]
    list_page(retell, page_one, has_more=True, pagination_key="key_page_2")
    list_page(retell, page_two, has_more=False)

    output = run("--agent", AGENT_ID, "--agent", "agent_other")
    bodies = [json.loads(r.body) for r in sent(retell, "POST", "/v3/list-calls")]
    criteria = {**RANGE, "agent": [{"agent_id": AGENT_ID}, {"agent_id": "agent_other"}]}
    assert bodies == [
        {"filter_criteria": criteria, "sort_order": "ascending", "limit": 1000},
        {
            "filter_criteria": criteria,
            "sort_order": "ascending",
            "limit": 1000,
            "pagination_key": "key_page_2",
        },
    ]
    request = sent(retell, "POST", "/v3/list-calls")[0]
    assert request.headers["Authorization"] == f"Bearer {settings.RETELL_API_KEY}"
    assert output.splitlines()[-1] == (
        "Sync Retell calls: 3 listed: 0 fetched (0 new, 0 incomplete), 0 up to date, "
        "3 still in progress, 0 failed."
    )


@pytest.mark.django_db
def test_fetches_missing_and_incomplete_calls_and_merges_them_like_webhooks(retell, agent):
    missed = call_object("call_missed")  # we never heard of it
    half = call_object("call_half")  # we got call_started only
    store(
        {**call_object("call_half", analysed=False), "call_status": "ongoing", "end_timestamp": None},
        "call_started",
    )
    Call.objects.filter(call_id="call_half").update(transcript="")
    complete = call_object("call_complete")
    store(complete, "call_analyzed")
    list_page(retell, [list_item(missed), list_item(half), list_item(complete)])
    get_call(retell, missed)
    get_call(retell, half)

    output = run("-v", "2")
    assert "call_missed: to fetch (not in the call log)" in output
    assert "call_half: to fetch (status ongoing → ended)" in output
    assert output.splitlines()[-1] == (
        "Sync Retell calls: 3 listed: 2 fetched (1 new, 1 incomplete), 1 up to date, "
        "0 still in progress, 0 failed."
    )
    assert sent(retell, "GET", "/v2/get-call/call_complete") == []

    call = Call.objects.get(call_id="call_missed")
    assert call.agent == agent and call.status == "ended" and call.transcript == missed["transcript"]
    assert call.summary == missed["call_analysis"]["call_summary"]
    event = CallEvent.objects.get(call=call)
    assert event.event == "reconciled" and event.status == "processed"
    assert event.payload == {"event": "reconciled", "call": missed}  # shaped like a delivery
    # Processed as its call_ended + call_analyzed would have been: the note and the after-call tags.
    assert set(GhlSyncTask.objects.filter(call=call).values_list("kind", flat=True)) == {"note", "tags"}
    assert Call.objects.get(call_id="call_half").status == "ended"


@pytest.mark.django_db
def test_a_rerun_fetches_nothing(retell, agent):
    missed = call_object("call_missed")
    list_page(retell, [list_item(missed)])
    list_page(retell, [list_item(missed)])
    get_call(retell, missed)
    run()
    output = run()
    assert len(sent(retell, "GET", "/v2/get-call/call_missed")) == 1
    assert "1 listed: 0 fetched (0 new, 0 incomplete), 1 up to date" in output
    assert CallEvent.objects.count() == 1 and GhlSyncTask.objects.filter(kind="note").count() == 1


@pytest.mark.django_db
def test_ctrl_c_mid_fetch_exits_130_and_a_rerun_fetches_only_the_rest(retell, agent):
    calls = [call_object(f"call_missed_{n}") for n in range(3)]
    list_page(retell, [list_item(call) for call in calls])
    get_call(retell, calls[0])

    def interrupt(request):
        raise KeyboardInterrupt

    retell.add_callback("GET", f"{settings.RETELL_BASE_URL}/v2/get-call/call_missed_1", callback=interrupt)
    out = io.StringIO()
    with pytest.raises(CommandError, match="interrupted") as error:
        call_command("sync_retell_calls", "--since", "2026-12-03", "--until", "2026-12-03", stdout=out)
    assert error.value.returncode == 130
    assert out.getvalue().splitlines()[-1].endswith("; interrupted.")
    assert list(Call.objects.values_list("call_id", flat=True)) == ["call_missed_0"]

    retell.replace("GET", f"{settings.RETELL_BASE_URL}/v2/get-call/call_missed_1", json=calls[1])
    list_page(retell, [list_item(call) for call in calls])
    get_call(retell, calls[2])
    output = run()
    assert "3 listed: 2 fetched (2 new, 0 incomplete), 1 up to date" in output
    assert len(sent(retell, "GET", "/v2/get-call/call_missed_0")) == 1
    assert Call.objects.count() == 3 and GhlSyncTask.objects.filter(kind="note").count() == 3


@pytest.mark.django_db
def test_a_call_without_transcript_is_fetched_once(retell, agent):
    no_answer = call_object("call_no_answer", analysed=False, call_status="not_connected", transcript="")
    for key in TRANSCRIPTS[1:]:
        no_answer.pop(key)
    store(no_answer, "call_ended")
    list_page(retell, [list_item(no_answer)])
    list_page(retell, [list_item(no_answer)])
    get_call(retell, no_answer)
    assert "1 fetched (0 new, 1 incomplete)" in run()
    assert "0 fetched (0 new, 0 incomplete), 1 up to date" in run()  # we know now: Retell has none either


@pytest.mark.django_db
def test_dry_run_fetches_and_writes_nothing(retell, agent):
    missed = call_object("call_missed")
    list_page(retell, [list_item(missed)])
    output = run("--dry-run", "-v", "2")
    assert "call_missed: would fetch (not in the call log)" in output
    assert output.splitlines()[-1] == (
        "Sync Retell calls (dry run): 1 listed: would fetch 1 new and 0 incomplete, 0 up to date, "
        "0 still in progress; nothing was written."
    )
    assert sent(retell, "GET", "/v2/get-call/call_missed") == []
    assert not Call.objects.exists() and not CallEvent.objects.exists()


@pytest.mark.django_db
def test_429_from_retell_is_waited_out_and_counted(retell, agent):
    missed = call_object("call_missed")
    list_page(retell, [list_item(missed)])
    get_call(retell, missed, status=429, headers={"Retry-After": "3"})
    get_call(retell, missed)
    waits = []
    summary = RetellReconciler(
        RetellClient(),
        since=SINCE,
        until=UNTIL,
        out=io.StringIO(),
        sleep=waits.append,
    ).run()
    assert waits == [3.0]
    assert summary.ok and summary.fetched == 1 and summary.rate_limited == 1
    assert summary.line().endswith("0 failed; waited out 1 rate limits (429).")
    assert Call.objects.filter(call_id="call_missed").exists()


@pytest.mark.django_db
def test_calls_that_cannot_be_fetched_are_reported_with_a_non_zero_exit(retell, agent):
    gone, fine = call_object("call_gone"), call_object("call_fine")
    list_page(retell, [list_item(gone), list_item(fine)])
    get_call(retell, gone, status=404)
    get_call(retell, fine)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"1 call\(s\) could not be fetched"):
        call_command("sync_retell_calls", "--since", "2026-12-03", "--until", "2026-12-03", stdout=out)
    assert "  failed   call_gone: Retell HTTP 404: GET /v2/get-call/call_gone: nope" in out.getvalue()
    assert (
        Call.objects.filter(call_id="call_fine").exists()
        and not Call.objects.filter(call_id="call_gone").exists()
    )


@pytest.mark.django_db
def test_backfill_notes_chains_into_the_note_backfill(retell, agent):
    ghl = FakeGhl(retell)
    missed = call_object("call_missed")
    list_page(retell, [list_item(missed)])
    get_call(retell, missed)
    output = run("--backfill-notes", "--sync")
    lines = output.splitlines()
    assert "Sync Retell calls: 1 listed: 1 fetched (1 new, 0 incomplete)" in output
    assert lines[-1].startswith("Backfill GHL notes: 1 call: 1 written")
    [note] = ghl.notes_for("c_Dana7Lee01")
    assert "Call ID: call_missed" in note["body"] and "Dana Lee called to book" in note["body"]


@pytest.mark.django_db
def test_listing_failure_and_missing_key_are_command_errors(retell, settings):
    retell.add("POST", f"{settings.RETELL_BASE_URL}/v3/list-calls", json={"message": "bad key"}, status=401)
    with pytest.raises(CommandError, match="could not list Retell calls: Retell HTTP 401"):
        run()
    settings.RETELL_API_KEY = ""
    with pytest.raises(CommandError, match="RETELL_API_KEY is not set"):
        run()


@pytest.mark.django_db
def test_the_same_fetched_object_is_stored_once_and_a_changed_one_again(agent):
    from calls.ingest import InvalidEvent, ingest_fetched_call

    ended = call_object("call_x", analysed=False)
    first = ingest_fetched_call(ended)
    again = ingest_fetched_call(json.loads(json.dumps(ended)))
    assert not first.duplicate and again.duplicate and again.event.pk == first.event.pk
    analysed = ingest_fetched_call(call_object("call_x"))
    assert not analysed.duplicate and CallEvent.objects.filter(event="reconciled").count() == 2
    assert Call.objects.get().call_successful is True
    with pytest.raises(InvalidEvent):
        ingest_fetched_call({"call_status": "ended"})
