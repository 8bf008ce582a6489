"""The official `mcp` Python SDK's client against a live server: the proof that a real MCP client can
negotiate, list our tools, call them, read tool errors and JSON-RPC errors, and is refused without a
token. Run in both eras the SDK speaks: the `initialize` handshake and the stateless 2026-07-28 one.

The live server runs in a thread of this process, so `responses` (GHL) and the pinned clock apply to
it; the MCP client's own traffic uses httpx2, which `responses` does not touch.
"""

import asyncio

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from calls.models import ToolInvocation
from integrations.mcp import protocol
from tests.conftest import fixture_json
from tests.tools.support import GHL, free_slots

pytestmark = pytest.mark.django_db(transaction=True)

FREE_SLOTS_URL = f"{GHL}/calendars/cal_Cleanings01/free-slots"
DUPLICATE_SEARCH_URL = f"{GHL}/contacts/search/duplicate"
SLOTS = free_slots("2026-12-08T14:00:00-08:00", "2026-12-08T16:00:00-08:00")


def run_session(url, headers, mode, work):
    """Connect an SDK Client to `url` with `headers` and run `await work(client)`; returns its result."""

    async def session():
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                return await work(client)

    return asyncio.run(session())


@pytest.mark.parametrize(("mode", "negotiated"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_the_official_client_lists_and_calls_our_tools(
    live_server, mcp_tools, token, ghl, clock, mode, negotiated
):
    ghl.get(FREE_SLOTS_URL, json=SLOTS)
    ghl.get(DUPLICATE_SEARCH_URL, json=fixture_json("ghl_duplicate_search_found"))

    async def work(client):
        tools = await client.list_tools()
        availability = await client.call_tool(
            "check_availability", {"date": "2026-12-08", "time_of_day": "afternoon"}
        )
        contact = await client.call_tool("lookup_contact", {"phone": "+1 415 555 0123"})
        bad_arguments = await client.call_tool("check_availability", {"date": "next tuesday"})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("delete_everything", {})
        return (
            client.protocol_version,
            client.server_info,
            tools,
            availability,
            contact,
            bad_arguments,
            unknown,
        )

    version, server_info, tools, availability, contact, bad_arguments, unknown = run_session(
        f"{live_server.url}/api/mcp", {"Authorization": f"Bearer {token[1]}"}, mode, work
    )

    assert version == negotiated
    assert server_info.name == "retellghl"
    by_name = {tool.name: tool for tool in tools.tools}
    assert sorted(by_name) == ["add_tags", "check_availability", "lookup_contact"]
    assert by_name["lookup_contact"].annotations.read_only_hint is True
    assert by_name["check_availability"].input_schema == mcp_tools["check_availability"].effective_schema

    assert availability.is_error is False
    assert availability.structured_content["message"] == "I have Tuesday, December 8 at 2:00 PM or 4:00 PM."
    assert availability.content[0].type == "text"
    assert contact.is_error is False
    assert contact.structured_content["contact"]["first_name"] == "Dana"

    assert bad_arguments.is_error is True
    assert bad_arguments.structured_content["error"] == "invalid_arguments"
    assert unknown.value.code == protocol.INVALID_PARAMS

    logged = ToolInvocation.objects.order_by("id")
    assert [(row.tool_name, row.source, row.mcp_token_id) for row in logged] == [
        ("check_availability", "mcp", token[0].pk),
        ("lookup_contact", "mcp", token[0].pk),
        ("check_availability", "mcp", token[0].pk),
    ]


def test_the_official_client_may_send_the_token_in_the_custom_header(live_server, mcp_tools, token, settings):
    settings.MCP_TOKEN_HEADER = "X-MCP-Token"

    async def work(client):
        return await client.list_tools()

    tools = run_session(f"{live_server.url}/api/mcp/", {"X-MCP-Token": token[1]}, "legacy", work)

    assert len(tools.tools) == 3


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer mcp_wrong-token"}])
def test_the_official_client_is_refused_without_a_valid_token(
    live_server, mcp_tools, token, mode, headers, caplog
):
    async def work(client):  # never reached
        raise AssertionError("connected without a valid token")

    with pytest.raises(BaseExceptionGroup) as refused:
        run_session(f"{live_server.url}/api/mcp", headers, mode, work)

    assert refused.group_contains(MCPError)  # the SDK's connect failed (inside its task groups)
    assert "401 Unauthorized" in caplog.text
    assert "200 OK" not in caplog.text
    assert not ToolInvocation.objects.exists()
