"""Demo data for the GHL sandbox: a location, contacts (Dana Lee is the VIP), a calendar and agents.

Idempotent: rows are created when missing and never overwritten, so what calls wrote into the
sandbox (notes, tags, appointments) survives a re-seed; `reset=True` wipes the sandbox location's
GHL data first. The contacts match the vendor fixtures in tests/fixtures (Dana Lee, Sam Rivera).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.db import IntegrityError, transaction

from integrations.models import Agent, GhlLocation
from integrations.sandbox import SANDBOX_CALENDAR_ID, SANDBOX_LOCATION_ID
from integrations.sandbox.models import SandboxCalendar, SandboxContact

SANDBOX_TIMEZONE = "America/Los_Angeles"

DEMO_CONTACTS = [
    {
        "id": "c_Dana7Lee01",
        "first_name": "Dana",
        "last_name": "Lee",
        "email": "dana.lee@example.com",
        "phone": "+14155550123",
        "tags": ["patient", "vip"],
        "custom_fields": {"cf_LastOutcome": "booked"},
        "timezone": SANDBOX_TIMEZONE,
        "source": "website form",
        "date_added": datetime(2025, 6, 1, 17, 22, 9, tzinfo=UTC),
    },
    {
        "id": "c_NewLead042",
        "first_name": "Sam",
        "last_name": "Rivera",
        "email": "sam.rivera@example.com",
        "phone": "+14155550142",
        "tags": ["new lead", "facebook"],
        "timezone": SANDBOX_TIMEZONE,
        "source": "facebook form",
    },
    {
        "id": "c_Priya0Patel",
        "first_name": "Priya",
        "last_name": "Patel",
        "email": "priya.patel@example.com",
        "phone": "+14155550187",
        "tags": ["patient"],
        "timezone": SANDBOX_TIMEZONE,
        "source": "referral",
    },
    {
        "id": "c_Marcus0Chen",
        "first_name": "Marcus",
        "last_name": "Chen",
        "phone": "+12135550111",
        "tags": [],
        "timezone": "America/New_York",
        "source": "phone call",
    },
]

DEMO_CALENDAR = {
    "name": "Demo cleanings",
    "timezone": SANDBOX_TIMEZONE,
    "open_weekdays": [1, 2, 3, 4, 5],
    "opens_at": time(9, 0),
    "closes_at": time(17, 0),
    "slot_minutes": 60,
}

DEMO_AGENTS = [
    {
        "retell_agent_id": "agent_sandbox_reception",
        "name": "Sandbox receptionist",
        "role": Agent.Role.RECEPTION,
        "post_call_tags": ["ai-call"],
        "workflow_id": "wf_sandbox_after_call",
        "create_unknown_contacts": True,
    },
    {
        "retell_agent_id": "agent_sandbox_vip",
        "name": "Sandbox VIP concierge",
        "role": Agent.Role.VIP,
        "post_call_tags": ["ai-call", "vip-call"],
    },
]


@dataclass
class SeedResult:
    contacts_created: int = 0
    contacts_skipped: int = 0  # another sandbox contact already holds the demo phone or email
    agents_created: int = 0
    calendar_created: bool = False
    location_created: bool = False

    def summary(self):
        skipped = f", {self.contacts_skipped} skipped (phone or email taken)" if self.contacts_skipped else ""
        return (
            f"GHL sandbox seeded: location {SANDBOX_LOCATION_ID}"
            f"{' (new)' if self.location_created else ''}, "
            f"{len(DEMO_CONTACTS)} demo contacts ({self.contacts_created} new{skipped}), "
            f"calendar {SANDBOX_CALENDAR_ID}{' (new)' if self.calendar_created else ''}, "
            f"{len(DEMO_AGENTS)} demo agents ({self.agents_created} new)."
        )


@transaction.atomic
def seed_sandbox(*, reset=False):
    result = SeedResult()
    if reset:
        # Contacts cascade to their notes, appointments, workflow enrolments and opportunities.
        SandboxContact.objects.filter(location_id=SANDBOX_LOCATION_ID).delete()
        SandboxCalendar.objects.filter(location_id=SANDBOX_LOCATION_ID).delete()

    location, result.location_created = GhlLocation.objects.get_or_create(
        location_id=SANDBOX_LOCATION_ID,
        defaults={
            "name": "GHL sandbox",
            "timezone": SANDBOX_TIMEZONE,
            "default_calendar_id": SANDBOX_CALENDAR_ID,
        },
    )
    for fields in DEMO_CONTACTS:
        defaults = {key: value for key, value in fields.items() if key != "id"}
        try:
            with transaction.atomic():
                _, created = SandboxContact.objects.get_or_create(
                    id=fields["id"], defaults={"location_id": SANDBOX_LOCATION_ID, **defaults}
                )
        except IntegrityError:
            result.contacts_skipped += 1
            continue
        result.contacts_created += created

    _, result.calendar_created = SandboxCalendar.objects.get_or_create(
        id=SANDBOX_CALENDAR_ID, defaults={"location_id": SANDBOX_LOCATION_ID, **DEMO_CALENDAR}
    )
    for fields in DEMO_AGENTS:
        defaults = {key: value for key, value in fields.items() if key != "retell_agent_id"}
        _, created = Agent.objects.get_or_create(
            retell_agent_id=fields["retell_agent_id"], defaults={"location": location, **defaults}
        )
        result.agents_created += created
    return result
