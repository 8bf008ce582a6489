"""Helpers for the MCP tests: tokens and raw JSON-RPC posts."""

import json

MCP_URL = "/api/mcp"
BOTH = "application/json, text/event-stream"  # what MCP clients send


def make_token(name, location, *, tools=(), enabled=True):
    from integrations.models import McpToken

    token = McpToken(name=name, location=location, enabled=enabled)
    secret = token.set_new_token()
    token.save()
    token.tools.set(tools)
    return token, secret


def request(method, params=None, id=1):
    message = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method, params=None):
    message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def post(client, body, *, secret=None, accept=BOTH, version=None, url=MCP_URL, **headers):
    """POST `body` (a JSON-able value, or raw bytes/str) to the MCP endpoint with a bearer token."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    extra = {"HTTP_ACCEPT": accept}
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    if version is not None:
        extra["HTTP_MCP_PROTOCOL_VERSION"] = version
    return client.post(url, data=data, content_type="application/json", **extra, **headers)


def modern_params(params=None, version="2026-07-28"):
    """`params` with the per-request `_meta` a 2026-07-28 request carries."""
    return {
        **(params or {}),
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        },
    }


def modern_headers(method, name=None):
    headers = {"HTTP_MCP_METHOD": method}
    if name is not None:
        headers["HTTP_MCP_NAME"] = name
    return headers
