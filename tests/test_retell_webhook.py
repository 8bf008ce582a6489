"""POST /api/webhooks/retell: verification, storage, deduplication, merging, bad input."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from calls.models import Call, CallEvent
from tests.conftest import fixture_bytes, fixture_json, post_signed, retell_signature

URL = "/api/webhooks/retell"
CALL_ID = "call_8f14e45fceea167a5a36dedd4bea2543"


def event_body(name, **call_overrides):
    payload = fixture_json("retell_call_ended")
    payload["event"] = name
    payload["call"].update(call_overrides)
    return payload


@pytest.mark.django_db
class TestSignature:
    def test_unsigned_request_is_refused_and_nothing_stored(self, client):
        response = client.post(URL, fixture_bytes("retell_call_ended"), content_type="application/json")
        assert response.status_code == 401
        assert response.json()["error"] == "missing_signature"
        assert CallEvent.objects.count() == 0 and Call.objects.count() == 0

    def test_wrong_key_is_refused(self, client):
        body = fixture_bytes("retell_call_ended")
        response = client.post(
            URL,
            body,
            content_type="application/json",
            HTTP_X_RETELL_SIGNATURE=retell_signature(body, key="nope"),
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_signature"
        assert CallEvent.objects.count() == 0

    def test_stale_signature_is_refused(self, client):
        body = fixture_bytes("retell_call_ended")
        signature = retell_signature(body, timestamp_ms=1_700_000_000_000)
        response = client.post(URL, body, content_type="application/json", HTTP_X_RETELL_SIGNATURE=signature)
        assert response.status_code == 401 and response.json()["error"] == "stale_signature"

    def test_get_is_a_json_405(self, client):
        response = client.get(URL)
        assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


ALL_EVENTS = [
    ("retell_call_started", None),
    ("retell_call_ended", None),
    ("retell_call_analyzed", None),
    ("retell_transcript_updated", None),
    ("retell_transfer_started", None),
    ("retell_transfer_started", "transfer_bridged"),
    ("retell_transfer_started", "transfer_cancelled"),
    ("retell_transfer_started", "transfer_ended"),
    ("retell_call_ended", "call_something_new"),  # unknown events are stored, not refused
]


@pytest.mark.django_db
@pytest.mark.parametrize("fixture,rename", ALL_EVENTS)
def test_every_call_event_is_stored_verbatim(client, fixture, rename):
    body = fixture_bytes(fixture)
    if rename:
        payload = json.loads(body)
        payload["event"] = rename
        body = json.dumps(payload).encode()
    response = post_signed(client, URL, body)
    assert response.status_code == 204
    event = CallEvent.objects.get()
    assert event.raw_body == body.decode()
    assert event.event == (rename or json.loads(body)["event"])
    assert event.call.call_id == CALL_ID


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["chat_started", "chat_ended", "chat_analyzed"])
def test_chat_events_are_stored(client, event):
    body = {"event": event, "chat": {"chat_id": "chat_123", "agent_id": "agent_x", "chat_status": "ongoing"}}
    assert post_signed(client, URL, body).status_code == 204
    stored = CallEvent.objects.get()
    assert stored.retell_call_id == "chat_123" and stored.call is None and stored.status == "ignored"


@pytest.mark.django_db
def test_call_row_holds_the_call_facts(client, agent):
    post_signed(client, URL, fixture_bytes("retell_call_analyzed"))
    call = Call.objects.get(call_id=CALL_ID)
    assert call.agent == agent and call.location == agent.location
    assert call.direction == "inbound" and call.status == "ended"
    assert (call.from_number, call.to_number) == ("+14155550123", "+14155559999")
    assert call.duration_ms == 37059 and call.disconnection_reason == "agent_hangup"
    assert call.started_at.isoformat() == "2026-12-03T16:00:00+00:00"
    assert call.transcript.startswith("Agent: Thanks for calling Bright Dental")
    assert call.transcript_object[0]["role"] == "agent"
    assert any(item.get("role") == "tool_call_invocation" for item in call.transcript_with_tool_calls)
    assert call.summary.startswith("Dana Lee called to book") and call.user_sentiment == "Positive"
    assert call.call_successful is True and call.custom_analysis_data == {
        "appointment_booked": True,
        "service": "cleaning",
    }
    assert call.ghl_contact_id == "c_Dana7Lee01"  # from the contact_id dynamic variable
    assert call.combined_cost_cents == 12.67 and call.recording_url.endswith("recording.wav")


@pytest.mark.django_db
def test_duplicate_delivery_is_acknowledged_and_changes_nothing(client, agent):
    body = fixture_bytes("retell_call_ended")
    assert post_signed(client, URL, body).status_code == 204
    before = Call.objects.values().get()
    assert post_signed(client, URL, body).status_code == 204
    event = CallEvent.objects.get()
    assert event.delivery_count == 2
    assert Call.objects.values().get() == before


@pytest.mark.django_db
def test_transcript_updates_are_all_kept_and_the_latest_wins(client):
    first = fixture_json("retell_transcript_updated")
    second = json.loads(json.dumps(first))
    second["call"]["transcript"] += "Agent: Sure, let me check.\n"
    post_signed(client, URL, first)
    post_signed(client, URL, second)
    assert CallEvent.objects.filter(event="transcript_updated").count() == 2
    assert Call.objects.get().transcript.endswith("let me check.\n")


@pytest.mark.django_db
def test_an_older_transcript_snapshot_arriving_late_does_not_replace_a_newer_one(client):
    newer = fixture_json("retell_transcript_updated")
    older = json.loads(json.dumps(newer))
    older["call"]["transcript_with_tool_calls"] = older["call"]["transcript_with_tool_calls"][:-1]
    older["call"]["transcript"] = older["call"]["transcript"][:20]
    post_signed(client, URL, newer)
    post_signed(client, URL, older)  # taken first, delivered second
    call = Call.objects.get()
    assert CallEvent.objects.filter(event="transcript_updated").count() == 2  # both kept verbatim
    assert call.transcript == newer["call"]["transcript"]
    assert call.transcript_with_tool_calls == newer["call"]["transcript_with_tool_calls"]


@pytest.mark.django_db
def test_late_transcript_update_does_not_replace_the_final_transcript(client):
    post_signed(client, URL, fixture_bytes("retell_call_ended"))
    final = Call.objects.get().transcript
    post_signed(client, URL, fixture_bytes("retell_transcript_updated"))
    assert Call.objects.get().transcript == final


@pytest.mark.django_db
def test_poorer_later_event_never_wipes_richer_data(client):
    post_signed(client, URL, fixture_bytes("retell_call_analyzed"))
    rich = Call.objects.values().get()
    post_signed(client, URL, fixture_bytes("retell_call_ended"))  # no call_analysis
    post_signed(client, URL, fixture_bytes("retell_call_started"))  # status ongoing, no transcript
    after = Call.objects.values().get()
    rich.pop("updated_at"), after.pop("updated_at")
    assert after == rich


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,code",
    [
        (b"not json at all", "invalid_json"),
        (b"[1, 2, 3]", "invalid_payload"),
        (b'{"call": {"call_id": "x"}}', "missing_event"),
        (b'{"event": "call_ended"}', "missing_call"),
        (b'{"event": "call_ended", "call": {"agent_id": "a"}}', "missing_call_id"),
        (b'{"event": "call_ended", "call": {"call_id": 12}}', "missing_call_id"),
        (b'{"event": "chat_ended", "chat": {}}', "missing_chat_id"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem_and_the_body_is_kept(client, body, code):
    response = post_signed(client, URL, body)
    assert response.status_code == 400
    assert response.json()["error"] == code and response.json()["message"]
    kept = CallEvent.objects.get()
    assert kept.status == "invalid" and kept.raw_body == body.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "call_ended", "call": {"call_id": "c1", "duration_ms": NaN}}',
        b'{"event": "call_ended", "call": {"call_id": "c1", "x": -Infinity}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event": "call_ended",\x00 "call": {}}',
    ],
    ids=["NaN", "Infinity", "nested too deeply", "raw NUL"],
)
def test_json_no_database_can_store_is_a_400_and_the_body_is_still_kept(client, body):
    response = post_signed(client, URL, body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    kept = CallEvent.objects.get()
    assert kept.status == "invalid" and kept.raw_body == body.decode().replace("\x00", "\ufffd")


@pytest.mark.django_db
def test_values_of_the_wrong_type_or_range_are_ignored_and_the_event_kept(client, agent):
    post_signed(client, URL, fixture_bytes("retell_call_ended"))
    before = Call.objects.values().get()
    wild = {
        "call_status": [],  # found by fuzzing: a list made the status lookup crash
        "agent_version": 2**40,
        "duration_ms": 10**30,
        "start_timestamp": 10**400,
        "direction": {"in": True},
        "from_number": 4155550123,
        "transcript": ["Agent: hi"],
        "transcript_object": {"role": "agent"},
        "disconnection_reason": True,
        "call_cost": {"combined_cost": 10**400},
        "call_analysis": {"call_summary": 42, "custom_analysis_data": ["x"], "call_successful": "yes"},
    }
    body = json.dumps(event_body("call_analyzed", **wild))

    assert post_signed(client, URL, body).status_code == 204

    after = Call.objects.values().get()
    verbatim = {"updated_at", "call_analysis", "call_cost"}  # stored as received, by design
    changed = {key for key in before if before[key] != after[key]} - verbatim
    assert changed == set(), changed  # nothing of the wrong type got in, nothing was wiped
    assert CallEvent.objects.filter(event="call_analyzed").exists()


@pytest.mark.django_db
def test_nul_and_lone_surrogates_are_stored_as_replacement_characters(client):
    body = json.dumps(
        event_body("call_ended", transcript="Agent: hi\x00 \ud83d!", metadata={"k\x00": "\udfff"})
    )

    assert post_signed(client, URL, body).status_code == 204

    call = Call.objects.get()
    assert call.transcript == "Agent: hi\ufffd \ufffd!" and call.metadata["k\ufffd"] == "\ufffd"
    assert CallEvent.objects.get().raw_body == body  # the delivery itself stays exactly as sent


@pytest.mark.django_db
def test_large_word_level_body_is_accepted(client):
    payload = fixture_json("retell_call_ended_50_turns")
    # Pad the words to ~4 MB, as a long call with word timings would be.
    payload["call"]["transcript_object"] *= 120
    body = json.dumps(payload).encode()
    assert len(body) > 3_000_000
    assert post_signed(client, URL, body).status_code == 204
    assert len(Call.objects.get().transcript_object) == 120 * len(
        fixture_json("retell_call_ended_50_turns")["call"]["transcript_object"]
    )


@pytest.mark.django_db
def test_body_over_the_bound_is_413(client, settings):
    settings.RETELL_MAX_BODY_BYTES = 1000
    response = post_signed(client, URL, fixture_bytes("retell_call_ended"))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert CallEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_database_down_answers_503_and_the_retry_is_stored_once(client):
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database cannot be taken down without losing it")
    body = fixture_bytes("retell_call_ended")
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there: the database refuses connections
    try:
        response = post_signed(client, URL, body)
    finally:
        connection.close()
        connection.settings_dict.update(real)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    assert post_signed(client, URL, body).status_code == 204  # Retell's retry
    assert post_signed(client, URL, body).status_code == 204  # and a duplicate of it
    assert CallEvent.objects.filter(event="call_ended").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_store_one_event(agent):
    if connection.vendor == "sqlite":
        pytest.skip("real concurrency needs PostgreSQL")
    body = fixture_bytes("retell_call_ended")
    barrier = threading.Barrier(6)
    statuses = []

    def deliver():
        try:
            barrier.wait()
            statuses.append(post_signed(Client(), URL, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 6
    event = CallEvent.objects.get()
    assert event.delivery_count == 6
    assert Call.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_new_calls_events_racing_to_create_it_all_merge_into_one_call(agent):
    """call_started, call_ended and call_analyzed of an unseen call at once: one inserts the Call, the
    others lose the insert race and must merge into the row it created, not lose their data."""
    if connection.vendor == "sqlite":
        pytest.skip("real concurrency needs PostgreSQL")
    bodies = [
        fixture_bytes(name) for name in ("retell_call_started", "retell_call_ended", "retell_call_analyzed")
    ]
    barrier = threading.Barrier(len(bodies))
    statuses = []

    def deliver(body):
        try:
            barrier.wait()
            statuses.append(post_signed(Client(), URL, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 3
    call = Call.objects.get()
    assert call.status == "ended" and call.ended_at is not None  # from call_ended / call_analyzed
    assert call.summary and call.call_analysis  # from call_analyzed
    assert call.transcript_object  # the final transcript
    assert call.agent == agent and call.location == agent.location
    assert sorted(CallEvent.objects.values_list("event", flat=True)) == [
        "call_analyzed",
        "call_ended",
        "call_started",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, "/api/webhooks/inbound"])
def test_signed_endpoints_need_no_csrf_token(url):
    from django.test import Client

    fixture = "retell_call_started" if url == URL else "retell_call_inbound"
    response = post_signed(Client(enforce_csrf_checks=True), url, fixture_bytes(fixture))
    assert response.status_code in (200, 204)
