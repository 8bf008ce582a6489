"""Calendar tools: free slots, booking, rescheduling, cancelling and listing a caller's appointments.

Times are spoken in one timezone per request (`calendar_timezone`), but slot strings are handed back
exactly as GHL returned them: booking reuses the string unchanged (REFERENCE.md §6), and slots are
compared by instant, never by text, so an LLM that re-serialises a time still matches its slot.
"""

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from integrations.errors import NotConfigured
from integrations.tools.contacts import CONTACT_ID, NAME_FIELDS, PHONE, resolve_contact
from integrations.tools.registry import ToolError, handler
from integrations.tools.speech import join_and, join_or, spoken_date, spoken_datetime, spoken_slot_list

now = timezone.now  # module-level so tests can pin the clock

SUBJECT = "the calendar"
DEFAULT_SLOTS_TO_OFFER = 3
DEFAULT_SEARCH_AHEAD_DAYS = 7
MAX_RANGE_DAYS = 31  # GHL's free-slots limit per request
# Parts of the day as callers mean them, in the caller's timezone: [start hour, end hour).
TIME_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}
INACTIVE_STATUSES = {"cancelled", "canceled", "invalid"}
MAX_LISTED_APPOINTMENTS = 10

# --- Schemas -------------------------------------------------------------------------------------

TIMEZONE_ARGUMENT = {
    "type": "string",
    "maxLength": 64,
    "description": "The caller's IANA timezone (e.g. America/New_York), only when they ask for times in "
    "their own timezone. Omit otherwise.",
}
SLOT_ARGUMENT = {
    "type": "string",
    "maxLength": 40,
    "description": "The start_time of a slot exactly as check_availability returned it "
    "(e.g. 2026-12-08T14:00:00-08:00).",
}
APPOINTMENT_ID = {
    "type": "string",
    "maxLength": 64,
    "description": "appointment_id from list_contact_appointments. Omit when the caller has one upcoming "
    "appointment.",
}
CONFIG_PROPERTIES = {
    "calendar_id": {"type": "string", "description": "GHL calendar. Empty: the location's default calendar."},
    "timezone": {
        "type": "string",
        "description": "IANA timezone times are spoken in. Empty: the location's.",
    },
    "slots_to_offer": {"type": "integer", "minimum": 1, "maximum": 10, "description": "Default 3."},
    "search_ahead_days": {
        "type": "integer",
        "minimum": 0,
        "maximum": 30,
        "description": "How many later days to search for alternatives when nothing fits. Default 7.",
    },
    "user_id": {"type": "string", "description": "Only this GHL user's free slots (team calendars)."},
}
BOOKING_CONFIG_PROPERTIES = {
    **CONFIG_PROPERTIES,
    "assigned_user_id": {"type": "string", "description": "Required by some calendar types."},
    "appointment_title": {
        "type": "string",
        "description": 'Title template, e.g. "Cleaning - {name}" ({first_name}, {last_name}, {name}).',
    },
    "duration_minutes": {
        "type": "integer",
        "minimum": 5,
        "maximum": 1440,
        "description": "Sets the end time. Empty: the calendar's own duration.",
    },
    "appointment_status": {"type": "string", "enum": ["new", "confirmed"]},
    "notify": {"type": "boolean", "description": "false: GHL runs no automations for the booking."},
    "create_contacts": {
        "type": "boolean",
        "description": "Create a contact for unknown callers who give their name (default true).",
    },
}


def _config(properties):
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _pick(properties, *names):
    return {name: properties[name] for name in names}


# --- Shared helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    raw: str  # exactly as GHL sent it
    moment: datetime  # parsed, with GHL's own offset
    local: datetime  # in the timezone the caller hears

    def as_dict(self, today):
        return {"start_time": self.raw, "spoken": spoken_datetime(self.local, today=today)}


def calendar_timezone(args, config, context):
    """Where times are spoken: the caller's explicit timezone, the tool's, the contact's, the location's."""
    requested = (args.get("timezone") or "").strip()
    if requested:
        zone = _zone(requested)
        if zone is None:
            raise ToolError(
                "invalid_timezone",
                "I didn't recognise that timezone. Which city are you in?",
                hint="Pass an IANA timezone such as America/New_York, or omit timezone.",
            )
        return zone
    location_zone = getattr(context.location, "timezone", "")
    for candidate in (config.get("timezone"), context.contact_timezone, location_zone):
        zone = _zone(candidate)
        if zone is not None:
            return zone
    return zoneinfo.ZoneInfo("UTC")


def location_timezone(context):
    return _zone(getattr(context.location, "timezone", "")) or zoneinfo.ZoneInfo("UTC")


def calendar_for(config, context):
    calendar_id = config.get("calendar_id") or getattr(context.location, "default_calendar_id", "")
    if not calendar_id:
        raise NotConfigured("no calendar: set calendar_id on the tool or a default calendar on the location")
    return calendar_id


def slots_to_offer(config):
    return int(config.get("slots_to_offer") or DEFAULT_SLOTS_TO_OFFER)


def parse_ghl_time(value, default_zone):
    """An aware datetime from a GHL time string, or None.

    Slots carry an offset. Appointment listings may not ("2021-07-16 11:00:00" in GHL's spec): those
    are read in `default_zone`, the location's timezone (an inference: GHL does not document it).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=default_zone)


def parse_slot_argument(value, name="start_time"):
    """The instant an LLM-provided slot string names; it must carry an offset to be unambiguous."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ToolError(
            "invalid_start_time",
            "I need to check the available times first.",
            hint=f"{name} must be a start_time returned by check_availability, with its UTC offset.",
        )
    return moment


def fetch_slots(client, calendar_id, zone, first_day, last_day, *, not_before, user_id=None):
    """Free slots from the start of `first_day` to the end of `last_day` (in `zone`), sorted, future only."""
    start = max(_midnight(first_day, zone), not_before)
    end = _midnight(last_day + timedelta(days=1), zone) - timedelta(milliseconds=1)
    # A 31-day range that crosses a DST change is an hour longer than 31 × 24 h: stay inside GHL's cap.
    end = min(end, start + timedelta(days=MAX_RANGE_DAYS))
    if end <= start:
        return []
    by_day = client.get_free_slots(calendar_id, start=start, end=end, timezone=zone.key, user_id=user_id)
    slots = {}
    for strings in by_day.values():
        for raw in strings:
            moment = parse_ghl_time(raw, zone)
            if moment is not None and moment >= not_before:
                slots.setdefault(moment, Slot(raw=raw, moment=moment, local=moment.astimezone(zone)))
    return [slots[moment] for moment in sorted(slots)]


def nearest_slots(slots, wanted, limit):
    """The `limit` slots closest to `wanted`, in chronological order."""
    closest = sorted(slots, key=lambda slot: (abs(slot.moment - wanted), slot.moment))[:limit]
    return sorted(closest, key=lambda slot: slot.moment)


def contact_appointments(client, contact_id, *, zone, calendar_id=None, include_past=False, active_only=True):
    """The contact's appointments as our tools describe them, soonest first."""
    current = now()
    appointments = []
    for event in client.get_contact_appointments(contact_id):
        if not isinstance(event, dict) or not event.get("id"):
            continue
        status = (event.get("appointmentStatus") or event.get("status") or "").lower()
        start = parse_ghl_time(event.get("startTime"), zone)
        if start is None or (active_only and status in INACTIVE_STATUSES):
            continue
        if calendar_id and event.get("calendarId") and event["calendarId"] != calendar_id:
            continue
        if not include_past and start < current:
            continue
        appointments.append(
            {
                "start": start,
                "end": parse_ghl_time(event.get("endTime"), zone),
                "event": event,
                "status": status,
            }
        )
    appointments.sort(key=lambda item: item["start"])
    return appointments


def describe_appointment(item, zone, today):
    event = item["event"]
    return {
        "appointment_id": event["id"],
        "calendar_id": event.get("calendarId", ""),
        "title": event.get("title") or "",
        "start_time": event.get("startTime", ""),
        "spoken_time": spoken_datetime(item["start"].astimezone(zone), today=today),
        "status": item["status"],
    }


def pick_appointment(appointments, appointment_id, zone, today):
    described = [describe_appointment(item, zone, today) for item in appointments[:MAX_LISTED_APPOINTMENTS]]
    if appointment_id:
        for item in appointments:
            if item["event"]["id"] == appointment_id:
                return item
        raise ToolError(
            "appointment_not_found",
            "I couldn't find that appointment on your record.",
            appointments=described,
        )
    if not appointments:
        raise ToolError("no_upcoming_appointments", "I don't see any upcoming appointments for you.")
    if len(appointments) > 1:
        spoken = join_or(item["spoken_time"] for item in described)
        raise ToolError(
            "which_appointment",
            f"I see {len(appointments)} upcoming appointments: {spoken}. Which one do you mean?",
            appointments=described,
        )
    return appointments[0]


def _zone(name):
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _midnight(day, zone):
    return datetime.combine(day, time.min, tzinfo=zone)


def _parse_day(value):
    """A YYYY-MM-DD argument (the default schema checks the format; an overridden one may not)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ToolError("invalid_date", "Which date would you like?", hint="Dates are YYYY-MM-DD.") from None


def _slot_unavailable(slots, wanted, config, today):
    alternatives = nearest_slots(slots, wanted, slots_to_offer(config))
    if alternatives:
        message = (
            "Sorry, that time was just taken. The closest openings are "
            f"{spoken_slot_list([slot.local for slot in alternatives], today=today)}."
        )
    else:
        message = "Sorry, that time was just taken, and I don't see other openings around then."
    return ToolError("slot_unavailable", message, alternatives=[slot.as_dict(today) for slot in alternatives])


# --- check_availability --------------------------------------------------------------------------


@handler(
    "check_availability",
    title="Check availability",
    description="Find open appointment times on a day or range of days. Offer the caller only the times "
    "returned, and book with a slot's exact start_time.",
    arguments={
        "type": "object",
        "properties": {
            "date": {
                "type": "string",
                "format": "date",
                "description": "First day to check, YYYY-MM-DD (work out words like 'next Tuesday' from "
                "the current date). Omit for today.",
            },
            "end_date": {
                "type": "string",
                "format": "date",
                "description": "Last day to check, inclusive, when the caller gave a range (YYYY-MM-DD, "
                "at most 30 days after date).",
            },
            "time_of_day": {
                "type": "string",
                "enum": ["morning", "afternoon", "evening", "any"],
                "description": "Part of the day the caller prefers: morning is before 12 PM, afternoon "
                "12 to 5 PM, evening after 5 PM.",
            },
            "timezone": TIMEZONE_ARGUMENT,
        },
    },
    config=_config(CONFIG_PROPERTIES),
    side_effect=False,
    subject=SUBJECT,
)
def check_availability(client, args, config, context):
    zone = calendar_timezone(args, config, context)
    current = now()
    today = current.astimezone(zone).date()
    first = _parse_day(args.get("date")) or today
    last = _parse_day(args.get("end_date")) or first
    if last < first:
        raise ToolError(
            "invalid_date_range", "The end date is before the start date. Which days should I check?"
        )
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ToolError("date_range_too_long", "I can check up to a month at a time. Which dates work best?")
    if last < today:
        raise ToolError("date_in_past", "That date has already passed. Which upcoming day works for you?")
    first = max(first, today)
    period = args.get("time_of_day") or "any"

    # One request covers the asked days and the days after them, so "nothing then" can come with the
    # nearest alternatives at no extra round trip.
    ahead = config.get("search_ahead_days", DEFAULT_SEARCH_AHEAD_DAYS)
    fetch_last = min(last + timedelta(days=ahead), first + timedelta(days=MAX_RANGE_DAYS - 1))
    calendar_id = calendar_for(config, context)
    slots = fetch_slots(
        client,
        calendar_id,
        zone,
        first,
        fetch_last,
        not_before=current,
        user_id=config.get("user_id") or None,
    )
    hours = TIME_OF_DAY.get(period, (0, 24))
    matching = [
        slot
        for slot in slots
        if first <= slot.local.date() <= last and hours[0] <= slot.local.hour < hours[1]
    ]
    limit = slots_to_offer(config)
    offered = matching[:limit]
    result = {
        "available": bool(offered),
        "date": first.isoformat(),
        "end_date": last.isoformat(),
        "time_of_day": period,
        "timezone": zone.key,
        "calendar_id": calendar_id,
        "slots": [slot.as_dict(today) for slot in offered],
        "total_matching": len(matching),
    }
    if offered:
        result["message"] = f"I have {spoken_slot_list([slot.local for slot in offered], today=today)}."
        return result

    when = f"on {spoken_date(first, today=today)}"
    if last != first:
        when = f"between {spoken_date(first, today=today)} and {spoken_date(last, today=today)}"
    if period != "any":
        when += f" in the {period}"
    later = [slot for slot in slots if slot.local >= _midnight(first, zone)][:limit]
    result["alternatives"] = [slot.as_dict(today) for slot in later]
    if later:
        spoken = spoken_slot_list([slot.local for slot in later], today=today)
        result["message"] = f"I don't have anything {when}. The nearest openings are {spoken}."
    else:
        result["message"] = f"I don't have anything {when}, or in the days after."
    return result


# --- book_appointment ----------------------------------------------------------------------------


def _title(config, args, context):
    template = config.get("appointment_title")
    if not template:
        return None
    variables = context.dynamic_variables

    def full_name(first, last):
        return " ".join(part.strip() for part in (first or "", last or "") if part and part.strip())

    # Names the caller just gave beat what routing knew about the number.
    name = (
        full_name(args.get("first_name"), args.get("last_name"))
        or variables.get("customer_name", "").strip()
        or full_name(variables.get("first_name"), variables.get("last_name"))
    )
    values = {
        "first_name": (args.get("first_name") or variables.get("first_name") or "").strip(),
        "last_name": (args.get("last_name") or variables.get("last_name") or "").strip(),
        "name": name,
    }
    title = re.sub(r"\{(\w+)\}", lambda match: values.get(match.group(1), ""), template)
    # "Cleaning - {name}" with no name known reads "Cleaning", not "Cleaning - ".
    return re.sub(r"[\s\-–:,]+$", "", title).strip() or None


def _already_booked(client, args, context, calendar_id, wanted, zone):
    """The contact's existing appointment at `wanted`, when the slot is "taken" by this very caller.

    A booking whose response was lost (read timeout after GHL acted) is retried by Retell; the slot
    then looks taken. Finding the caller's own appointment turns that into the success it was.
    """
    try:
        contact_id = resolve_contact(client, args, context)
    except ToolError:
        return None, None
    for item in contact_appointments(client, contact_id, zone=zone, calendar_id=calendar_id):
        if item["start"] == wanted:
            return contact_id, item["event"]
    return contact_id, None


@handler(
    "book_appointment",
    title="Book an appointment",
    description="Book the caller into a slot that check_availability returned. If it was just taken, the "
    "answer lists the nearest alternatives to offer instead.",
    arguments={
        "type": "object",
        "properties": {
            "start_time": SLOT_ARGUMENT,
            **NAME_FIELDS,
            "phone": PHONE,
            "contact_id": CONTACT_ID,
            "timezone": TIMEZONE_ARGUMENT,
        },
        "required": ["start_time"],
    },
    config=_config(BOOKING_CONFIG_PROPERTIES),
    side_effect=True,
    subject=SUBJECT,
)
def book_appointment(client, args, config, context):
    zone = calendar_timezone(args, config, context)
    current = now()
    today = current.astimezone(zone).date()
    wanted = parse_slot_argument(args["start_time"])
    if wanted <= current:
        raise ToolError("slot_in_past", "That time has already passed. Shall I look for the next opening?")
    calendar_id = calendar_for(config, context)

    # Re-check just before booking: the caller may have thought it over while someone else booked.
    day = wanted.astimezone(zone).date()
    ahead = config.get("search_ahead_days", DEFAULT_SEARCH_AHEAD_DAYS)
    slots = fetch_slots(
        client,
        calendar_id,
        zone,
        day,
        day + timedelta(days=min(ahead, MAX_RANGE_DAYS - 1)),
        not_before=current,
        user_id=config.get("user_id") or None,
    )
    slot = next((slot for slot in slots if slot.moment == wanted), None)
    if slot is None:
        contact_id, existing = _already_booked(client, args, context, calendar_id, wanted, zone)
        if existing is None:
            raise _slot_unavailable(slots, wanted, config, today)
        spoken = spoken_datetime(wanted.astimezone(zone), today=today)
        return {
            "booked": True,
            "already_booked": True,
            "appointment_id": existing["id"],
            "start_time": existing.get("startTime") or args["start_time"],
            "spoken_time": spoken,
            "timezone": zone.key,
            "contact_id": contact_id,
            "message": f"You're already booked for {spoken}.",
        }

    contact_id = resolve_contact(client, args, context, create=config.get("create_contacts", True))
    duration = config.get("duration_minutes")
    appointment = client.create_appointment(
        calendar_id=calendar_id,
        contact_id=contact_id,
        start_time=slot.raw,  # GHL's own string, unchanged
        end_time=(slot.moment + timedelta(minutes=duration)).isoformat() if duration else None,
        title=_title(config, args, context),
        appointment_status=config.get("appointment_status") or "confirmed",
        assigned_user_id=config.get("assigned_user_id") or None,
        to_notify=config.get("notify"),
    )
    spoken = spoken_datetime(slot.local, today=today)
    return {
        "booked": True,
        "appointment_id": appointment.get("id", ""),
        "start_time": slot.raw,
        "spoken_time": spoken,
        "timezone": zone.key,
        "contact_id": contact_id,
        "message": f"You're booked for {spoken}.",
    }


# --- list_contact_appointments -------------------------------------------------------------------


@handler(
    "list_contact_appointments",
    title="List the caller's appointments",
    description="List the caller's upcoming appointments (with ids for rescheduling or cancelling).",
    arguments={
        "type": "object",
        "properties": {
            "include_past": {"type": "boolean", "description": "Also list past appointments."},
            "phone": PHONE,
            "contact_id": CONTACT_ID,
            "timezone": TIMEZONE_ARGUMENT,
        },
    },
    config=_config(_pick(CONFIG_PROPERTIES, "calendar_id", "timezone")),
    side_effect=False,
    subject=SUBJECT,
)
def list_contact_appointments(client, args, config, context):
    zone = calendar_timezone(args, config, context)
    today = now().astimezone(zone).date()
    contact_id = resolve_contact(client, args, context)
    appointments = contact_appointments(
        client,
        contact_id,
        zone=location_timezone(context),
        calendar_id=config.get("calendar_id") or None,
        include_past=bool(args.get("include_past")),
    )
    described = [describe_appointment(item, zone, today) for item in appointments[:MAX_LISTED_APPOINTMENTS]]
    if not described:
        message = "I don't see any upcoming appointments for you."
    elif len(described) == 1:
        message = f"You have an appointment on {described[0]['spoken_time']}."
    else:
        message = f"You have {len(described)} appointments: {join_and(i['spoken_time'] for i in described)}."
    return {
        "contact_id": contact_id,
        "appointments": described,
        "count": len(appointments),
        "timezone": zone.key,
        "message": message,
    }


# --- reschedule_appointment ----------------------------------------------------------------------


@handler(
    "reschedule_appointment",
    title="Reschedule an appointment",
    description="Move the caller's appointment to a new slot that check_availability returned.",
    arguments={
        "type": "object",
        "properties": {
            "new_start_time": SLOT_ARGUMENT,
            "appointment_id": APPOINTMENT_ID,
            "phone": PHONE,
            "contact_id": CONTACT_ID,
            "timezone": TIMEZONE_ARGUMENT,
        },
        "required": ["new_start_time"],
    },
    config=_config(
        _pick(CONFIG_PROPERTIES, "calendar_id", "timezone", "slots_to_offer", "search_ahead_days", "user_id")
    ),
    side_effect=True,
    subject=SUBJECT,
)
def reschedule_appointment(client, args, config, context):
    zone = calendar_timezone(args, config, context)
    current = now()
    today = current.astimezone(zone).date()
    wanted = parse_slot_argument(args["new_start_time"], "new_start_time")
    if wanted <= current:
        raise ToolError("slot_in_past", "That time has already passed. Shall I look for the next opening?")
    contact_id = resolve_contact(client, args, context)
    appointments = contact_appointments(
        client, contact_id, zone=location_timezone(context), calendar_id=config.get("calendar_id") or None
    )
    item = pick_appointment(appointments, (args.get("appointment_id") or "").strip(), zone, today)
    event = item["event"]
    spoken = spoken_datetime(wanted.astimezone(zone), today=today)
    result = {
        "rescheduled": True,
        "appointment_id": event["id"],
        "previous_start_time": event.get("startTime", ""),
        "timezone": zone.key,
        "contact_id": contact_id,
        "spoken_time": spoken,
        "message": f"Done, your appointment is now {spoken}.",
    }
    if item["start"] == wanted:
        return {**result, "start_time": event.get("startTime", ""), "unchanged": True}

    calendar_id = event.get("calendarId") or calendar_for(config, context)
    day = wanted.astimezone(zone).date()
    ahead = config.get("search_ahead_days", DEFAULT_SEARCH_AHEAD_DAYS)
    # On a team calendar the new time must be free for whoever holds the appointment, as when booking.
    user_id = event.get("assignedUserId") or config.get("user_id") or None
    slots = fetch_slots(
        client, calendar_id, zone, day, day + timedelta(days=ahead), not_before=current, user_id=user_id
    )
    slot = next((slot for slot in slots if slot.moment == wanted), None)
    if slot is None:
        raise _slot_unavailable(slots, wanted, config, today)
    fields = {"startTime": slot.raw}
    if item["end"] is not None and item["end"] > item["start"]:  # keep the appointment's length
        fields["endTime"] = (slot.moment + (item["end"] - item["start"])).isoformat()
    client.update_appointment(event["id"], fields)
    return {**result, "start_time": slot.raw}


# --- cancel_appointment --------------------------------------------------------------------------


@handler(
    "cancel_appointment",
    title="Cancel an appointment",
    description="Cancel the caller's appointment. Confirm with the caller before calling this.",
    arguments={
        "type": "object",
        "properties": {
            "appointment_id": APPOINTMENT_ID,
            "phone": PHONE,
            "contact_id": CONTACT_ID,
            "timezone": TIMEZONE_ARGUMENT,
        },
    },
    config=_config(_pick(CONFIG_PROPERTIES, "calendar_id", "timezone")),
    side_effect=True,
    destructive=True,
    subject=SUBJECT,
)
def cancel_appointment(client, args, config, context):
    zone = calendar_timezone(args, config, context)
    today = now().astimezone(zone).date()
    contact_id = resolve_contact(client, args, context)
    appointment_id = (args.get("appointment_id") or "").strip()
    appointments = contact_appointments(
        client,
        contact_id,
        zone=location_timezone(context),
        calendar_id=config.get("calendar_id") or None,
        active_only=not appointment_id,  # an explicit id may name one that is already cancelled
    )
    item = pick_appointment(appointments, appointment_id, zone, today)
    event = item["event"]
    spoken = spoken_datetime(item["start"].astimezone(zone), today=today)
    result = {
        "cancelled": True,
        "appointment_id": event["id"],
        "start_time": event.get("startTime", ""),
        "spoken_time": spoken,
        "contact_id": contact_id,
        "message": f"Your appointment on {spoken} is cancelled.",
    }
    if item["status"] in INACTIVE_STATUSES:
        return {**result, "already_cancelled": True}
    client.cancel_appointment(event["id"])
    return result
