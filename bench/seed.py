"""Seed the benchmark database: the configuration a real deployment would have for the fixtures' calls.

Run by bench/run.py after `migrate`, with the server's environment (`python -m bench.seed`):
- the GHL location named by GHL_LOCATION_ID, with a default calendar and a timezone;
- the fixtures' Retell agent (it acts on call_ended: one note per call) and a VIP agent;
- the fixtures' dialled number, owned by the location, with the agent as its default route;
- three routing rules, so a routing decision really evaluates rules (a block list, a VIP rule that
  matches the fixture contact's `vip` tag, an after-hours rule);
- the `check_availability` tool, enabled for the fixtures' agent only and listed over MCP.

`python -m bench.seed mcp-token` then creates an MCP token for that location and prints it (last line).
"""

import os
import sys
from datetime import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellghl.settings")

FIXTURE_AGENT_ID = "agent_5d3e1c9b2a7f4e6d8c0b"  # tests/fixtures/retell_*.json
DIALLED_NUMBER = "+14155559999"
CALENDAR_ID = "cal_bench"


def seed():
    from django.conf import settings

    from integrations.models import Agent, GhlLocation, PhoneNumber, RoutingRule, ToolDefinition

    location = GhlLocation.objects.create(
        location_id=settings.GHL_LOCATION_ID,
        name="Bench location",
        timezone="America/Los_Angeles",
        default_calendar_id=CALENDAR_ID,
    )
    agent = Agent.objects.create(
        retell_agent_id=FIXTURE_AGENT_ID, name="Bench receptionist", location=location
    )
    vip = Agent.objects.create(
        retell_agent_id="agent_bench_vip", name="Bench VIP desk", role=Agent.Role.VIP, location=location
    )
    PhoneNumber.objects.create(
        number=DIALLED_NUMBER, label="Main line", location=location, default_agent=agent
    )
    rules = [
        RoutingRule(
            name="Block list",
            priority=10,
            caller_numbers=["+19005550100"],
            action=RoutingRule.Action.REJECT,
        ),
        RoutingRule(
            name="VIP callers",
            priority=20,
            contact_status=RoutingRule.ContactStatus.FOUND,
            tags_any=["vip"],
            agent=vip,
            dynamic_variables={"greeting": 'Welcome back, {{ contact.firstName|default:"there" }}!'},
            metadata={"segment": "vip"},
        ),
        RoutingRule(
            name="After hours",
            priority=30,
            start_time=time(18, 0),
            end_time=time(8, 0),
            agent=agent,
            dynamic_variables={"after_hours": "true"},
        ),
    ]
    for rule in rules:
        rule.full_clean()
        rule.save()
    tool = ToolDefinition(name="check_availability", handler="check_availability", expose_over_mcp=True)
    tool.full_clean()
    tool.save()
    tool.agents.set([agent])
    return f"seeded location {location.location_id}, 2 agents, 1 number, {len(rules)} rules, 1 tool"


def mcp_token():
    """A new MCP token for the bench location, all its MCP tools; returns the token (shown once)."""
    from django.conf import settings

    from integrations.models import GhlLocation, McpToken

    token = McpToken(name="bench", location=GhlLocation.objects.get(location_id=settings.GHL_LOCATION_ID))
    secret = token.set_new_token()
    token.save()
    return secret


def report():
    """Row counts by status after a run: what the server itself recorded (errors it did not answer)."""
    from django.db.models import Count

    from calls.models import Call, CallEvent, GhlSyncTask, RoutingDecision, ToolInvocation

    def by(model, field):
        rows = model.objects.values(field).annotate(n=Count("pk")).order_by(field)
        return {str(row[field]): row["n"] for row in rows}

    return {
        "calls": Call.objects.count(),
        "call events": by(CallEvent, "status"),
        "GHL sync tasks": by(GhlSyncTask, "status"),
        "routing lookups": by(RoutingDecision, "lookup"),
        "tool invocations": by(ToolInvocation, "status"),
    }


def main(argv):
    import json

    import django

    django.setup()
    command = argv[0] if argv else "seed"
    if command == "seed":
        print(seed())
    elif command == "report":
        print(json.dumps(report(), sort_keys=True))
    elif command == "mcp-token":
        print(mcp_token())
    else:
        print(f"unknown command {command!r} (seed, mcp-token, report)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
