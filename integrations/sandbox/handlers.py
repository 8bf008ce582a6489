"""The GHL sandbox's endpoints: GHL API v2 behaviour we rely on, answered from the sandbox tables.

Each handler takes a parsed `SandboxRequest` (plus path parameters) and returns `(status, json)`, or
raises `GhlError` for GHL's error answers. `adapter.serve` has already matched the route and checked
the bearer token, the `Version` header and the rate limit, and runs each handler in a savepoint.

Where it matters, this follows GHL (REFERENCE.md §6 and GHL's OpenAPI files): request bodies are
whitelisted (an unknown property answers 422 `property X should not exist`), duplicate contacts by
phone or email answer 400 with `meta.contactId`, phones match only exactly as sent (a formatted
number is a different contact), free slots take epoch milliseconds (ISO dates answer 422) over at
most 31 days, and a slot already booked cannot be booked again. Error messages whose exact GHL
wording we could not confirm are marked "wording inferred".
"""

import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.sandbox.models import (
    SandboxAppointment,
    SandboxCalendar,
    SandboxContact,
    SandboxNote,
    SandboxOpportunity,
    SandboxWorkflowEnrolment,
)

# The Version each endpoint group documents. The sandbox checks these on its own rather than
# importing the client's constants, so a wrong constant in the client fails here as it would in GHL.
CONTACTS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"

MAX_SLOT_RANGE = timedelta(days=31)
DUPLICATE_CONTACT = "This location does not allow duplicated contacts."
SLOT_UNAVAILABLE = "The slot you have selected is no longer available."  # wording inferred


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: dict = field(default_factory=dict)  # name → first value
    body: dict = field(default_factory=dict)


class GhlError(Exception):
    """An error answer shaped like GHL's: `{statusCode, message, ...}`."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status = status
        self.payload = {"statusCode": status, "message": message, **extra}


def unprocessable(messages):
    # GHL validates with class-validator: 422 with every problem as a list of strings.
    return GhlError(422, list(messages), error="Unprocessable Entity")


def not_found(what):
    return GhlError(404, f"{what} not found")


def get_or_404(model, pk, what, *, for_update=False):
    """The row, or GHL's 404. `for_update` locks it for a read-modify-write (tags, custom fields)."""
    rows = model.objects.select_for_update() if for_update else model.objects
    try:
        return rows.get(pk=pk)
    except model.DoesNotExist:
        raise not_found(what) from None


def validate(body, *, allowed, required=(), strings=(), booleans=(), arrays=(), numbers=(), enums=None):
    """Reject what GHL's request DTOs reject; None counts as absent (GHL's fields are optional)."""
    errors = [f"property {key} should not exist" for key in body if key not in allowed]
    errors += [f"{key} should not be empty" for key in required if body.get(key) in (None, "")]
    for key in strings:
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append(f"{key} must be a string")
    for key in booleans:
        if body.get(key) is not None and not isinstance(body[key], bool):
            errors.append(f"{key} must be a boolean value")
    for key in arrays:
        if body.get(key) is not None and not isinstance(body[key], list):
            errors.append(f"{key} must be an array")
    for key in numbers:
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            errors.append(f"{key} must be a number conforming to the specified constraints")
    for key, choices in (enums or {}).items():
        if body.get(key) is not None and body[key] not in choices:
            errors.append(f"{key} must be one of the following values: {', '.join(choices)}")
    if errors:
        raise unprocessable(errors)


def ghl_timestamp(moment):
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trace_id():
    return str(uuid.uuid4())


# --- Contacts --------------------------------------------------------------------------------------

# Fields of GHL's CreateContactDto / UpdateContactDto / UpsertContactDto. Update has neither
# locationId nor gender nor companyName, so sending them there answers 422, as in GHL.
CONTACT_FIELDS = frozenset(
    "firstName lastName name email phone address1 city state postalCode website timezone dnd "
    "dndSettings inboundDndSettings tags customFields source dateOfBirth country assignedTo".split()
)
CREATE_CONTACT_FIELDS = CONTACT_FIELDS | {"locationId", "gender", "companyName"}
UPSERT_CONTACT_FIELDS = CREATE_CONTACT_FIELDS | {"createNewIfDuplicateAllowed"}
CONTACT_STRINGS = tuple(
    "firstName lastName name email phone address1 city state postalCode website timezone source "
    "country assignedTo locationId gender companyName".split()
)
# Stored as sent and given back, but nothing in the sandbox acts on them.
CONTACT_ATTRIBUTES = CREATE_CONTACT_FIELDS - frozenset(
    "firstName lastName name email phone timezone dnd tags customFields source locationId".split()
)


def normalize_tags(tags):
    # GHL keeps tags lowercase, so "VIP" and "vip" are one tag.
    seen = []
    for tag in tags:
        tag = tag.strip().lower()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def validate_contact(body, *, allowed, required=()):
    validate(
        body,
        allowed=allowed,
        required=required,
        strings=CONTACT_STRINGS,
        booleans=("dnd", "createNewIfDuplicateAllowed"),
        arrays=("tags", "customFields"),
    )
    errors = []
    if any(not isinstance(tag, str) for tag in body.get("tags") or []):
        errors.append("each value in tags must be a string")
    for item in body.get("customFields") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id") or item.get("key"), str):
            errors.append("each value in customFields must be an object with an id or a key")
            break
    if errors:
        raise unprocessable(errors)


def apply_contact_fields(contact, body):
    """Write GHL contact fields onto `contact` (not saved). `tags` replaces the tags, as in GHL."""
    present = {key: value for key, value in body.items() if value is not None}
    if "firstName" in present or "lastName" in present:
        contact.first_name = present.get("firstName", contact.first_name).strip()
        contact.last_name = present.get("lastName", contact.last_name).strip()
    elif present.get("name"):
        contact.first_name, _, contact.last_name = present["name"].strip().partition(" ")
        contact.last_name = contact.last_name.strip()
    if "email" in present:
        contact.email = present["email"].strip().lower()
    if "phone" in present:
        # Deliberately not normalised: GHL treats "(415) 555-0123" and "+14155550123" as different
        # numbers, which is why our client only ever sends E.164.
        contact.phone = present["phone"].strip()
    if "tags" in present:
        contact.tags = normalize_tags(present["tags"])
    for item in present.get("customFields", []):
        key = item.get("id") or item.get("key")
        contact.custom_fields = {**contact.custom_fields, key: item.get("field_value", item.get("value"))}
    for key, attr in (("timezone", "timezone"), ("source", "source"), ("dnd", "dnd")):
        if key in present:
            setattr(contact, attr, present[key])
    extra = {key: value for key, value in present.items() if key in CONTACT_ATTRIBUTES}
    if extra:
        contact.attributes = {**contact.attributes, **extra}


def find_duplicate(location_id, *, email="", phone="", exclude=None):
    """(contact, matching field) of a contact that already has this email or phone, else (None, None)."""
    others = SandboxContact.objects.filter(location_id=location_id).exclude(pk=exclude)
    if email and (match := others.filter(email=email).first()):
        return match, "email"
    if phone and (match := others.filter(phone=phone).first()):
        return match, "phone"
    return None, None


def save_contact(contact):
    """Save, letting the unique constraints decide duplicates (safe under concurrent requests)."""
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        duplicate, matching = find_duplicate(
            contact.location_id, email=contact.email, phone=contact.phone, exclude=contact.pk
        )
        if duplicate is None:
            raise
        raise GhlError(
            400, DUPLICATE_CONTACT, meta={"contactId": duplicate.pk, "matchingField": matching}
        ) from None


def contact_json(contact):
    data = {
        "id": contact.pk,
        "locationId": contact.location_id,
        "firstName": contact.first_name,
        "lastName": contact.last_name,
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "timezone": contact.timezone,
        "source": contact.source,
    }
    # GHL leaves out fields a contact does not have rather than sending empty strings.
    data = {key: value for key, value in data.items() if value}
    return {
        **data,
        **contact.attributes,
        "tags": list(contact.tags),
        "customFields": [{"id": key, "value": value} for key, value in sorted(contact.custom_fields.items())],
        "dnd": contact.dnd,
        "dateAdded": ghl_timestamp(contact.date_added),
        "dateUpdated": ghl_timestamp(contact.date_updated),
    }


def search_duplicate(request):
    location_id = request.query.get("locationId")
    if not location_id:
        raise unprocessable(["locationId should not be empty"])
    number = (request.query.get("number") or "").strip()
    email = (request.query.get("email") or "").strip().lower()
    contacts = SandboxContact.objects.filter(location_id=location_id)
    found = None
    if number:
        found = contacts.filter(phone=number).first()
    if found is None and email:
        found = contacts.filter(email=email).first()
    return 200, {"contact": contact_json(found) if found else None, "traceId": trace_id()}


def get_contact(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact")
    return 200, {"contact": contact_json(contact), "traceId": trace_id()}


def create_contact(request):
    body = request.body
    validate_contact(body, allowed=CREATE_CONTACT_FIELDS, required=("locationId",))
    contact = SandboxContact(location_id=body["locationId"])
    apply_contact_fields(contact, body)
    save_contact(contact)
    return 201, {"contact": contact_json(contact), "traceId": trace_id()}


def upsert_contact(request):
    """GHL's duplicate rules: match by email first, then by phone; update the match or create."""
    body = request.body
    validate_contact(body, allowed=UPSERT_CONTACT_FIELDS, required=("locationId",))
    location_id = body["locationId"]
    email = (body.get("email") or "").strip().lower()
    phone = (body.get("phone") or "").strip()
    for _attempt in range(2):  # a concurrent upsert may create the match between our look and our insert
        contact, _field = find_duplicate(location_id, email=email, phone=phone)
        created = contact is None
        contact = contact or SandboxContact(location_id=location_id)
        apply_contact_fields(contact, body)
        try:
            save_contact(contact)
        except GhlError:
            if created:
                continue
            raise
        return 200, {"new": created, "contact": contact_json(contact), "traceId": trace_id()}
    raise GhlError(400, DUPLICATE_CONTACT)


def update_contact(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact", for_update=True)
    validate_contact(request.body, allowed=CONTACT_FIELDS)
    apply_contact_fields(contact, request.body)
    save_contact(contact)
    return 200, {"succeded": True, "contact": contact_json(contact)}  # GHL's spelling


def _tags_from(body):
    validate(body, allowed={"tags"}, required=("tags",), arrays=("tags",))
    if any(not isinstance(tag, str) for tag in body["tags"]):
        raise unprocessable(["each value in tags must be a string"])
    return normalize_tags(body["tags"])


def add_tags(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact", for_update=True)
    tags = _tags_from(request.body)
    contact.tags = normalize_tags([*contact.tags, *tags])
    contact.save(update_fields=["tags", "date_updated"])
    return 201, {"tags": contact.tags}


def remove_tags(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact", for_update=True)
    tags = set(_tags_from(request.body))
    contact.tags = [tag for tag in contact.tags if tag not in tags]
    contact.save(update_fields=["tags", "date_updated"])
    return 200, {"tags": contact.tags}


def enrol_in_workflow(request, contact_id, workflow_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact")
    validate(request.body, allowed={"eventStartTime"}, strings=("eventStartTime",))
    SandboxWorkflowEnrolment.objects.create(
        contact=contact, workflow_id=workflow_id, event_start_time=request.body.get("eventStartTime") or ""
    )
    return 200, {"succeded": True}


# --- Notes -----------------------------------------------------------------------------------------

NOTE_FIELDS = {"body", "userId", "title", "color", "pinned"}


def note_json(note):
    data = {
        "id": note.pk,
        "body": note.body,
        "userId": note.user_id or None,
        "dateAdded": ghl_timestamp(note.date_added),
        "contactId": note.contact_id,
    }
    if note.title:
        data["title"] = note.title
    return data


def _validate_note(body, *, creating):
    validate(
        body,
        allowed=NOTE_FIELDS,
        required=("body",) if creating else (),
        strings=("body", "userId", "title", "color"),
        booleans=("pinned",),
    )


def add_note(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact")
    _validate_note(request.body, creating=True)
    note = SandboxNote.objects.create(
        contact=contact,
        body=request.body["body"],
        user_id=request.body.get("userId") or "",
        title=request.body.get("title") or "",
    )
    return 201, {"note": note_json(note)}


def update_note(request, contact_id, note_id):
    note = SandboxNote.objects.filter(pk=note_id, contact_id=contact_id).first()
    if note is None:
        raise not_found("Note")
    _validate_note(request.body, creating=False)
    for key, attr in (("body", "body"), ("userId", "user_id"), ("title", "title")):
        if request.body.get(key) is not None:
            setattr(note, attr, request.body[key])
    note.save()
    return 200, {"note": note_json(note)}


def list_notes(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact")
    return 200, {"notes": [note_json(note) for note in contact.notes.all()]}


# --- Calendars -------------------------------------------------------------------------------------


def _epoch_ms_param(query, name, errors):
    value = query.get(name)
    if value is None or value == "":
        errors.append(f"{name} should not be empty")
    elif not re.fullmatch(r"\d{1,13}", value):
        # GHL takes epoch milliseconds only; ISO dates are refused. (13 digits reach the year 2286.)
        errors.append(f"{name} must be a number conforming to the specified constraints")
    else:
        return int(value)
    return None


def _timezone_param(value, default):
    try:
        return zoneinfo.ZoneInfo(value or default)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise unprocessable(["timezone must be a valid IANA time zone"]) from None  # wording inferred


def free_slot_starts(calendar, start, end, *, exclude=None):
    """The calendar's grid slots in [start, end] that are in the future and not booked."""
    live = calendar.appointments.exclude(status=SandboxAppointment.Status.CANCELLED).exclude(pk=exclude)
    booked = list(
        live.filter(start_time__lt=end + calendar.slot_length, end_time__gt=start).values_list(
            "start_time", "end_time"
        )
    )
    now = timezone.now()
    for slot in calendar.slot_starts(start, end + timedelta(milliseconds=1)):
        slot_end = slot + calendar.slot_length
        if slot > now and not any(b_start < slot_end and b_end > slot for b_start, b_end in booked):
            yield slot


def free_slots(request, calendar_id):
    errors = []
    start_ms = _epoch_ms_param(request.query, "startDate", errors)
    end_ms = _epoch_ms_param(request.query, "endDate", errors)
    if errors:
        raise unprocessable(errors)
    calendar = get_or_404(SandboxCalendar, calendar_id, "Calendar")
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    if end < start:
        raise unprocessable(["endDate must be after startDate"])  # wording inferred
    if end - start > MAX_SLOT_RANGE:
        raise unprocessable(["Date range cannot be more than 31 days"])  # wording inferred
    tz = _timezone_param(request.query.get("timezone"), calendar.timezone)
    days = {}
    for slot in free_slot_starts(calendar, start, end):
        local = slot.astimezone(tz)
        days.setdefault(local.date().isoformat(), {"slots": []})["slots"].append(local.isoformat())
    return 200, {**days, "traceId": trace_id()}


# --- Appointments ----------------------------------------------------------------------------------

# GHL's AppointmentEditSchema; the create schema adds locationId and contactId.
APPOINTMENT_EDIT_FIELDS = frozenset(
    "title meetingLocationType meetingLocationId overrideLocationConfig appointmentStatus "
    "assignedUserId description address ignoreDateRange toNotify ignoreFreeSlotValidation rrule "
    "calendarId startTime endTime".split()
)
APPOINTMENT_CREATE_FIELDS = APPOINTMENT_EDIT_FIELDS | {"locationId", "contactId"}
APPOINTMENT_ATTRIBUTES = ("meetingLocationType", "meetingLocationId", "description", "address", "rrule")
MEETING_LOCATION_TYPES = ("custom", "zoom", "gmeet", "phone", "address", "ms_teams", "google")


def _validate_appointment(body, *, allowed, required=()):
    validate(
        body,
        allowed=allowed,
        required=required,
        strings=tuple(
            "title assignedUserId description address rrule calendarId startTime endTime locationId "
            "contactId meetingLocationId".split()
        ),
        booleans=("overrideLocationConfig", "ignoreDateRange", "toNotify", "ignoreFreeSlotValidation"),
        enums={
            "appointmentStatus": SandboxAppointment.Status.values,
            "meetingLocationType": MEETING_LOCATION_TYPES,
        },
    )


def _parse_time(value, name):
    try:
        moment = datetime.fromisoformat(value)
        moment.astimezone(UTC)  # years near 1 or 9999 cannot be converted: refuse them here
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.utcoffset() is None:
        # The sandbox insists on an offset: a bare local time would be read in some timezone we
        # would have to guess, and our client always sends GHL's own slot strings back.
        raise unprocessable([f"{name} must be a valid ISO 8601 date string with a UTC offset"])
    return moment


def _ensure_bookable(calendar, start, end, *, check_slots, exclude=None):
    if end <= start:
        raise unprocessable(["endTime must be after startTime"])  # wording inferred
    if not check_slots:
        return  # ignoreFreeSlotValidation: GHL books anything (the unique slot constraint still holds)
    free = start in set(free_slot_starts(calendar, start, start, exclude=exclude))
    overlapping = (
        calendar.appointments.exclude(status=SandboxAppointment.Status.CANCELLED)
        .exclude(pk=exclude)
        .filter(start_time__lt=end, end_time__gt=start)
        .exists()
    )
    if not free or overlapping:
        raise GhlError(400, SLOT_UNAVAILABLE)


def _save_appointment(appointment):
    try:
        with transaction.atomic():
            appointment.save()
    except IntegrityError:
        # Another request booked the slot between our check and our insert.
        raise GhlError(400, SLOT_UNAVAILABLE) from None


def appointment_json(appointment):
    tz = appointment.calendar.tz
    data = {
        "id": appointment.pk,
        "calendarId": appointment.calendar_id,
        "locationId": appointment.location_id,
        "contactId": appointment.contact_id,
        "startTime": appointment.start_time.astimezone(tz).isoformat(),
        "endTime": appointment.end_time.astimezone(tz).isoformat(),
        "title": appointment.title,
        "appointmentStatus": appointment.status,
        "isRecurring": False,
    }
    if appointment.assigned_user_id:
        data["assignedUserId"] = appointment.assigned_user_id
    return {**data, **appointment.attributes}


def create_appointment(request):
    body = request.body
    _validate_appointment(
        body,
        allowed=APPOINTMENT_CREATE_FIELDS,
        required=("calendarId", "locationId", "contactId", "startTime"),
    )
    calendar = get_or_404(SandboxCalendar, body["calendarId"], "Calendar")
    if calendar.location_id != body["locationId"]:
        raise GhlError(400, "Calendar does not belong to this location")  # wording inferred
    contact = get_or_404(SandboxContact, body["contactId"], "Contact")
    start = _parse_time(body["startTime"], "startTime")
    end = _parse_time(body["endTime"], "endTime") if body.get("endTime") else start + calendar.slot_length
    _ensure_bookable(calendar, start, end, check_slots=not body.get("ignoreFreeSlotValidation"))
    appointment = SandboxAppointment(
        calendar=calendar,
        contact=contact,
        location_id=calendar.location_id,
        title=body.get("title") or f"{calendar.name} - {contact.name}".strip(" -"),
        status=body.get("appointmentStatus") or SandboxAppointment.Status.CONFIRMED,
        start_time=start,
        end_time=end,
        assigned_user_id=body.get("assignedUserId") or "",
        attributes={key: body[key] for key in APPOINTMENT_ATTRIBUTES if body.get(key) is not None},
    )
    _save_appointment(appointment)
    return 200, appointment_json(appointment)


def update_appointment(request, appointment_id):
    """Reschedule (new startTime), cancel (`appointmentStatus: cancelled`) or edit an appointment."""
    appointment = get_or_404(SandboxAppointment, appointment_id, "Appointment")
    body = request.body
    _validate_appointment(body, allowed=APPOINTMENT_EDIT_FIELDS)
    was_live = appointment.status != SandboxAppointment.Status.CANCELLED
    calendar = appointment.calendar
    if body.get("calendarId") and body["calendarId"] != calendar.pk:
        calendar = get_or_404(SandboxCalendar, body["calendarId"], "Calendar")
    start, end = appointment.start_time, appointment.end_time
    if body.get("startTime"):
        start = _parse_time(body["startTime"], "startTime")
        end = start + (appointment.end_time - appointment.start_time)
    if body.get("endTime"):
        end = _parse_time(body["endTime"], "endTime")
    status = body.get("appointmentStatus") or appointment.status
    moved = (start, end, calendar.pk) != (
        appointment.start_time,
        appointment.end_time,
        appointment.calendar_id,
    )
    if status != SandboxAppointment.Status.CANCELLED and (moved or not was_live):
        _ensure_bookable(
            calendar, start, end, check_slots=not body.get("ignoreFreeSlotValidation"), exclude=appointment.pk
        )
    appointment.calendar, appointment.start_time, appointment.end_time = calendar, start, end
    appointment.location_id = calendar.location_id
    appointment.status = status
    if body.get("title") is not None:
        appointment.title = body["title"]
    if body.get("assignedUserId") is not None:
        appointment.assigned_user_id = body["assignedUserId"]
    extra = {key: body[key] for key in APPOINTMENT_ATTRIBUTES if body.get(key) is not None}
    appointment.attributes = {**appointment.attributes, **extra}
    _save_appointment(appointment)
    return 200, appointment_json(appointment)


def contact_appointments(request, contact_id):
    contact = get_or_404(SandboxContact, contact_id, "Contact")
    events = []
    for appointment in contact.appointments.select_related("calendar"):
        event = appointment_json(appointment)
        event.update(
            {
                "status": "cancelled" if appointment.status == "cancelled" else "booked",
                "dateAdded": ghl_timestamp(appointment.created_at),
                "dateUpdated": ghl_timestamp(appointment.updated_at),
            }
        )
        events.append(event)
    return 200, {"events": events}


# --- Opportunities ---------------------------------------------------------------------------------

OPPORTUNITY_FIELDS = frozenset(
    "id pipelineId locationId contactId name status pipelineStageId monetaryValue assignedTo "
    "followers isRemoveAllFollowers followersActionType lostReasonId".split()
)


def opportunity_json(opportunity):
    return {
        "id": opportunity.pk,
        "name": opportunity.name,
        "monetaryValue": opportunity.monetary_value,
        "pipelineId": opportunity.pipeline_id,
        "pipelineStageId": opportunity.pipeline_stage_id or None,
        "assignedTo": opportunity.assigned_to or None,
        "status": opportunity.status,
        "contactId": opportunity.contact_id,
        "locationId": opportunity.location_id,
        "createdAt": ghl_timestamp(opportunity.created_at),
        "updatedAt": ghl_timestamp(opportunity.updated_at),
    }


def upsert_opportunity(request):
    """Update the opportunity named by `id`, else the contact's one in this pipeline, else create it."""
    body = request.body
    validate(
        body,
        allowed=OPPORTUNITY_FIELDS,
        required=("pipelineId", "locationId"),
        strings=("id", "pipelineId", "locationId", "contactId", "name", "pipelineStageId", "assignedTo"),
        numbers=("monetaryValue",),
        enums={"status": SandboxOpportunity.Status.values},
    )
    opportunity = contact = None
    if body.get("id"):
        opportunity = get_or_404(SandboxOpportunity, body["id"], "Opportunity")
    elif body.get("contactId"):
        contact = get_or_404(SandboxContact, body["contactId"], "Contact")
        opportunity = SandboxOpportunity.objects.filter(
            pipeline_id=body["pipelineId"], contact=contact
        ).first()
    else:
        raise unprocessable(["contactId should not be empty"])
    created = opportunity is None
    if created:
        if not body.get("name"):
            raise unprocessable(["name should not be empty"])
        opportunity = SandboxOpportunity(
            location_id=body["locationId"], pipeline_id=body["pipelineId"], contact=contact
        )
    for key, attr in (
        ("name", "name"),
        ("status", "status"),
        ("pipelineStageId", "pipeline_stage_id"),
        ("monetaryValue", "monetary_value"),
        ("assignedTo", "assigned_to"),
        ("pipelineId", "pipeline_id"),
    ):
        if body.get(key) is not None:
            setattr(opportunity, attr, body[key])
    try:
        with transaction.atomic():
            opportunity.save()
    except IntegrityError:
        raise GhlError(400, "An opportunity for this contact already exists in this pipeline") from None
    return 200, {"opportunity": opportunity_json(opportunity), "new": created}


# --- Routes ----------------------------------------------------------------------------------------

ID = r"(?P<{}>[^/]+)"

ROUTES = [
    # (method, path pattern, Version the endpoint documents, handler). More specific paths first.
    ("GET", r"/contacts/search/duplicate", CONTACTS_VERSION, search_duplicate),
    ("POST", r"/contacts/upsert", CONTACTS_VERSION, upsert_contact),
    ("POST", r"/contacts/?", CONTACTS_VERSION, create_contact),
    ("GET", rf"/contacts/{ID.format('contact_id')}", CONTACTS_VERSION, get_contact),
    ("PUT", rf"/contacts/{ID.format('contact_id')}", CONTACTS_VERSION, update_contact),
    ("POST", rf"/contacts/{ID.format('contact_id')}/tags", CONTACTS_VERSION, add_tags),
    ("DELETE", rf"/contacts/{ID.format('contact_id')}/tags", CONTACTS_VERSION, remove_tags),
    ("POST", rf"/contacts/{ID.format('contact_id')}/notes", CONTACTS_VERSION, add_note),
    ("GET", rf"/contacts/{ID.format('contact_id')}/notes", CONTACTS_VERSION, list_notes),
    (
        "PUT",
        rf"/contacts/{ID.format('contact_id')}/notes/{ID.format('note_id')}",
        CONTACTS_VERSION,
        update_note,
    ),
    ("GET", rf"/contacts/{ID.format('contact_id')}/appointments", CONTACTS_VERSION, contact_appointments),
    (
        "POST",
        rf"/contacts/{ID.format('contact_id')}/workflow/{ID.format('workflow_id')}",
        CONTACTS_VERSION,
        enrol_in_workflow,
    ),
    ("GET", rf"/calendars/{ID.format('calendar_id')}/free-slots", CALENDARS_VERSION, free_slots),
    ("POST", r"/calendars/events/appointments", CALENDARS_VERSION, create_appointment),
    (
        "PUT",
        rf"/calendars/events/appointments/{ID.format('appointment_id')}",
        CALENDARS_VERSION,
        update_appointment,
    ),
    ("POST", r"/opportunities/upsert", CONTACTS_VERSION, upsert_opportunity),
]
