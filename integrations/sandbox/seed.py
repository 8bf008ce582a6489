"""Demo data for the GHL sandbox: a location, contacts (Dana Lee is the VIP), a calendar, and the
configuration a product tour needs: two agents, a VIP routing rule, a demo phone line and the
calendar tools (`manage.py simulate_call` plays a call through all of it).

Idempotent: rows are created when missing and never overwritten, so what calls wrote into the
sandbox (notes, tags, appointments) and what operators changed in the admin survive a re-seed;
`reset=True` wipes the sandbox location's GHL data first. The contacts match the vendor fixtures in
tests/fixtures (Dana Lee, Sam Rivera).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.db import IntegrityError, transaction

from integrations.models import Agent, GhlLocation, PhoneNumber, RoutingRule, ToolDefinition
from integrations.sandbox import SANDBOX_CALENDAR_ID, SANDBOX_LOCATION_ID
from integrations.sandbox.models import SandboxCalendar, SandboxContact

SANDBOX_TIMEZONE = "America/Los_Angeles"

# The number callers dial in the tour (a 555-01xx number: reserved for fiction, never a real line).
DEMO_LINE = "+14155550100"
DANA_PHONE = "+14155550123"  # the VIP of the demo contacts
RECEPTION_AGENT_ID = "agent_sandbox_reception"
VIP_AGENT_ID = "agent_sandbox_vip"

DEMO_CONTACTS = [
    {
        "id": "c_Dana7Lee01",
        "first_name": "Dana",
        "last_name": "Lee",
        "email": "dana.lee@example.com",
        "phone": DANA_PHONE,
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
        "retell_agent_id": RECEPTION_AGENT_ID,
        "name": "Sandbox receptionist",
        "role": Agent.Role.RECEPTION,
        "post_call_tags": ["ai-call"],
        "workflow_id": "wf_sandbox_after_call",
        "create_unknown_contacts": True,
    },
    {
        "retell_agent_id": VIP_AGENT_ID,
        "name": "Sandbox VIP concierge",
        "role": Agent.Role.VIP,
        "post_call_tags": ["ai-call", "vip-call"],
    },
]


DEMO_VIP_RULE = {
    "name": "Sandbox: VIP callers to the concierge",
    "priority": 10,
    "description": "Demo rule: callers whose GHL contact is tagged vip go to the VIP agent.",
    "tags_any": ["vip"],
    "dynamic_variables": {"vip_tier": "gold", "greeting_name": '{{ contact.firstName|default:"there" }}'},
    "metadata": {"segment": "vip"},
}

DEMO_TOOLS = [
    {
        "name": "check_availability",
        "handler": "check_availability",
        "config": {"calendar_id": SANDBOX_CALENDAR_ID, "slots_to_offer": 3},
    },
    {
        "name": "book_appointment",
        "handler": "book_appointment",
        "config": {"calendar_id": SANDBOX_CALENDAR_ID, "appointment_title": "Cleaning - {name}"},
    },
]


@dataclass
class SeedResult:
    contacts_created: int = 0
    contacts_skipped: int = 0  # another sandbox contact already holds the demo phone or email
    agents_created: int = 0
    calendar_created: bool = False
    location_created: bool = False
    rule_created: bool = False
    line_created: bool = False
    tools_created: int = 0

    def summary(self):
        skipped = f", {self.contacts_skipped} skipped (phone or email taken)" if self.contacts_skipped else ""
        return (
            f"GHL sandbox seeded: location {SANDBOX_LOCATION_ID}"
            f"{' (new)' if self.location_created else ''}, "
            f"{len(DEMO_CONTACTS)} demo contacts ({self.contacts_created} new{skipped}), "
            f"calendar {SANDBOX_CALENDAR_ID}{' (new)' if self.calendar_created else ''}, "
            f"{len(DEMO_AGENTS)} demo agents ({self.agents_created} new), "
            f"VIP routing rule{' (new)' if self.rule_created else ''}, "
            f"demo line {DEMO_LINE}{' (new)' if self.line_created else ''}, "
            f"{len(DEMO_TOOLS)} calendar tools ({self.tools_created} new)."
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
    agents = {}
    for fields in DEMO_AGENTS:
        defaults = {key: value for key, value in fields.items() if key != "retell_agent_id"}
        agent, created = Agent.objects.get_or_create(
            retell_agent_id=fields["retell_agent_id"], defaults={"location": location, **defaults}
        )
        agents[agent.retell_agent_id] = agent
        result.agents_created += created
    _seed_tour(location, agents, result)
    return result


def _seed_tour(location, agents, result):
    """What a call needs to reach the sandbox: the dialled line, the VIP rule, the calendar tools."""
    # Scoped to the sandbox location, so the demo rule never routes calls to another location's numbers.
    _, result.rule_created = RoutingRule.objects.get_or_create(
        name=DEMO_VIP_RULE["name"],
        location=location,
        defaults={**DEMO_VIP_RULE, "agent": agents[VIP_AGENT_ID]},
    )
    _, result.line_created = PhoneNumber.objects.get_or_create(
        number=DEMO_LINE,
        defaults={
            "label": "Sandbox demo line",
            "location": location,
            "default_agent": agents[RECEPTION_AGENT_ID],
        },
    )
    for fields in DEMO_TOOLS:
        # Tool names are global: a deployment that already has its own `check_availability` keeps it.
        _, created = ToolDefinition.objects.get_or_create(
            name=fields["name"],
            defaults={**fields, "location": location, "expose_over_mcp": True},
        )
        result.tools_created += created
