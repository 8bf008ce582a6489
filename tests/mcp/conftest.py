"""Fixtures for the MCP tool server tests: tokens, exposed tools, a faked GHL and a pinned clock."""

import pytest
import responses

from tests.tools.support import NOW, make_tool


@pytest.fixture
def ghl():
    # `responses` patches requests process-wide, so it also fakes GHL for a live server's threads.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr("integrations.tools.calendar.now", lambda: NOW)


@pytest.fixture
def other_location(db):
    from integrations.models import GhlLocation

    return GhlLocation.objects.create(
        location_id="loc_SunnySmiles02",
        name="Sunny Smiles",
        timezone="America/New_York",
        token="pit-sunny-0002",
    )


@pytest.fixture
def mcp_tools(location):
    """The two tools the issue names, exposed over MCP, plus one write tool."""
    return {
        name: make_tool(name, expose_over_mcp=True)
        for name in ("check_availability", "lookup_contact", "add_tags")
    }


@pytest.fixture
def token(location):
    """(McpToken, its secret) for the default location, allowed every MCP tool."""
    from tests.mcp.support import make_token

    return make_token("Retell front desk", location)
