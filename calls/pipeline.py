"""Post-call sync: turn stored call events into GHL side effects (outbox tasks) and perform them.

Per call, at most one task of each kind exists (unique dedupe key). Each task computes what GHL
should hold from the Call as it is when the task runs and remembers what it already applied, so
duplicates, reordering and retries all converge on the same result: one note (created, then
updated with the analysis), tags added once, one workflow enrolment.
"""

import hashlib
import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from calls import outbox
from calls.models import Call, CallEvent, GhlSyncTask
from calls.notes import build_note_body
from integrations.errors import NotFound
from integrations.models import GhlLocation
from integrations.routing import forget_cached_contact

log = logging.getLogger(__name__)

NOTE_EVENTS = ("call_ended", "call_analyzed")
OUTCOME_TAGS = {True: "call-successful", False: "call-failed"}
# A call object fetched from the API by `sync_retell_calls`, stored as a CallEvent of this name. It
# stands for the call_ended / call_analyzed deliveries we missed (see `events_of`).
RECONCILED_EVENT = "reconciled"
FINAL_STATUSES = ("ended", "not_connected", "error")
# An event still "received" this long after it arrived lost its queue hand-off (see process_stalled_events).
STALLED_AFTER = timedelta(minutes=10)
STALLED_WINDOW = timedelta(days=1)  # older ones are left to `backfill_ghl_notes` (keeps the query cheap)


class NoContact(Exception):
    """The call has no GHL contact and the agent is not allowed to create one."""


def enqueue_event_processing(event):
    """After the delivery commits, process it on the queue (only events some agent acts on).

    `save=False`: django-q2 keeps no Success row for it (failures are still kept). The event's own
    status records the outcome, and with a save limit set, saving each success made django-q2 load
    and unpickle every stored success to prune them: most of the workers' CPU under load.
    """
    from retellghl.queue import enqueue

    # robust: the event is committed by now, so a broker outage (Redis down) must not turn the answer
    # into a 5xx; the error is logged and process_stalled_events picks the event up later.
    transaction.on_commit(
        lambda: enqueue("calls.pipeline.process_call_event", event.pk, group="events", save=False),
        robust=True,
    )


def process_call_event(event_id, *, now=None):
    """Create or refresh the outbox tasks an event calls for, and queue them."""
    now = now or timezone.now()
    event = CallEvent.objects.select_related("call__agent").get(pk=event_id)
    call, agent = event.call, event.call.agent if event.call else None
    acted_on = [name for name in events_of(event) if agent is not None and agent.acts_on(name)]
    if call is None or agent is None or not acted_on:
        reason = "no call" if call is None else "no agent configured" if agent is None else "not acted on"
        _finish_event(event, CallEvent.Status.IGNORED, reason, now)
        return []

    kinds = dict.fromkeys(kind for name in acted_on for kind in tasks_for_event(agent, name))
    tasks = ensure_call_tasks(call, list(kinds), now=now)
    _finish_event(event, CallEvent.Status.PROCESSED, "", now)
    return tasks


def process_stalled_events(*, now, limit=500):
    """Process events stored but never processed; run by the outbox sweeper every minute.

    An event's processing can be lost after its delivery was acknowledged: the broker was down at
    commit, or a worker died mid-task (django-q2 re-runs nothing: max_attempts=1). Retell's retry is
    then a duplicate and is not queued again, so without this the call would never reach GHL.
    Processing twice is harmless (tasks are per call and kind and remember what they did), and
    STALLED_AFTER leaves events that are merely waiting in a busy queue to the workers.
    """
    stalled = CallEvent.objects.filter(
        status=CallEvent.Status.RECEIVED,
        received_at__gte=now - STALLED_WINDOW,
        received_at__lt=now - STALLED_AFTER,
    )
    for event_id in stalled.order_by("pk").values_list("pk", flat=True)[:limit]:
        try:
            process_call_event(event_id, now=now)
        except Exception as exc:  # do not retry a broken event every minute: show it in the admin
            log.exception("stalled call event %s could not be processed", event_id)
            _finish_event(CallEvent(pk=event_id), CallEvent.Status.FAILED, str(exc)[:2000], now)


def events_of(event):
    """The webhook events a stored delivery stands for: itself, or for a reconciled call object the
    call_ended / call_analyzed deliveries its data proves happened."""
    if event.event != RECONCILED_EVENT:
        return [event.event]
    return events_implied_by((event.payload or {}).get("call") or {})


def events_implied_by(data):
    """["call_ended"] for a finished Retell call object, plus "call_analyzed" once it has an analysis."""
    names = []
    if data.get("call_status") in FINAL_STATUSES:
        names.append("call_ended")
    if isinstance(data.get("call_analysis"), dict) and data["call_analysis"]:
        names.append("call_analyzed")
    return names


def note_events(*, status, ended_at, analysed):
    """The note events a stored call has seen, judged from its data (used by the note backfill)."""
    names = []
    if status in FINAL_STATUSES or ended_at is not None:
        names.append("call_ended")
    if analysed:
        names.append("call_analyzed")
    return names


def agent_wants_note(agent, event_names):
    """Would the live pipeline write a note for these events of this agent's call?"""
    return agent is not None and any(
        agent.acts_on(name) and GhlSyncTask.Kind.NOTE in tasks_for_event(agent, name) for name in event_names
    )


def ensure_call_tasks(call, kinds, *, now, enqueue=True):
    """Create the call's outbox tasks of these kinds if missing and make them due now.

    The one way tasks come to exist, for live webhooks and for the backfill alike, so both converge
    on the same rows (one per call and kind; the note task remembers the GHL note it wrote). With
    `enqueue`, the tasks are handed to the django-q2 workers after commit; without, the caller runs
    them (`outbox.run_task`). A task that is running is flagged to run once more instead.
    """
    with transaction.atomic():
        tasks = [_task(call, kind, now) for kind in kinds]
        queued = [task.pk for task in tasks if outbox.request_run(task, now=now)]
        if enqueue:
            outbox.enqueue(queued)
    outbox.refresh_call_sync_status(call.pk)
    return tasks


def tasks_for_event(agent, event_name):
    """The kinds of side effect an event triggers for this agent.

    The note follows every note event (created on the first, updated on the next). Tags, workflow
    and custom fields wait for the agent's last event (call_analyzed when it processes that, so
    outcome tags know the outcome), whichever order the events arrive in.
    """
    kinds = []
    if event_name in NOTE_EVENTS and (agent.sync_transcript_note or agent.sync_summary_note):
        kinds.append(GhlSyncTask.Kind.NOTE)
    final_event = "call_analyzed" if agent.acts_on("call_analyzed") else "call_ended"
    if event_name == final_event:
        if agent.post_call_tags or agent.tag_call_outcome:
            kinds.append(GhlSyncTask.Kind.TAGS)
        if agent.workflow_id:
            kinds.append(GhlSyncTask.Kind.WORKFLOW)
        if agent.analysis_custom_fields:
            kinds.append(GhlSyncTask.Kind.CUSTOM_FIELDS)
    return kinds


def _task(call, kind, now):
    location = call.location or _location_for(call)
    task, _ = GhlSyncTask.objects.get_or_create(
        dedupe_key=f"call:{call.call_id}:{kind}",
        defaults={"call": call, "kind": kind, "location": location, "next_attempt_at": now},
    )
    return task


def _finish_event(event, status, error, now):
    CallEvent.objects.filter(pk=event.pk).update(status=status, error=error, processed_at=now)


# --- Performing tasks (called by calls.outbox.run_task) -----------------------------------------------


def perform_task(task):
    """Do one task's side effect in GHL. Returns {"ghl_id": ...}; raises the clients' typed errors."""
    call = task.call
    location = task.location or _location_for(call)
    client = ghl_client_for(location)
    try:
        contact_id = resolve_contact(call, client)
    except NoContact as exc:
        Call.objects.filter(pk=call.pk).update(ghl_sync_error=str(exc))
        task.payload["skipped"] = "no_contact"
        return {}
    task.payload.pop("skipped", None)  # the contact exists now (e.g. a backfill after it was created)
    task.payload["contact_id"] = contact_id
    return PERFORMERS[task.kind](task, call, client, contact_id)


_shared = threading.local()


@contextmanager
def shared_ghl_clients():
    """Within this block, tasks of one location share one throttled GhlClient (per thread).

    A client paces itself by the rate-limit headers of its last response; a new client per task
    would forget them. Long sequential runs (the note backfill) share clients so the burst budget
    GHL reports while writing one note paces the next. Nested blocks reuse the outer clients.
    """
    outer = getattr(_shared, "clients", None)
    _shared.clients = {} if outer is None else outer
    try:
        yield _shared.clients
    finally:
        _shared.clients = outer


def ghl_client_for(location):
    """A throttled client for background work: shared inside `shared_ghl_clients()`, else new."""
    clients = getattr(_shared, "clients", None)
    if clients is None:
        return location.client(throttle=True)
    key = (location.location_id, location.api_token)  # a new token (edited in the admin) → a new client
    if key not in clients:
        clients[key] = location.client(throttle=True)
    return clients[key]


def _location_for(call):
    if call.agent and call.agent.location_id:
        return call.agent.location
    return GhlLocation.objects.default()


def resolve_contact(call, client):
    """The call's GHL contact: the one Retell told us, else found by phone, else created if allowed."""
    if call.ghl_contact_id:
        return call.ghl_contact_id
    phone = call.caller_number
    if not phone or call.call_type == "web_call":
        raise NoContact("web call: no phone number to match")
    contact = client.find_contact_by_phone(phone)
    if contact is None:
        if not (call.agent and call.agent.create_unknown_contacts):
            raise NoContact(f"no GHL contact with phone {phone}")
        # Upsert, not create: two tasks of one call may race here, and GHL dedupes upserts by phone.
        contact, _ = client.upsert_contact(_new_contact_fields(call, phone))
        if call.location is not None:
            forget_cached_contact(call.location, phone)  # inbound routing must not keep "unknown"
    # Conditional update: whoever stored a contact first wins, the others adopt it.
    Call.objects.filter(pk=call.pk, ghl_contact_id="").update(ghl_contact_id=contact["id"])
    call.ghl_contact_id = Call.objects.values_list("ghl_contact_id", flat=True).get(pk=call.pk)
    return call.ghl_contact_id


def _new_contact_fields(call, phone):
    variables = {**call.dynamic_variables, **call.collected_dynamic_variables}
    fields = {"phone": phone, "source": "AI phone call"}
    name = str(variables.get("customer_name") or "").strip()
    first, _, last = name.partition(" ")
    if variables.get("first_name") or first:
        fields["firstName"] = str(variables.get("first_name") or first)
    if last:
        fields["lastName"] = last
    return fields


def perform_note(task, call, client, contact_id):
    """Write the call's one note: create it, then update it in place. Records what it did in
    `payload["last_action"]` (created, adopted, updated, unchanged) for operators and the backfill."""
    body = build_note_body(call)
    digest = hashlib.sha256(body.encode()).hexdigest()
    if task.ghl_id and task.payload.get("body_sha256") == digest:
        task.payload["last_action"] = "unchanged"
        return {"ghl_id": task.ghl_id}  # GHL already holds exactly this
    action = "updated"
    if task.ghl_id:
        try:
            client.update_note(contact_id, task.ghl_id, body)
        except NotFound:
            task.ghl_id = ""  # someone deleted the note in GHL: write it again
    if not task.ghl_id:
        if task.attempts > 1 or task.payload.get("create_started"):
            # An earlier attempt may have created the note and lost the answer (timeout, crash,
            # Ctrl-C of a backfill): adopt it instead of writing a second one.
            task.ghl_id = _find_note_for_call(client, contact_id, call.call_id)
        if task.ghl_id:
            client.update_note(contact_id, task.ghl_id, body)
            action = "adopted"
        else:
            # Remember the attempt before sending it: attempts are reset when a task is re-queued, so
            # this flag is what tells the next run to look for the note before creating another.
            task.payload["create_started"] = True
            GhlSyncTask.objects.filter(pk=task.pk).update(payload=task.payload)
            task.ghl_id = client.add_note(contact_id, body)["id"]
            # Record the id at once: a crash before the task finishes must not create a second note.
            GhlSyncTask.objects.filter(pk=task.pk).update(ghl_id=task.ghl_id)
            task.payload.pop("create_started")
            action = "created"
    task.payload["body_sha256"] = digest
    task.payload["last_action"] = action
    return {"ghl_id": task.ghl_id}


def _find_note_for_call(client, contact_id, call_id):
    marker = f"Call ID: {call_id}"
    for note in client.list_notes(contact_id):
        if marker in (note.get("body") or ""):
            return note.get("id", "")
    return ""


def desired_tags(call):
    agent = call.agent
    tags = list(agent.post_call_tags or [])
    if agent.tag_call_outcome and call.call_successful is not None:
        tags.append(OUTCOME_TAGS[call.call_successful])
    return [str(tag) for tag in tags if str(tag).strip()]


def perform_tags(task, call, client, contact_id):
    applied = task.payload.get("applied", [])
    missing = [tag for tag in desired_tags(call) if tag not in applied]
    if missing:
        client.add_tags(contact_id, missing)
        task.payload["applied"] = applied + missing
    return {}


def perform_workflow(task, call, client, contact_id):
    workflow_id = call.agent.workflow_id
    if task.payload.get("enrolled") != workflow_id:
        client.add_to_workflow(contact_id, workflow_id)
        task.payload["enrolled"] = workflow_id
    return {"ghl_id": workflow_id}


ANALYSIS_VALUES = ("call_summary", "user_sentiment", "call_successful", "in_voicemail")


def custom_field_values(call):
    """GHL custom field id → value, from the agent's mapping (e.g. {"cf_LastOutcome": "call_summary"})."""
    analysis = call.call_analysis or {}
    custom = call.custom_analysis_data or {}
    values = {}
    for field_id, source in (call.agent.analysis_custom_fields or {}).items():
        if isinstance(source, str) and source.startswith("custom:"):
            value = custom.get(source.removeprefix("custom:"))
        elif source in ANALYSIS_VALUES:
            value = analysis.get(source)
        else:
            continue
        if value is not None:
            values[field_id] = value if isinstance(value, str) else str(value).lower()
    return values


def perform_custom_fields(task, call, client, contact_id):
    values = custom_field_values(call)
    pending = {k: v for k, v in values.items() if task.payload.get("applied", {}).get(k) != v}
    if pending:
        fields = [{"id": field_id, "field_value": value} for field_id, value in sorted(pending.items())]
        client.update_contact(contact_id, {"customFields": fields})
        task.payload["applied"] = {**task.payload.get("applied", {}), **pending}
    return {}


PERFORMERS = {
    GhlSyncTask.Kind.NOTE: perform_note,
    GhlSyncTask.Kind.TAGS: perform_tags,
    GhlSyncTask.Kind.WORKFLOW: perform_workflow,
    GhlSyncTask.Kind.CUSTOM_FIELDS: perform_custom_fields,
}
