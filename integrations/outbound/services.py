"""Accepting GHL workflow requests for outbound calls, and placing them through Retell.

The life of a request (one `OutboundCallRequest` row, written before anything is dialled):

    accepted ──► limited                       (daily limit per contact reached: nobody is dialled)
       │
       ├──────► scheduled ──(window opens)──┐  (outside the calling window: a django-q2 ONCE schedule)
       └──────► queued ─────────────────────┴─► dialing ──► placed   (Retell 201; the Call row exists)
                  ▲                                │  └───► failed   (Retell 4xx, or retries exhausted)
                  └──── Retell 429 / 5xx / timeout ┘

Never dialling twice rests on three locks, each covering what the others cannot:
- a re-delivery is recognised by its fingerprint (campaign, contact, workflow, customData): it is the
  same request while the first is still open, or within the campaign's re-delivery window;
- the check runs under a row lock on the campaign, and the database allows one open request per
  fingerprint (partial unique constraint), so concurrent deliveries cannot both pass it;
- each attempt claims the request with a conditional UPDATE (a late or duplicated django-q2 run finds
  nothing to claim), and every attempt of one request sends Retell the same `idempotency_key`, so a
  retry after a timeout that did reach Retell returns the call already placed instead of a second one.
"""

import datetime as dt
import hashlib
import json
import logging
import uuid
import zoneinfo
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule as q_schedule

from calls.models import Call
from integrations.errors import NotConfigured, PermanentError, RetryableError
from integrations.models import OutboundCallRequest, OutboundCampaign
from integrations.phones import InvalidPhoneNumber, to_e164
from integrations.retell import RetellClient
from retellghl.queue import enqueue

logger = logging.getLogger(__name__)

Status = OutboundCallRequest.Status
DIAL_TASK = "integrations.outbound.services.dial_request"
MAX_ATTEMPTS = 5
# Seconds to wait after attempt 1, 2, 3, 4. They add up to 31 min, inside the 1 h for which Retell
# remembers an idempotency_key: a late retry of a call that did go through is still recognised.
RETRY_DELAYS = [30, 120, 480, 1200]
# An attempt still "dialing" after this long died mid-flight (worker killed): an operator may retry it.
STUCK_AFTER = dt.timedelta(minutes=5)
_MAX_ERROR_CHARS = 2000
MAX_CONTACT_ID = 64  # OutboundCallRequest.ghl_contact_id; GHL's own ids have 20 characters


class InvalidPayload(ValueError):
    """The webhook body cannot become a call; `field` names the payload field at fault."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Lead:
    """What we take from one GHL workflow payload."""

    contact_id: str
    to_number: str
    workflow_id: str
    dynamic_variables: dict
    fingerprint: str


# --- reading the GHL payload -------------------------------------------------------------------


def lead_from_payload(campaign, payload):
    """Validate a workflow webhook body (REFERENCE.md §7) for `campaign`; raise InvalidPayload."""
    try:
        to_number = to_e164(payload.get("phone"))
    except InvalidPhoneNumber as exc:
        raise InvalidPayload("phone", f"phone: {exc}") from None

    contact_id = _text(payload.get("contact_id")).strip()
    if len(contact_id) > MAX_CONTACT_ID:
        raise InvalidPayload(
            "contact_id", f"contact_id is not a GHL contact id (over {MAX_CONTACT_ID} characters)."
        )
    custom_data = payload.get("customData")
    if custom_data is None:
        custom_data = {}
    if not isinstance(custom_data, dict):
        raise InvalidPayload("customData", "customData must be a JSON object.")

    # A contact id only means something in its own location: a workflow of another sub-account posting
    # here would have its call notes sent to a contact id this location does not know.
    location = campaign.effective_location
    sent_location = _location_id(payload)
    if sent_location and location and sent_location != location.location_id:
        raise InvalidPayload(
            "location.id",
            f"location.id {sent_location!r} is not this campaign's GHL location ({location.location_id}).",
        )

    workflow = payload.get("workflow")
    workflow_id = _text(workflow.get("id")) if isinstance(workflow, dict) else ""
    return Lead(
        contact_id=contact_id,
        to_number=to_number,
        workflow_id=workflow_id,
        dynamic_variables=dynamic_variables_for(campaign, payload, contact_id=contact_id),
        fingerprint=_fingerprint(campaign, contact_id or to_number, workflow_id, custom_data),
    )


def dynamic_variables_for(campaign, payload, *, contact_id):
    """Retell dynamic variables (all strings): the defaults, customData, then the campaign's mapping."""
    first_name = _text(payload.get("first_name")).strip()
    last_name = _text(payload.get("last_name")).strip()
    full_name = _text(payload.get("full_name")).strip() or " ".join(filter(None, [first_name, last_name]))
    variables = {"first_name": first_name, "customer_name": full_name}
    custom_data = payload.get("customData")
    if campaign.include_custom_data and isinstance(custom_data, dict):
        variables.update({str(key): _text(value) for key, value in custom_data.items()})
    for path, name in (campaign.variable_mapping or {}).items():
        variables[name] = _text(_lookup(payload, path))
    # contact_id always wins: the post-call pipeline finds the GHL contact by it.
    return {"contact_id": contact_id, **{k: v for k, v in variables.items() if k != "contact_id"}}


def _text(value):
    """A dynamic variable value: Retell rejects the whole call if one value is not a string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _lookup(payload, path):
    """`payload[path]`, or the dotted path walked through nested objects; None when absent."""
    if path in payload:
        return payload[path]
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _location_id(payload):
    location = payload.get("location")
    if isinstance(location, dict) and location.get("id"):
        return _text(location["id"])
    return _text(payload.get("locationId") or payload.get("location_id"))


def _fingerprint(campaign, contact_key, workflow_id, custom_data):
    """What makes two deliveries "the same request". The rest of the payload is left out on purpose:
    GHL renders it again on a retry and it may differ (a tag added in between) without being a new ask.
    """
    canonical = json.dumps(
        [campaign.pk, contact_key, workflow_id, custom_data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- accepting a request -----------------------------------------------------------------------


def outbound_request_accept(*, campaign, payload):
    """Record one webhook delivery and act on it. Returns (request, created).

    `created` is False for a re-delivery: `request` is then the earlier request, untouched. A new
    request inside the calling window is dialled before this returns (so a Retell refusal can be
    answered to GHL); outside it is scheduled for the next opening. Raises InvalidPayload.
    """
    lead = lead_from_payload(campaign, payload)
    try:
        request, created = _record_request(campaign, lead, payload)
    except IntegrityError:
        # Only reachable when an operator's retry re-opened a request with this fingerprint meanwhile:
        # the constraint held, and that open request is the answer.
        earlier = _open_request(campaign, lead.fingerprint)
        if earlier is None:
            raise
        return earlier, False
    if created and request.status == Status.QUEUED:
        dial_request(request.pk)
        request.refresh_from_db()
    return request, created


@transaction.atomic
def _record_request(campaign, lead, payload):
    # Serialise deliveries per campaign, so the duplicate check and the daily count below see every
    # request accepted before this one: a row lock on PostgreSQL; on SQLite every write transaction
    # already starts with the database lock (IMMEDIATE mode). The dial itself happens after commit.
    campaign = (
        OutboundCampaign.objects.select_for_update(of=("self",))
        .select_related("agent", "location")
        .get(pk=campaign.pk)
    )
    now = timezone.now()
    earlier = _earlier_same_request(campaign, lead.fingerprint, now)
    if earlier is not None:
        return earlier, False

    fields = {"status": Status.QUEUED, "scheduled_for": now, "last_error": ""}
    cap = campaign.max_calls_per_contact_per_day
    window = campaign.calling_window
    if cap is not None and _requests_today(campaign, lead, now) >= cap:
        fields = {
            "status": Status.LIMITED,
            "scheduled_for": None,
            "last_error": f"Daily limit reached: {cap} call(s) per contact per day "
            f"({campaign.timezone_name}).",
        }
    elif window is not None and (opening := window.next_opening(now)) != now:
        fields = {"status": Status.SCHEDULED, "scheduled_for": opening, "last_error": ""}

    request = OutboundCallRequest.objects.create(
        campaign=campaign,
        fingerprint=lead.fingerprint,
        idempotency_key=_new_idempotency_key(),
        ghl_contact_id=lead.contact_id,
        ghl_workflow_id=lead.workflow_id[:64],
        to_number=lead.to_number,
        payload=payload,
        dynamic_variables=lead.dynamic_variables,
        **fields,
    )
    if request.status == Status.SCHEDULED:
        _schedule_attempt(request, request.scheduled_for)
    logger.info("Outbound request %s accepted for campaign %s: %s", request.pk, campaign.slug, request.status)
    return request, True


def _earlier_same_request(campaign, fingerprint, now):
    """The request this delivery repeats: one still open, or one accepted within the re-delivery window."""
    since = now - dt.timedelta(minutes=campaign.redelivery_window_minutes)
    return (
        OutboundCallRequest.objects.filter(campaign=campaign, fingerprint=fingerprint)
        .filter(Q(status__in=OutboundCallRequest.OPEN_STATUSES) | Q(created_at__gte=since))
        .order_by("-created_at")
        .first()
    )


def _open_request(campaign, fingerprint):
    return OutboundCallRequest.objects.filter(
        campaign=campaign, fingerprint=fingerprint, status__in=OutboundCallRequest.OPEN_STATUSES
    ).first()


def _requests_today(campaign, lead, now):
    """Requests to this contact (by GHL id or by number) accepted since local midnight that may call."""
    tz = zoneinfo.ZoneInfo(campaign.timezone_name)
    midnight = dt.datetime.combine(now.astimezone(tz).date(), dt.time.min, tzinfo=tz)
    same_contact = Q(to_number=lead.to_number)
    if lead.contact_id:
        same_contact |= Q(ghl_contact_id=lead.contact_id)
    return (
        OutboundCallRequest.objects.filter(
            campaign=campaign, created_at__gte=midnight, status__in=OutboundCallRequest.COUNTED_STATUSES
        )
        .filter(same_contact)
        .count()
    )


def _new_idempotency_key():
    return f"ghl-outbound-{uuid.uuid4().hex}"


def _schedule_attempt(request, when):
    """A django-q2 ONCE schedule running `dial_request(request.pk)` at `when`. Commits with the caller."""
    q_schedule(DIAL_TASK, request.pk, schedule_type=Schedule.ONCE, next_run=when)


# --- placing the call (the django-q2 task) -----------------------------------------------------


def dial_request(request_id):
    """Place the call for one waiting request (the queued task, and the first attempt inline).

    Safe to run late or twice: only the run that claims the request acts, and it re-checks the campaign
    and the calling window first, since hours may have passed since the request was accepted.
    Returns the request's status.
    """
    now = timezone.now()
    claimed = OutboundCallRequest.objects.filter(
        pk=request_id, status__in=[Status.SCHEDULED, Status.QUEUED]
    ).update(status=Status.DIALING, updated_at=now)
    if not claimed:
        current = OutboundCallRequest.objects.filter(pk=request_id).values_list("status", flat=True).first()
        logger.info("Outbound request %s not dialled: it is %s", request_id, current or "gone")
        return current

    request = OutboundCallRequest.objects.select_related("campaign__agent", "campaign__location").get(
        pk=request_id
    )
    campaign = request.campaign
    if not campaign.enabled:
        _save(request, status=Status.CANCELLED, scheduled_for=None, last_error="The campaign was disabled.")
        return request.status
    window = campaign.calling_window
    if window is not None and (opening := window.next_opening(now)) != now:
        # Ran outside the window (a worker that was down, or the window was edited): wait again.
        with transaction.atomic():
            _save(request, status=Status.SCHEDULED, scheduled_for=opening)
            _schedule_attempt(request, opening)
        return request.status
    _place_call(request, now)
    return request.status


def _place_call(request, now):
    campaign, agent = request.campaign, request.campaign.agent
    request.attempts += 1
    _save(request, attempts=request.attempts, last_attempt_at=now)
    try:
        answer = RetellClient().create_phone_call(
            from_number=campaign.from_number,
            to_number=request.to_number,
            override_agent_id=agent.retell_agent_id,
            override_agent_version=campaign.effective_agent_version,
            dynamic_variables=request.dynamic_variables,
            metadata=call_metadata(request),
            idempotency_key=request.idempotency_key,
        )
    except RetryableError as exc:
        _retry_later(request, exc, now, f"Retell {_where(exc)}: {_retell_message(exc)}")
        return
    except PermanentError as exc:
        if exc.status is not None and 200 <= exc.status < 300:
            # Retell accepted the request but its answer was unreadable: the call may be ringing. A
            # retry with the same idempotency_key gets that call back; failing would let an operator
            # "Retry selected" with a fresh key and call the person a second time.
            _retry_later(request, exc, now, f"Retell HTTP {exc.status}: {exc.message}")
            return
        _save(
            request,
            status=Status.FAILED,
            scheduled_for=None,
            last_error=_retell_message(exc),
            retell_status=exc.status,
        )
        logger.warning("Outbound request %s refused by Retell: %s", request.pk, request.last_error)
        return
    except (NotConfigured, InvalidPhoneNumber) as exc:  # RETELL_API_KEY unset, or a bad campaign number
        _save(request, status=Status.FAILED, scheduled_for=None, last_error=str(exc), retell_status=None)
        logger.warning("Outbound request %s cannot be dialled: %s", request.pk, exc)
        return

    call_id = _text(answer.get("call_id")).strip()
    if not call_id:
        _save(
            request, status=Status.FAILED, scheduled_for=None, last_error="Retell answered without a call_id."
        )
        return
    call = record_outbound_call(request, answer)
    _save(
        request,
        status=Status.PLACED,
        scheduled_for=None,
        last_error="",
        retell_status=None,
        retell_call_id=call_id,
        call=call,
    )
    logger.info("Outbound request %s placed call %s", request.pk, call_id)


def _retry_later(request, exc, now, error):
    """Queue another attempt after the backoff (never sooner than Retell asked), or fail at the last one."""
    if request.attempts >= MAX_ATTEMPTS:
        _save(request, status=Status.FAILED, scheduled_for=None, last_error=error, retell_status=exc.status)
        logger.warning("Outbound request %s failed after %s attempts: %s", request.pk, MAX_ATTEMPTS, error)
        return
    delay = max(RETRY_DELAYS[request.attempts - 1], exc.retry_after or 0)
    retry_at = now + dt.timedelta(seconds=delay)
    with transaction.atomic():
        _save(
            request, status=Status.QUEUED, scheduled_for=retry_at, last_error=error, retell_status=exc.status
        )
        _schedule_attempt(request, retry_at)
    logger.info("Outbound request %s: %s; retrying at %s", request.pk, error, retry_at.isoformat())


def _where(exc):
    return f"HTTP {exc.status}" if exc.status else "unreachable"


def call_metadata(request):
    """Retell call metadata: comes back on every webhook of the call, so it names where it came from."""
    location = request.campaign.effective_location
    metadata = {
        "source": "ghl_outbound",
        "campaign": request.campaign.slug,
        "outbound_request_id": request.pk,
        "ghl_contact_id": request.ghl_contact_id,
        "ghl_location_id": location.location_id if location else "",
        "ghl_workflow_id": request.ghl_workflow_id,
    }
    return {key: value for key, value in metadata.items() if value not in ("", None)}


def record_outbound_call(request, answer):
    """Create (or complete) the Call row for Retell's create-phone-call answer, registered and outbound.

    Retell's own webhooks for the call may have created the row first: then only what is still empty
    is filled in, so nothing the webhook stored is overwritten.
    """
    campaign = request.campaign
    location = campaign.effective_location
    agent_version = answer.get("agent_version")
    values = {
        "agent_id": campaign.agent_id,
        "retell_agent_id": _text(answer.get("agent_id")) or campaign.agent.retell_agent_id,
        "agent_version": (
            agent_version if isinstance(agent_version, int) else campaign.effective_agent_version
        ),
        "agent_name": _text(answer.get("agent_name"))[:200],
        "location_id": location.pk if location else None,
        "call_type": _text(answer.get("call_type")) or "phone_call",
        "direction": Call.Direction.OUTBOUND,
        "from_number": _text(answer.get("from_number")) or campaign.from_number,
        "to_number": _text(answer.get("to_number")) or request.to_number,
        "status": _text(answer.get("call_status")) or Call.Status.REGISTERED,
        "dynamic_variables": request.dynamic_variables,
        "metadata": call_metadata(request),
        "ghl_contact_id": request.ghl_contact_id,
    }
    call, created = Call.objects.get_or_create(call_id=_text(answer["call_id"]), defaults=values)
    if not created:
        missing = [
            name for name, value in values.items() if value not in (None, "", {}) and not getattr(call, name)
        ]
        for name in missing:
            setattr(call, name, values[name])
        if missing:
            call.save(update_fields=[*missing, "updated_at"])
    return call


def _retell_message(exc):
    """Retell's own error message (`{"status": "error", "message": ...}`), else our description."""
    body = exc.body
    if isinstance(body, dict) and body.get("message"):
        message = body["message"]
        message = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    elif isinstance(body, str) and body.strip():
        message = body.strip()
    else:
        message = exc.message
    return message[:_MAX_ERROR_CHARS]


def _save(request, **fields):
    for name, value in fields.items():
        setattr(request, name, value)
    request.save(update_fields=[*fields, "updated_at"])


# --- operator actions --------------------------------------------------------------------------


def outbound_requests_retry(queryset, *, now=None):
    """Admin "Retry selected": queue failed requests, and ones stuck dialing, for an attempt now.

    A failed request gets a fresh idempotency key (Retell may remember the refusal under the old one);
    a stuck one keeps its key, since its lost attempt may have reached Retell. Returns how many were
    queued; requests whose contact already has another open request are left alone.
    """
    now = now or timezone.now()
    queued = 0
    retryable = Q(status=Status.FAILED) | Q(status=Status.DIALING, updated_at__lt=now - STUCK_AFTER)
    for request in queryset.filter(retryable):
        fields = {"status": Status.QUEUED, "scheduled_for": now, "attempts": 0, "updated_at": now}
        if request.status == Status.FAILED:
            fields["idempotency_key"] = _new_idempotency_key()
        try:
            with transaction.atomic():
                same_state = OutboundCallRequest.objects.filter(pk=request.pk, status=request.status)
                claimed = same_state.update(**fields)
                if claimed:
                    transaction.on_commit(lambda pk=request.pk: enqueue(DIAL_TASK, pk))
        except IntegrityError:  # another open request for the same contact and workflow exists
            continue
        queued += claimed
    return queued
