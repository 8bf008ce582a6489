"""Ingestion of Retell call webhooks: store the delivery verbatim, merge it into the Call, hand off.

Runs inside the request (Retell waits up to 10 s, we aim for a few ms): no GHL work here. The
delivery row and the Call upsert commit together; processing is enqueued only after that commit.
"""

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from calls.models import Call, CallEvent
from calls.pipeline import RECONCILED_EVENT, enqueue_event_processing
from integrations.models import Agent
from integrations.phones import to_e164_or_none
from integrations.routing import link_routing_decision
from retellghl.api import InvalidJson, parse_json_body

CALL_EVENTS = {"call_started", "call_ended", "call_analyzed"}
TRANSFER_EVENTS = {"transfer_started", "transfer_bridged", "transfer_cancelled", "transfer_ended"}
CHAT_EVENTS = {"chat_started", "chat_ended", "chat_analyzed"}
# Many per call, each a fresher snapshot: never deduplicated away.
NEVER_DEDUPED = {"transcript_updated"}

# A call only moves forward: a late call_started must not turn an ended call back into "ongoing".
STATUS_RANK = {"registered": 0, "ongoing": 1, "not_connected": 2, "ended": 2, "error": 2}


class InvalidEvent(Exception):
    """The delivery is authentic but unusable; `code` names the problem for the 400 answer."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class IngestResult:
    event: CallEvent
    call: Call | None
    duplicate: bool


def ingest_retell_event(raw_body):
    """Store one signed delivery and merge it into its Call. Raises InvalidEvent for unusable bodies
    (the raw body is still stored, for inspection)."""
    # The signature check already proved it is UTF-8. A NUL can only be in a body that is not JSON, and
    # PostgreSQL text cannot hold one: such a body is kept with U+FFFD in its place.
    raw_text = raw_body.decode("utf-8").replace("\x00", "\ufffd")
    try:
        payload, event_name, subject = _parse(raw_text)
    except InvalidEvent as exc:
        CallEvent.objects.create(raw_body=raw_text, status=CallEvent.Status.INVALID, error=exc.message)
        raise
    call_id = subject.get("call_id") or subject.get("chat_id")
    merge_as = None if event_name in CHAT_EVENTS else event_name
    result = _store_and_merge(
        call_id, event_name, _dedupe_key(event_name, call_id, payload), raw_text, subject, merge_as
    )
    if not result.duplicate and result.event.status == CallEvent.Status.RECEIVED:
        enqueue_event_processing(result.event)  # after commit (we are outside a transaction here)
    return result


def ingest_fetched_call(data):
    """Store a call object fetched from Retell's API (get-call) and merge it as its webhook would be.

    Used by `sync_retell_calls` for calls whose webhooks we missed. The object is kept as a CallEvent
    named "reconciled", shaped like a delivery (`{"event": "reconciled", "call": {...}}`) and
    deduplicated by its content: fetching the same object twice stores and merges it once
    (`duplicate=True`), while a call that changed since (its analysis arrived) is stored again. The
    caller processes the event (`pipeline.process_call_event`), which acts on it as on the
    call_ended / call_analyzed it implies.
    """
    call_id = data.get("call_id") if isinstance(data, dict) else None
    if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 128:
        raise InvalidEvent("missing_call_id", "The call object has no usable call_id.")
    # Re-serialised (the client decoded it): not Retell's bytes, but the same content, keys in order.
    raw_text = json.dumps({"event": RECONCILED_EVENT, "call": data}, ensure_ascii=False)
    key = f"{call_id}:{RECONCILED_EVENT}:{hashlib.sha256(raw_text.encode()).hexdigest()[:16]}"
    has_analysis = isinstance(data.get("call_analysis"), dict) and bool(data["call_analysis"])
    merge_as = "call_analyzed" if has_analysis else "call_ended"  # the richest event it deserves
    return _store_and_merge(call_id, RECONCILED_EVENT, key, raw_text, data, merge_as, always_process=True)


def _store_and_merge(call_id, event_name, key, raw_text, subject, merge_as, *, always_process=False):
    """Insert the event row and merge its call object, atomically; a duplicate key changes nothing.

    `merge_as`: the event name the call object is merged as (None: no call to merge, e.g. chats).
    The event is RECEIVED (to be processed) when its agent acts on it, else IGNORED.
    """
    with transaction.atomic():
        try:
            # Savepoint: a duplicate fails on the event's unique key and rolls back to here, undoing
            # its merge too, so a repeated delivery changes nothing. The call row is locked first,
            # always in that order, so concurrent deliveries of one call queue up instead of deadlocking.
            with transaction.atomic():
                call = upsert_call(subject, merge_as) if merge_as else None
                acted_on = (
                    call is not None
                    and call.agent is not None
                    and (always_process or call.agent.acts_on(event_name))
                )
                event = CallEvent.objects.create(
                    call=call,
                    retell_call_id=call_id,
                    event=event_name,
                    dedupe_key=key,
                    raw_body=raw_text,
                    status=CallEvent.Status.RECEIVED if acted_on else CallEvent.Status.IGNORED,
                    processed_at=None if acted_on else timezone.now(),
                )
        except IntegrityError:
            # The same delivery again (Retell retries, often within a second): count it, change nothing.
            CallEvent.objects.filter(dedupe_key=key).update(
                delivery_count=F("delivery_count") + 1, last_received_at=timezone.now()
            )
            return IngestResult(event=CallEvent.objects.get(dedupe_key=key), call=None, duplicate=True)
    return IngestResult(event=event, call=call, duplicate=False)


def _parse(raw_text):
    try:
        payload = parse_json_body(raw_text)
    except InvalidJson as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("invalid_payload", "Body must be a JSON object.")
    event_name = payload.get("event")
    if not isinstance(event_name, str) or not event_name.strip():
        raise InvalidEvent("missing_event", "Field 'event' (a string) is required.")
    subject_key = "chat" if event_name in CHAT_EVENTS else "call"
    subject = payload.get(subject_key)
    if not isinstance(subject, dict):
        raise InvalidEvent(f"missing_{subject_key}", f"Field '{subject_key}' (an object) is required.")
    id_key = "chat_id" if subject_key == "chat" else "call_id"
    if not isinstance(subject.get(id_key), str) or not subject[id_key].strip():
        raise InvalidEvent(f"missing_{id_key}", f"Field '{subject_key}.{id_key}' (a string) is required.")
    if len(subject[id_key]) > 128:
        raise InvalidEvent(f"invalid_{id_key}", f"Field '{subject_key}.{id_key}' is too long.")
    return payload, event_name[:64], subject


def _dedupe_key(event_name, call_id, payload):
    if event_name in NEVER_DEDUPED:
        return None
    if event_name in TRANSFER_EVENTS:
        # A call can transfer more than once: tell transfers apart by what they describe.
        detail = {k: payload.get(k) for k in ("transfer_destination", "transfer_option")}
        detail["start"] = (payload.get("call") or {}).get("start_timestamp")
        digest = hashlib.sha256(json.dumps(detail, sort_keys=True).encode()).hexdigest()[:16]
        return f"{call_id}:{event_name}:{digest}"
    return f"{call_id}:{event_name}"


def upsert_call(data, event_name):
    """Create or update the Call from a Retell call object, never replacing richer data with poorer.

    Shared by webhook ingestion and `sync_retell_calls` (a call fetched from the API is merged
    exactly as if its webhook had arrived). Must run inside a transaction.
    """
    call_id = data["call_id"]
    call = Call.objects.select_for_update().filter(call_id=call_id).first()  # serialise merges
    if call is None:
        # A call's first event: merge into a new row and INSERT it whole (an empty INSERT followed by
        # an UPDATE of every column, and the SELECTs around them, cost several times more). A
        # concurrent first delivery may insert the call meanwhile: then lock its row and merge into it.
        call = Call(call_id=call_id)
        merge_call_data(call, data, event_name)
        try:
            with transaction.atomic():
                call.save(force_insert=True)
        except IntegrityError:
            call = Call.objects.select_for_update().get(call_id=call_id)
        else:
            if _link_routing_decision(call, knew_decision=False):
                call.save(update_fields=["ghl_contact_id"])
            return call
    knew_decision = "routing_decision_id" in (call.metadata or {})
    merge_call_data(call, data, event_name)
    _link_routing_decision(call, knew_decision=knew_decision)
    call.save()
    return call


def _link_routing_decision(call, *, knew_decision):
    """Link the routing decision our inbound answer named, once it shows in the call's metadata.

    Reuses the contact the decision already found, so post-call sync needs no second GHL lookup.
    True when that set the call's ghl_contact_id.
    """
    if knew_decision or "routing_decision_id" not in call.metadata:
        return False
    decision = link_routing_decision(call)
    if decision is not None and decision.ghl_contact_id and not call.ghl_contact_id:
        call.ghl_contact_id = decision.ghl_contact_id
        return True
    return False


def merge_call_data(call, data, event_name):
    """Merge a Retell call object into `call`. Retell's types are trusted nowhere: a field holding a
    value of the wrong type (or out of range for its column) is ignored like a missing one."""
    _set_if_present(call, "retell_agent_id", data.get("agent_id"))
    _set_if_present(call, "agent_name", data.get("agent_name"))
    _set_if_present(call, "agent_version", _bounded_int(data.get("agent_version"), 2**31 - 1), int)
    _set_if_present(call, "call_type", data.get("call_type"))
    direction = data.get("direction") or ("web" if data.get("call_type") == "web_call" else None)
    _set_if_present(call, "direction", direction)
    for field in ("from_number", "to_number"):
        _set_if_present(call, field, to_e164_or_none(data.get(field)) or data.get(field))

    status = data.get("call_status")
    if isinstance(status, str) and status in STATUS_RANK:
        if STATUS_RANK[status] >= STATUS_RANK.get(call.status, -1):
            call.status = status

    _set_if_present(call, "started_at", _from_ms(data.get("start_timestamp")), datetime)
    _set_if_present(call, "ended_at", _from_ms(data.get("end_timestamp")), datetime)
    _set_if_present(call, "duration_ms", _bounded_int(data.get("duration_ms"), 2**63 - 1), int)
    _set_if_present(call, "disconnection_reason", data.get("disconnection_reason"))

    # transcript_updated carries partial snapshots; once the call has ended, only the final
    # transcript of call_ended/call_analyzed may replace what we hold.
    final = event_name in ("call_ended", "call_analyzed") or data.get("call_status") == "ended"
    live = STATUS_RANK.get(call.status, 0) < STATUS_RANK["ended"]
    if final or (live and not _is_older_snapshot(call, data)):
        _set_if_present(call, "transcript", data.get("transcript"))
        _set_if_present(call, "transcript_object", data.get("transcript_object"), list)
        _set_if_present(call, "transcript_with_tool_calls", data.get("transcript_with_tool_calls"), list)

    analysis = data.get("call_analysis")
    if isinstance(analysis, dict) and analysis:
        call.call_analysis = analysis
        _set_if_present(call, "summary", analysis.get("call_summary"))
        _set_if_present(call, "user_sentiment", analysis.get("user_sentiment"))
        if isinstance(analysis.get("call_successful"), bool):
            call.call_successful = analysis["call_successful"]
        if isinstance(analysis.get("in_voicemail"), bool):
            call.in_voicemail = analysis["in_voicemail"]
        _set_if_present(call, "custom_analysis_data", analysis.get("custom_analysis_data"), dict)

    _set_if_present(call, "recording_url", data.get("recording_url"))
    _set_if_present(call, "public_log_url", data.get("public_log_url"))
    for field, key in (
        ("dynamic_variables", "retell_llm_dynamic_variables"),
        ("collected_dynamic_variables", "collected_dynamic_variables"),
        ("metadata", "metadata"),
    ):
        if isinstance(data.get(key), dict):
            setattr(call, field, {**(getattr(call, field) or {}), **data[key]})
    cost = data.get("call_cost")
    if isinstance(cost, dict) and cost:
        call.call_cost = cost
        combined = cost.get("combined_cost")
        if isinstance(combined, int | float) and not isinstance(combined, bool):
            try:
                combined = float(combined)
            except OverflowError:  # an integer too large for a float
                combined = math.inf
            if math.isfinite(combined):
                call.combined_cost_cents = combined

    if not call.ghl_contact_id and isinstance(call.dynamic_variables.get("contact_id"), str):
        call.ghl_contact_id = call.dynamic_variables["contact_id"][:64]
    if call.agent_id is None and call.retell_agent_id:
        agents = Agent.objects.select_related("location")
        call.agent = agents.filter(retell_agent_id=call.retell_agent_id).first()
    if call.location_id is None and call.agent is not None and call.agent.location_id:
        call.location_id = call.agent.location_id
    if call.agent is None and call.ghl_sync_status == Call.SyncStatus.PENDING:
        call.ghl_sync_status = Call.SyncStatus.SKIPPED  # no agent configured: nothing will sync


def _is_older_snapshot(call, data):
    """A live transcript only grows: a snapshot with fewer turns, or as many turns and less text, than
    the one we hold was taken earlier and arrived late (deliveries are not ordered)."""

    def size(text, *turn_lists):
        turns = max((len(turns) for turns in turn_lists if isinstance(turns, list)), default=0)
        return turns, len(text) if isinstance(text, str) else 0

    held = size(call.transcript, call.transcript_object, call.transcript_with_tool_calls)
    new = size(data.get("transcript"), data.get("transcript_object"), data.get("transcript_with_tool_calls"))
    return new < held


def _set_if_present(obj, field, value, kind=str):
    """Assign only real values of the field's kind: a later, poorer event (None, "", {}, []) or a value
    of another type never wipes data. Text is cut to the column's length."""
    if not isinstance(value, kind) or isinstance(value, bool) or value in ("", [], {}):
        return
    if isinstance(value, str):
        max_length = getattr(obj._meta.get_field(field), "max_length", None)
        value = value[:max_length] if max_length else value
    setattr(obj, field, value)


def _bounded_int(value, maximum):
    """An integer within 0..maximum (what the column holds), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum:
        return value
    return None


def _from_ms(value):
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
