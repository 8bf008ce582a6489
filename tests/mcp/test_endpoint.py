"""/api/mcp over Django's test client: the HTTP gate (method, Origin, token), wire formats, version
negotiation, JSON-RPC error codes, batches, and what each token may see and run."""

import json

import pytest

from calls.models import ToolInvocation
from integrations.mcp import protocol
from tests.conftest import fixture_json
from tests.mcp.support import (
    MCP_URL,
    make_token,
    modern_headers,
    modern_params,
    notification,
    post,
    request,
)
from tests.tools.support import GHL, make_tool

FREE_SLOTS_URL = f"{GHL}/calendars/cal_Cleanings01/free-slots"
DUPLICATE_SEARCH_URL = f"{GHL}/contacts/search/duplicate"


def rpc_error(response):
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    return body["id"], body["error"]["code"]


def tool_names(response):
    return [tool["name"] for tool in response.json()["result"]["tools"]]


# --- The HTTP gate -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/mcp", "/api/mcp/"])
def test_both_spellings_are_served_without_a_redirect(client, token, url):
    response = post(client, request("ping"), secret=token[1], url=url)

    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


@pytest.mark.parametrize("method", ["get", "delete", "put"])
def test_only_post_is_allowed(client, token, method):
    response = getattr(client, method)(MCP_URL, HTTP_AUTHORIZATION=f"Bearer {token[1]}")

    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert response.json()["error"] == "method_not_allowed"


def test_a_missing_token_is_challenged(client, token):
    response = post(client, request("ping"))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="mcp"'
    assert response.json()["error"] == "missing_token"


@pytest.mark.parametrize("presented", ["mcp_not-a-real-token", "pit-something-else", "x" * 5000])
def test_a_wrong_token_is_refused(client, token, presented):
    response = post(client, request("ping"), secret=presented)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="mcp", error="invalid_token"'
    assert response.json()["error"] == "invalid_token"


def test_a_disabled_token_is_refused(client, location):
    _, secret = make_token("Old", location, enabled=False)

    assert post(client, request("ping"), secret=secret).status_code == 401


def test_the_token_may_come_in_the_configured_header(client, token, settings):
    settings.MCP_TOKEN_HEADER = "X-Retell-Mcp-Key"

    plain = client.post(
        MCP_URL, json.dumps(request("ping")), "application/json", HTTP_X_RETELL_MCP_KEY=token[1]
    )
    prefixed = client.post(
        MCP_URL, json.dumps(request("ping")), "application/json", HTTP_X_RETELL_MCP_KEY=f"Bearer {token[1]}"
    )

    assert plain.status_code == prefixed.status_code == 200


def test_the_bearer_scheme_is_case_insensitive(client, token):
    response = client.post(
        MCP_URL, json.dumps(request("ping")), "application/json", HTTP_AUTHORIZATION=f"bearer  {token[1]}"
    )

    assert response.status_code == 200


def test_only_a_hash_of_the_token_is_stored(token):
    import hashlib

    row, secret = token
    assert secret.startswith("mcp_") and len(secret) >= 40
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.token_hint == secret[:8]
    assert secret not in json.dumps(list(type(row).objects.values()), default=str)


def test_use_is_recorded_at_most_once_a_minute(client, token, django_assert_num_queries):
    row, secret = token
    post(client, request("ping"), secret=secret)
    row.refresh_from_db()
    first_use = row.last_used_at
    assert first_use is not None

    # Token lookup only: no write for a token used seconds ago.
    with django_assert_num_queries(1):
        post(client, request("ping"), secret=secret)
    row.refresh_from_db()
    assert row.last_used_at == first_use


def test_a_foreign_origin_is_forbidden(client, token):
    response = post(client, request("ping"), secret=token[1], HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden_origin"


@pytest.mark.parametrize("origin", ["null", "file://", "http://testserver.evil.example"])
def test_odd_origins_are_forbidden(client, token, origin):
    assert post(client, request("ping"), secret=token[1], HTTP_ORIGIN=origin).status_code == 403


def test_our_own_origin_is_allowed(client, token):
    response = post(client, request("ping"), secret=token[1], HTTP_ORIGIN="http://testserver")

    assert response.status_code == 200


def test_an_allow_listed_origin_gets_cors_headers(client, token, settings):
    settings.MCP_ALLOWED_ORIGINS = ["http://localhost:6274"]

    preflight = client.options(
        MCP_URL,
        HTTP_ORIGIN="http://localhost:6274",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, mcp-protocol-version",
    )
    response = post(client, request("ping"), secret=token[1], HTTP_ORIGIN="http://localhost:6274")

    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "http://localhost:6274"
    assert preflight["Access-Control-Allow-Headers"] == "authorization, content-type, mcp-protocol-version"
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "http://localhost:6274"
    assert response["Vary"] == "Origin"


def test_no_csrf_token_is_needed(token):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)

    assert post(strict, request("ping"), secret=token[1]).status_code == 200


def test_an_oversized_body_is_refused(client, token, settings):
    settings.MCP_MAX_BODY_BYTES = 200
    body = request("tools/call", {"name": "lookup_contact", "arguments": {"phone": "1" * 300}})

    response = post(client, body, secret=token[1])

    assert response.status_code == 413
    assert rpc_error(response) == (None, protocol.INVALID_REQUEST)


# --- Wire formats --------------------------------------------------------------------------------


def test_json_is_the_default_answer(client, token):
    response = post(client, request("ping"), secret=token[1])

    assert response["Content-Type"] == "application/json"


def test_a_client_accepting_only_event_streams_gets_one_sse_event(client, token):
    response = post(client, request("ping", id="a-1"), secret=token[1], accept="text/event-stream")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response.content.decode() == 'event: message\ndata: {"jsonrpc":"2.0","id":"a-1","result":{}}\n\n'


def test_a_client_accepting_neither_is_refused(client, token):
    response = post(client, request("ping"), secret=token[1], accept="text/html")

    assert response.status_code == 406


def test_q_zero_means_not_acceptable(client, token):
    response = post(
        client, request("ping"), secret=token[1], accept="application/json;q=0, text/event-stream"
    )

    assert response["Content-Type"] == "text/event-stream"


@pytest.mark.parametrize("accept", ["", "*/*", "application/*"])
def test_lenient_accept_headers_get_json(client, token, accept):
    response = post(client, request("ping"), secret=token[1], accept=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "message",
    [
        notification("notifications/initialized"),
        notification("notifications/cancelled", {"requestId": 1}),
        {"jsonrpc": "2.0", "id": 7, "result": {}},  # a client's response
    ],
)
def test_notifications_and_responses_are_accepted_with_an_empty_202(client, token, message):
    response = post(client, message, secret=token[1])

    assert response.status_code == 202
    assert response.content == b""


# --- Lifecycle and versions ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25", "2024-11-05"])
def test_initialize_echoes_a_supported_version(client, token, version):
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}

    response = post(client, request("initialize", params), secret=token[1])

    result = response.json()["result"]
    assert result["protocolVersion"] == version
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "retellghl"
    assert "Bright Dental" in result["instructions"]
    assert "Mcp-Session-Id" not in response  # stateless: any worker serves any request


@pytest.mark.parametrize("offered", ["2099-01-01", "2026-07-28", "1.0"])
def test_initialize_offers_our_newest_handshake_version_otherwise(client, token, offered):
    response = post(client, request("initialize", {"protocolVersion": offered}), secret=token[1])

    assert response.json()["result"]["protocolVersion"] == "2025-11-25"


def test_initialize_without_a_version_is_invalid_params(client, token):
    response = post(client, request("initialize", {"capabilities": {}}), secret=token[1])

    assert rpc_error(response) == (1, protocol.INVALID_PARAMS)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2025-03-26"])
def test_requests_naming_a_supported_version_are_served(client, token, version):
    assert post(client, request("ping"), secret=token[1], version=version).status_code == 200


@pytest.mark.parametrize("version", ["2099-01-01", "2024-10-07", "latest"])
def test_an_unsupported_protocol_version_header_is_a_400(client, token, version):
    response = post(client, request("tools/list", id=9), secret=token[1], version=version)

    assert response.status_code == 400
    assert rpc_error(response) == (9, protocol.UNSUPPORTED_PROTOCOL_VERSION)
    data = response.json()["error"]["data"]
    assert data == {"supported": list(protocol.SUPPORTED_VERSIONS), "requested": version}
    assert "2025-11-25" in data["supported"]  # so a dual-era client falls back to initialize


# --- JSON-RPC errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"", b"   ", b"[1, 2", b'{"a": NaN}', b"\xff\xfe{"])
def test_unparsable_bodies_are_parse_errors(client, token, body):
    response = post(client, body, secret=token[1])

    assert response.status_code == 400
    assert rpc_error(response) == (None, protocol.PARSE_ERROR)


def test_absurd_nesting_is_a_parse_error_not_a_crash(client, token):
    response = post(client, b"[" * 100_000, secret=token[1])

    assert response.status_code == 400
    assert rpc_error(response) == (None, protocol.PARSE_ERROR)


@pytest.mark.parametrize("escape", ["\\ud800", "\\u0000"])
def test_nul_and_lone_surrogates_in_an_id_are_answered_not_a_crash(client, token, escape):
    # A lone surrogate has no UTF-8 form: echoed as is, it made the response unwritable (a 500).
    body = '{"jsonrpc": "2.0", "id": "a' + escape + 'b", "method": "ping"}'
    response = post(client, body, secret=token[1])

    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": "a\ufffdb", "result": {}}


@pytest.mark.parametrize("escape", ["\\ud800", "\\u0000"])
def test_nul_and_lone_surrogates_in_arguments_are_logged(client, token, mcp_tools, escape):
    # PostgreSQL's jsonb holds neither: the invocation's log line used to be lost there.
    body = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "check_availability", '
    body += '"arguments": {"date": "' + escape + '"}}}'
    response = post(client, body, secret=token[1])

    result = response.json()["result"]
    assert result["isError"] is True and result["structuredContent"]["error"] == "invalid_arguments"
    invocation = ToolInvocation.objects.get()
    assert invocation.arguments == {"date": "\ufffd"}
    assert invocation.result == result["structuredContent"]


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ({"id": 1, "method": "ping"}, 1),  # no jsonrpc member
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 42}, 1),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None),  # MCP ids are never null
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"}, 1),
        ('"ping"', None),  # a JSON string
        (42, None),
    ],
)
def test_invalid_requests(client, token, message, expected_id):
    response = post(client, message, secret=token[1])

    assert response.status_code == 400
    assert rpc_error(response) == (expected_id, protocol.INVALID_REQUEST)


def test_params_as_an_array_are_invalid_params(client, token):
    response = post(
        client, {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": []}, secret=token[1]
    )

    assert response.status_code == 200  # still a request: its error travels like any other
    assert rpc_error(response) == (3, protocol.INVALID_PARAMS)


@pytest.mark.parametrize(
    "method", ["resources/list", "prompts/list", "sampling/createMessage", "server/discover"]
)
def test_unknown_methods(client, token, method):
    response = post(client, request(method, {}, id="m"), secret=token[1])

    assert response.status_code == 200  # a JSON-RPC answer to a valid request
    assert rpc_error(response) == ("m", protocol.METHOD_NOT_FOUND)


def test_a_cursor_we_never_gave_is_invalid_params(client, token, mcp_tools):
    response = post(client, request("tools/list", {"cursor": "abc"}), secret=token[1])

    assert rpc_error(response) == (1, protocol.INVALID_PARAMS)


@pytest.mark.parametrize(
    "params",
    [
        {"name": "no_such_tool", "arguments": {}},
        {"arguments": {}},
        {"name": 5},
        {"name": "lookup_contact", "arguments": ["+14155550123"]},
        {"name": "lookup_contact", "arguments": "phone=+14155550123"},
    ],
)
def test_unknown_tools_and_malformed_calls_are_invalid_params(client, token, mcp_tools, params):
    response = post(client, request("tools/call", params), secret=token[1])

    assert response.status_code == 200
    assert rpc_error(response) == (1, protocol.INVALID_PARAMS)
    assert not ToolInvocation.objects.exists()


def test_an_internal_failure_is_a_json_rpc_internal_error(client, token, mcp_tools, monkeypatch):
    def broken(self):
        raise RuntimeError("database went away")

    monkeypatch.setattr("integrations.mcp.service.McpToolServer.list_tools", broken)

    response = post(client, request("tools/list"), secret=token[1])

    assert rpc_error(response) == (1, protocol.INTERNAL_ERROR)
    assert "database" not in response.content.decode()  # no internals on the wire


# --- Batches (2025-03-26 only) -------------------------------------------------------------------


def test_a_2025_03_26_client_may_batch(client, token, mcp_tools):
    batch = [
        request("ping", id=1),
        notification("notifications/initialized"),
        request("tools/list", id=2),
        request("nope", id=3),
        {"jsonrpc": "2.0"},
    ]

    response = post(client, batch, secret=token[1])  # no version header: 2025-03-26 or older

    answers = response.json()
    assert response.status_code == 200
    assert [answer.get("id") for answer in answers] == [1, 2, 3, None]
    assert answers[0]["result"] == {}
    assert len(answers[1]["result"]["tools"]) == 3
    assert answers[2]["error"]["code"] == protocol.METHOD_NOT_FOUND
    assert answers[3]["error"]["code"] == protocol.INVALID_REQUEST


def test_a_batch_of_notifications_gets_202(client, token):
    batch = [notification("notifications/initialized"), notification("notifications/progress")]

    response = post(client, batch, secret=token[1], version="2025-03-26")

    assert response.status_code == 202
    assert response.content == b""


def test_a_batch_answers_as_several_sse_events_when_asked(client, token):
    batch = [request("ping", id=1), request("ping", id=2)]

    response = post(client, batch, secret=token[1], accept="text/event-stream")

    events = response.content.decode().split("\n\n")[:-1]
    assert [json.loads(event.split("data: ")[1])["id"] for event in events] == [1, 2]


def test_initialize_may_not_be_batched(client, token):
    response = post(client, [request("initialize", {"protocolVersion": "2025-03-26"})], secret=token[1])

    assert [answer["error"]["code"] for answer in response.json()] == [protocol.INVALID_REQUEST]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_later_versions_have_no_batches(client, token, version):
    response = post(client, [request("ping")], secret=token[1], version=version)

    assert response.status_code == 400
    assert rpc_error(response) == (None, protocol.INVALID_REQUEST)


@pytest.mark.parametrize("batch", [[], [request("ping", id=n) for n in range(protocol.MAX_BATCH + 1)]])
def test_empty_and_huge_batches_are_invalid(client, token, batch):
    response = post(client, batch, secret=token[1])

    assert response.status_code == 400
    assert rpc_error(response) == (None, protocol.INVALID_REQUEST)


# --- Tools ---------------------------------------------------------------------------------------


def test_tools_list_describes_the_tools_from_the_database(client, token, mcp_tools):
    mcp_tools["lookup_contact"].description = "Find the caller in Bright Dental's CRM."
    mcp_tools["lookup_contact"].save()
    make_tool("upsert_contact")  # a custom function only: not over MCP
    make_tool("add_note", expose_over_mcp=True, enabled=False)

    response = post(client, request("tools/list"), secret=token[1], version="2025-11-25")

    tools = {tool["name"]: tool for tool in response.json()["result"]["tools"]}
    assert list(tools) == ["add_tags", "check_availability", "lookup_contact"]  # deterministic order
    lookup = tools["lookup_contact"]
    assert lookup["title"] == "Look up a contact"
    assert lookup["description"] == "Find the caller in Bright Dental's CRM."
    assert lookup["inputSchema"] == mcp_tools["lookup_contact"].effective_schema
    assert lookup["inputSchema"]["type"] == "object"
    assert lookup["annotations"] == {
        "title": "Look up a contact",
        "readOnlyHint": True,
        "openWorldHint": False,
    }
    assert tools["add_tags"]["annotations"] == {
        "title": "Add tags",
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
    }


def test_a_renamed_tool_gets_a_title_from_its_name(client, token, location):
    make_tool("book_cleaning", handler="book_appointment", expose_over_mcp=True)
    make_tool("cancel_appointment", expose_over_mcp=True)

    response = post(client, request("tools/list"), secret=token[1])

    tools = {tool["name"]: tool for tool in response.json()["result"]["tools"]}
    assert tools["book_cleaning"]["title"] == "Book cleaning"
    assert tools["book_cleaning"]["annotations"]["idempotentHint"] is False
    assert tools["cancel_appointment"]["annotations"]["destructiveHint"] is True


def test_tools_call_returns_text_and_structured_content_and_logs_it(client, token, mcp_tools, ghl):
    ghl.get(DUPLICATE_SEARCH_URL, json=fixture_json("ghl_duplicate_search_found"))

    response = post(
        client,
        request("tools/call", {"name": "lookup_contact", "arguments": {"phone": "(415) 555-0123"}}),
        secret=token[1],
        version="2025-06-18",
    )

    result = response.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["found"] is True
    assert result["structuredContent"]["message"] == "I found the record for Dana."
    assert result["content"] == [
        {"type": "text", "text": json.dumps(result["structuredContent"], ensure_ascii=False)}
    ]
    (sent,) = ghl.calls
    assert sent.request.url == f"{DUPLICATE_SEARCH_URL}?locationId=loc_BrightDental1&number=%2B14155550123"
    assert sent.request.headers["Authorization"] == "Bearer pit-test-token-0000"
    invocation = ToolInvocation.objects.get()
    assert invocation.source == ToolInvocation.Source.MCP
    assert invocation.mcp_token == token[0]
    assert invocation.definition == mcp_tools["lookup_contact"]
    assert invocation.arguments == {"phone": "(415) 555-0123"}
    assert invocation.result == result["structuredContent"]
    assert invocation.call_id == ""


def test_bad_arguments_are_a_tool_error_the_model_can_read(client, token, mcp_tools):
    response = post(
        client,
        request("tools/call", {"name": "check_availability", "arguments": {"date": "next tuesday"}}),
        secret=token[1],
    )

    result = response.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"] == "invalid_arguments"
    assert result["structuredContent"]["details"]
    assert ToolInvocation.objects.get().error_code == "invalid_arguments"


def test_a_ghl_outage_is_a_tool_error_too(client, token, mcp_tools, ghl):
    ghl.get(DUPLICATE_SEARCH_URL, status=503, json={"message": "unavailable"})

    response = post(
        client,
        request("tools/call", {"name": "lookup_contact", "arguments": {"phone": "+14155550123"}}),
        secret=token[1],
    )

    result = response.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"] == "ghl_unavailable"


def test_missing_arguments_mean_an_empty_object(client, token, mcp_tools):
    response = post(client, request("tools/call", {"name": "lookup_contact"}), secret=token[1])

    # No phone and no caller over MCP: the tool asks for one.
    assert response.json()["result"]["structuredContent"]["error"] == "phone_needed"


# --- What a token may see and run ----------------------------------------------------------------


def test_a_token_scoped_to_some_tools_sees_and_runs_only_those(client, location, mcp_tools, ghl):
    _, secret = make_token("Lookups only", location, tools=[mcp_tools["lookup_contact"]])

    listed = post(client, request("tools/list"), secret=secret)
    refused = post(
        client,
        request("tools/call", {"name": "check_availability", "arguments": {"date": "2026-12-08"}}),
        secret=secret,
    )

    assert tool_names(listed) == ["lookup_contact"]
    assert rpc_error(refused) == (1, protocol.INVALID_PARAMS)
    assert refused.json()["error"]["message"] == "Unknown tool: check_availability"
    assert not ToolInvocation.objects.exists()


def test_a_scoped_token_sees_nothing_once_its_tools_are_withdrawn(client, location, mcp_tools):
    lookup = mcp_tools["lookup_contact"]
    _, secret = make_token("Lookups only", location, tools=[lookup])
    lookup.expose_over_mcp = False
    lookup.save()

    assert tool_names(post(client, request("tools/list"), secret=secret)) == []  # not "everything"


def test_tools_pinned_to_another_location_are_hidden_and_refused(
    client, token, location, other_location, ghl
):
    make_tool("lookup_contact", expose_over_mcp=True, location=other_location)
    make_tool("check_availability", expose_over_mcp=True, location=location)

    listed = post(client, request("tools/list"), secret=token[1])
    refused = post(
        client, request("tools/call", {"name": "lookup_contact", "arguments": {}}), secret=token[1]
    )

    assert tool_names(listed) == ["check_availability"]
    assert rpc_error(refused) == (1, protocol.INVALID_PARAMS)


def test_a_token_of_another_location_acts_on_that_location(client, other_location, mcp_tools, ghl):
    _, secret = make_token("Sunny Smiles agent", other_location)
    ghl.get(DUPLICATE_SEARCH_URL, json=fixture_json("ghl_duplicate_search_none"))

    initialized = post(client, request("initialize", {"protocolVersion": "2025-11-25"}), secret=secret)
    response = post(
        client,
        request("tools/call", {"name": "lookup_contact", "arguments": {"phone": "+14155550123"}}),
        secret=secret,
    )

    assert "Sunny Smiles" in initialized.json()["result"]["instructions"]
    assert response.json()["result"]["structuredContent"]["found"] is False
    (sent,) = ghl.calls
    assert sent.request.url == f"{DUPLICATE_SEARCH_URL}?locationId=loc_SunnySmiles02&number=%2B14155550123"
    assert sent.request.headers["Authorization"] == "Bearer pit-sunny-0002"


# --- 2026-07-28: the stateless revision ----------------------------------------------------------

MODERN = "2026-07-28"


def modern(client, method, params=None, *, secret, name=None, **headers):
    return post(
        client,
        request(method, modern_params(params)),
        secret=secret,
        version=MODERN,
        **{**modern_headers(method, name), **headers},
    )


def test_server_discover_lists_our_versions(client, token):
    response = modern(client, "server/discover", secret=token[1])

    result = response.json()["result"]
    assert result["supportedVersions"] == list(protocol.SUPPORTED_VERSIONS)
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["resultType"] == "complete"
    assert (result["ttlMs"], result["cacheScope"]) == (protocol.LIST_TTL_MS, "private")
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "retellghl"


def test_modern_tools_list_and_call(client, token, mcp_tools, ghl):
    ghl.get(DUPLICATE_SEARCH_URL, json=fixture_json("ghl_duplicate_search_found"))

    listed = modern(client, "tools/list", secret=token[1])
    called = modern(
        client,
        "tools/call",
        {"name": "lookup_contact", "arguments": {"phone": "+14155550123"}},
        secret=token[1],
        name="lookup_contact",
    )

    assert listed.json()["result"]["cacheScope"] == "private"
    assert len(listed.json()["result"]["tools"]) == 3
    result = called.json()["result"]
    assert (result["resultType"], result["isError"]) == ("complete", False)
    assert result["structuredContent"]["found"] is True


def test_modern_requests_need_their_meta(client, token):
    response = post(
        client, request("tools/list", {}), secret=token[1], version=MODERN, **modern_headers("tools/list")
    )

    assert response.status_code == 400
    assert rpc_error(response) == (1, protocol.INVALID_PARAMS)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Mcp-Method
        {"HTTP_MCP_METHOD": "tools/call"},  # disagrees with the body
    ],
)
def test_modern_method_header_must_match(client, token, headers):
    response = post(
        client, request("tools/list", modern_params()), secret=token[1], version=MODERN, **headers
    )

    assert response.status_code == 400
    assert rpc_error(response) == (1, protocol.HEADER_MISMATCH)


def test_modern_meta_version_must_match_the_header(client, token):
    params = modern_params(version="2025-11-25")

    response = post(
        client, request("tools/list", params), secret=token[1], version=MODERN, **modern_headers("tools/list")
    )

    assert rpc_error(response) == (1, protocol.HEADER_MISMATCH)


@pytest.mark.parametrize("name_header", [None, "check_availability", "=?base64?!!!?="])
def test_modern_name_header_must_match(client, token, mcp_tools, name_header):
    response = modern(
        client, "tools/call", {"name": "lookup_contact", "arguments": {}}, secret=token[1], name=name_header
    )

    assert response.status_code == 400
    assert rpc_error(response) == (1, protocol.HEADER_MISMATCH)
    assert not ToolInvocation.objects.exists()


def test_modern_name_header_may_be_base64(client, token, mcp_tools):
    response = modern(
        client,
        "tools/call",
        {"name": "lookup_contact", "arguments": {}},
        secret=token[1],
        name="=?base64?bG9va3VwX2NvbnRhY3Q=?=",
    )

    assert response.json()["result"]["structuredContent"]["error"] == "phone_needed"


def test_modern_unknown_tool_and_method(client, token, mcp_tools):
    unknown_tool = modern(
        client, "tools/call", {"name": "nope", "arguments": {}}, secret=token[1], name="nope"
    )
    unknown_method = modern(client, "ping", secret=token[1])
    handshake = modern(client, "initialize", {"protocolVersion": "2025-11-25"}, secret=token[1])

    assert unknown_tool.status_code == 400
    assert rpc_error(unknown_tool) == (1, protocol.INVALID_PARAMS)
    assert unknown_method.status_code == 404  # the spec: method not found is a 404 in this revision
    assert rpc_error(unknown_method) == (1, protocol.METHOD_NOT_FOUND)
    assert rpc_error(handshake) == (1, protocol.METHOD_NOT_FOUND)


def test_modern_notifications_are_accepted_and_batches_are_not(client, token):
    accepted = post(client, notification("notifications/cancelled"), secret=token[1], version=MODERN)
    batch = post(client, [request("tools/list", modern_params())], secret=token[1], version=MODERN)

    assert accepted.status_code == 202
    assert batch.status_code == 400
    assert rpc_error(batch) == (None, protocol.INVALID_REQUEST)
