"""Helpers shared by the in-call tool tests: GHL fakes and signed tool requests."""

import copy
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from tests.conftest import fixture_json, post_signed

GHL = "https://services.leadconnectorhq.com"
TOKEN = "pit-test-token-0000"  # GHL_API_TOKEN of the test settings (the default location's)
CALL_ID = "call_8f14e45fceea167a5a36dedd4bea2543"
AGENT_ID = "agent_5d3e1c9b2a7f4e6d8c0b"
NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)  # a Thursday, before the fixtures' December 8


def epoch_ms(iso):
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def make_tool(name, handler=None, **fields):
    from integrations.models import ToolDefinition

    agents = fields.pop("agents", [])
    definition = ToolDefinition(name=name, handler=handler or name, **fields)
    definition.full_clean()
    definition.save()
    definition.agents.set(agents)
    return definition


def retell_body(name, args, **call_changes):
    """Retell's custom-function body (tests/fixtures/retell_custom_function.json) for `name` and `args`."""
    body = copy.deepcopy(fixture_json("retell_custom_function"))
    body["name"] = name
    body["args"] = args
    body["call"].update(call_changes)
    return body


def call_tool(client, name, args, **call_changes):
    """POST a signed custom-function request; returns the HTTP response."""
    return post_signed(client, f"/api/functions/{name}", retell_body(name, args, **call_changes))


def sent_json(call):
    return json.loads(call.request.body)


def query(call):
    return {key: values[0] for key, values in parse_qs(urlsplit(call.request.url).query).items()}


def assert_ghl_headers(call, version):
    headers = call.request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Version"] == version
    assert headers["Accept"] == "application/json"


def free_slots(*slots, trace="9a0b6c2e-31f4-4c1b-a2d8-5b7e0f1c2d3e"):
    """A GHL free-slots answer for the given slot strings (REFERENCE.md §6 shape)."""
    by_day = {}
    for slot in slots:
        by_day.setdefault(slot[:10], {"slots": []})["slots"].append(slot)
    return {**by_day, "traceId": trace}
