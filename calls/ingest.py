"""Ingestion of Retell call webhooks: store the delivery verbatim, merge it into the Call, hand off.

Runs inside the request (Retell waits up to 10 s, we aim for a few ms): no GHL work here. The
delivery row and the Call upsert commit together; processing is enqueued only after that commit.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from calls.models import Call, CallEvent
from calls.pipeline import enqueue_event_processing
from integrations.models import Agent
from integrations.phones import to_e164_or_none
from integrations.routing import link_routing_decision

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
    raw_text = raw_body.decode("utf-8")  # the signature check already proved it is UTF-8
    try:
        payload, event_name, subject = _parse(raw_text)
    except InvalidEvent as exc:
        CallEvent.objects.create(raw_body=raw_text, status=CallEvent.Status.INVALID, error=exc.message)
        raise
    call_id = subject.get("call_id") or subject.get("chat_id")
    key = _dedupe_key(event_name, call_id, payload)

    with transaction.atomic():
        try:
            # Savepoint: a duplicate fails on the event's unique key and rolls back to here, undoing
            # its merge too, so a repeated delivery changes nothing. The call row is locked first,
            # always in that order, so concurrent deliveries of one call queue up instead of deadlocking.
            with transaction.atomic():
                call = None if event_name in CHAT_EVENTS else upsert_call(subject, event_name)
                acted_on = call is not None and call.agent is not None and call.agent.acts_on(event_name)
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
        if acted_on:
            enqueue_event_processing(event)  # runs after this transaction commits
    return IngestResult(event=event, call=call, duplicate=False)


def _parse(raw_text):
    try:
        payload = json.loads(raw_text)
    except ValueError as exc:
        raise InvalidEvent("invalid_json", f"Body is not valid JSON: {exc}") from None
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
    _set_if_present(call, "retell_agent_id", data.get("agent_id"))
    _set_if_present(call, "agent_name", data.get("agent_name"))
    if isinstance(data.get("agent_version"), int):
        call.agent_version = data["agent_version"]
    _set_if_present(call, "call_type", data.get("call_type"))
    direction = data.get("direction") or ("web" if data.get("call_type") == "web_call" else None)
    _set_if_present(call, "direction", direction)
    _set_if_present(call, "from_number", to_e164_or_none(data.get("from_number")) or data.get("from_number"))
    _set_if_present(call, "to_number", to_e164_or_none(data.get("to_number")) or data.get("to_number"))

    status = data.get("call_status")
    if status in STATUS_RANK and STATUS_RANK[status] >= STATUS_RANK.get(call.status, -1):
        call.status = status

    _set_if_present(call, "started_at", _from_ms(data.get("start_timestamp")))
    _set_if_present(call, "ended_at", _from_ms(data.get("end_timestamp")))
    if isinstance(data.get("duration_ms"), int):
        call.duration_ms = data["duration_ms"]
    _set_if_present(call, "disconnection_reason", data.get("disconnection_reason"))

    # transcript_updated carries partial snapshots; once the call has ended, only the final
    # transcript of call_ended/call_analyzed may replace what we hold.
    final = event_name in ("call_ended", "call_analyzed") or data.get("call_status") == "ended"
    if final or STATUS_RANK.get(call.status, 0) < STATUS_RANK["ended"]:
        _set_if_present(call, "transcript", data.get("transcript"))
        _set_if_present(call, "transcript_object", data.get("transcript_object"))
        _set_if_present(call, "transcript_with_tool_calls", data.get("transcript_with_tool_calls"))

    analysis = data.get("call_analysis")
    if isinstance(analysis, dict) and analysis:
        call.call_analysis = analysis
        _set_if_present(call, "summary", analysis.get("call_summary"))
        _set_if_present(call, "user_sentiment", analysis.get("user_sentiment"))
        if isinstance(analysis.get("call_successful"), bool):
            call.call_successful = analysis["call_successful"]
        if isinstance(analysis.get("in_voicemail"), bool):
            call.in_voicemail = analysis["in_voicemail"]
        _set_if_present(call, "custom_analysis_data", analysis.get("custom_analysis_data"))

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
        if isinstance(cost.get("combined_cost"), int | float):
            call.combined_cost_cents = cost["combined_cost"]

    if not call.ghl_contact_id and isinstance(call.dynamic_variables.get("contact_id"), str):
        call.ghl_contact_id = call.dynamic_variables["contact_id"][:64]
    if call.agent_id is None and call.retell_agent_id:
        agents = Agent.objects.select_related("location")
        call.agent = agents.filter(retell_agent_id=call.retell_agent_id).first()
    if call.location_id is None and call.agent is not None and call.agent.location_id:
        call.location_id = call.agent.location_id
    if call.agent is None and call.ghl_sync_status == Call.SyncStatus.PENDING:
        call.ghl_sync_status = Call.SyncStatus.SKIPPED  # no agent configured: nothing will sync


def _set_if_present(obj, field, value):
    """Assign only real values: a later, poorer event (None, "", {}, []) never wipes data."""
    if value in (None, "", [], {}):
        return
    if isinstance(value, str):
        max_length = getattr(obj._meta.get_field(field), "max_length", None)
        value = value[:max_length] if max_length else value
    setattr(obj, field, value)


def _from_ms(value):
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
