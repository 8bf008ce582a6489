"""The Model Context Protocol as a pure function: one POSTed body (+ its MCP headers) → one reply.

No HTTP, no database: `handle(body, headers, tools)` decodes JSON-RPC 2.0, negotiates the protocol
version, dispatches `initialize` / `ping` / `server/discover` / `tools/list` / `tools/call` to a
`ToolBackend`, and says which HTTP status the answer travels with. `integrations.mcp.views` turns the
`Reply` into a response (JSON or one SSE event); `integrations.mcp.service` is the backend.

Two eras share the endpoint (REFERENCE.md §8; spec "Versioning: Backward Compatibility"):

- **Handshake era** (2024-11-05 … 2025-11-25): `initialize` negotiates a version; later requests name
  it in the `MCP-Protocol-Version` header (2025-06-18 and later) or send no header (2025-03-26 and
  earlier, which we then assume). We keep no session: every request stands alone, which those
  revisions allow (a server MAY omit `Mcp-Session-Id`). JSON-RPC batches are accepted only where the
  revision had them (no header, or 2025-03-26 / 2024-11-05): 2025-06-18 removed batching.
- **Stateless era** (2026-07-28): no handshake; every request carries `_meta` with its protocol
  version and client capabilities, and mirrors `method` / `params.name` in the `Mcp-Method` /
  `Mcp-Name` headers, which must agree with the body. Results carry `resultType`, lists carry cache
  hints (`ttlMs`, `cacheScope`), and `server/discover` lists what we support.

An `MCP-Protocol-Version` header we do not support is refused with 400 and
`UnsupportedProtocolVersion` (-32022) listing our versions, so a newer client falls back.
"""

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from retellghl.api import parse_json_body

logger = logging.getLogger(__name__)

# JSON-RPC 2.0 error codes, and the ones MCP defines in its reserved range (2026-07-28).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

MODERN_VERSIONS = ("2026-07-28",)
# Newest first: an `initialize` offering a version we do not know gets the newest one back.
# 2024-11-05 is kept for older clients that open with it over this transport: its tool messages are
# the same, and the fields added since (title, structuredContent, annotations) are ignorable extras.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
SUPPORTED_VERSIONS = MODERN_VERSIONS + HANDSHAKE_VERSIONS
# Revisions whose clients may send JSON-RPC batches (arrays); removed in 2025-06-18.
BATCH_VERSIONS = ("2025-03-26", "2024-11-05")
MAX_BATCH = 32

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
# How long a 2026-07-28 client may reuse a tools/list or server/discover answer. Tools are edited in
# the admin, so keep it short enough that a change reaches clients within a minute. "private": the
# list depends on the token (its location and allowed tools), so no shared cache may reuse it.
LIST_TTL_MS = 60_000
CACHE_SCOPE = "private"


class UnknownTool(Exception):
    """`tools/call` named a tool this client cannot see: a JSON-RPC error, not a tool result."""


class ToolBackend(Protocol):
    """What the protocol needs from the tool server (see `integrations.mcp.service.McpToolServer`)."""

    server_info: dict  # {"name", "version", "title"?}
    instructions: str

    def list_tools(self) -> list[dict]: ...

    def call_tool(self, name: str, arguments: dict) -> dict:
        """A CallToolResult ({content, structuredContent?, isError}); raises UnknownTool."""


@dataclass(frozen=True)
class Reply:
    """What to answer: an HTTP status and a JSON body (a message, a batch list, or None for 202)."""

    status: int
    body: dict | list | None = None


class RpcError(Exception):
    """A JSON-RPC error to answer with; `status` is the HTTP status it travels with."""

    def __init__(self, code, message, *, data=None, status=200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status

    def response(self, request_id):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


def error_reply(status, code, message, *, request_id=None, data=None):
    """A Reply carrying one JSON-RPC error (id null when the request's id is unknown)."""
    return Reply(status, RpcError(code, message, data=data).response(request_id))


# --- Entry point ---------------------------------------------------------------------------------


def handle(body: bytes, headers: Mapping[str, str], tools: ToolBackend) -> Reply:
    """Answer one POSTed body. `headers` is case-insensitive (Django's `request.headers`)."""
    try:
        message = _decode(body)
    except ValueError as exc:
        return error_reply(400, PARSE_ERROR, f"Parse error: {exc}")

    version = headers.get("MCP-Protocol-Version")
    if version is not None and version not in SUPPORTED_VERSIONS:
        return error_reply(
            400,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            request_id=_readable_id(message),
            data={"supported": list(SUPPORTED_VERSIONS), "requested": version},
        )
    if version in MODERN_VERSIONS:
        return _handle_modern(message, version, headers, tools)
    return _handle_handshake_era(message, version, tools)


def _decode(body):
    """The JSON value of `body`; ValueError for anything that is not strict JSON.

    Parsed like every other endpoint's body: NUL and lone surrogates (only expressible as \\u escapes)
    become U+FFFD, so an id echoed back can be written as UTF-8 and tool arguments can be logged on
    PostgreSQL.
    """
    if not body or not body.strip():
        raise ValueError("empty body")
    return parse_json_body(body)  # InvalidJson is a ValueError


def _readable_id(message):
    """The request id when it can be read from a message we refuse, else None."""
    if isinstance(message, dict):
        request_id = message.get("id")
        if _valid_id(request_id):
            return request_id
    return None


def _valid_id(value):
    # MCP narrows JSON-RPC: a string or an integer, never null (and a bool is not an integer).
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# --- Message shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: str | int
    method: str
    params: dict


NOTIFICATION = "notification"
RESPONSE = "response"  # a client's answer to a server request; we never send any, so nothing waits


def _classify(message):
    """A Request, NOTIFICATION or RESPONSE; raises RpcError(INVALID_REQUEST / INVALID_PARAMS)."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid Request: expected a JSON-RPC 2.0 object ("jsonrpc": "2.0").')
    if "method" not in message:
        if "id" in message and ("result" in message or "error" in message):
            return RESPONSE
        raise RpcError(INVALID_REQUEST, "Invalid Request: no method.")
    method = message["method"]
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string.")
    if "id" not in message:
        return NOTIFICATION
    if not _valid_id(message["id"]):
        raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer.")
    params = message.get("params")
    if params is None:
        params = {}
    elif isinstance(params, list):
        raise RpcError(INVALID_PARAMS, "Invalid params: MCP params are an object, not an array.")
    elif not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: params must be an object.")
    return Request(message["id"], method, params)


# --- Handshake era (2024-11-05 … 2025-11-25) -----------------------------------------------------


def _handle_handshake_era(message, version, tools):
    if isinstance(message, list):
        return _handle_batch(message, version, tools)
    return _handle_one(message, version, tools, in_batch=False)


def _handle_batch(messages, version, tools):
    if version is not None and version not in BATCH_VERSIONS:
        return error_reply(
            400,
            INVALID_REQUEST,
            f"Invalid Request: protocol version {version} has no JSON-RPC batches; "
            "send one message per POST.",
        )
    if not messages:
        return error_reply(400, INVALID_REQUEST, "Invalid Request: empty batch.")
    if len(messages) > MAX_BATCH:
        return error_reply(400, INVALID_REQUEST, f"Invalid Request: at most {MAX_BATCH} messages per batch.")
    answers = [_handle_one(message, version, tools, in_batch=True).body for message in messages]
    answers = [answer for answer in answers if answer is not None]
    # Only notifications and responses: nothing to answer (JSON-RPC: no empty array).
    return Reply(200, answers) if answers else Reply(202)


def _handle_one(message, version, tools, *, in_batch):
    try:
        kind = _classify(message)
    except RpcError as exc:
        # Not a JSON-RPC message at all: a 400 like a parse error (inside a batch, one error among
        # the answers). A request with array params is still a request: its error travels with 200.
        status = 400 if exc.code == INVALID_REQUEST and not in_batch else 200
        return Reply(status, exc.response(_readable_id(message)))
    if kind in (NOTIFICATION, RESPONSE):
        # notifications/initialized, notifications/cancelled...: nothing to do for a stateless server
        # whose requests all finish before their response is sent.
        return Reply(202)
    try:
        if kind.method == "initialize" and in_batch:
            raise RpcError(INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch.")
        result = _dispatch_handshake_era(kind, tools)
    except RpcError as exc:
        return Reply(200, exc.response(kind.id))
    except Exception:
        logger.exception("MCP %s failed", kind.method)
        return Reply(200, RpcError(INTERNAL_ERROR, "Internal error").response(kind.id))
    return Reply(200, {"jsonrpc": "2.0", "id": kind.id, "result": result})


def _dispatch_handshake_era(request, tools):
    method, params = request.method, request.params
    if method == "initialize":
        return _initialize(params, tools)
    if method == "ping":
        return {}
    if method == "tools/list":
        return _tools_list(params, tools)
    if method == "tools/call":
        return _tools_call(params, tools)
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")


def _initialize(params, tools):
    requested = params.get("protocolVersion")
    if not isinstance(requested, str):
        raise RpcError(INVALID_PARAMS, "Invalid params: initialize needs a protocolVersion string.")
    # Echo the client's version when we speak it, else offer our newest (the client decides).
    negotiated = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[0]
    return {
        "protocolVersion": negotiated,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": tools.server_info,
        "instructions": tools.instructions,
    }


# --- Shared methods ------------------------------------------------------------------------------


def _tools_list(params, tools):
    if params.get("cursor") is not None:
        # Every tool comes in one page, so no cursor of ours exists (the spec: invalid cursor → -32602).
        raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor (all tools are returned at once).")
    return {"tools": tools.list_tools()}


def _tools_call(params, tools):
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise RpcError(INVALID_PARAMS, "Invalid params: tools/call needs the tool's name.")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: arguments must be an object.")
    try:
        return tools.call_tool(name, arguments)
    except UnknownTool:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}") from None


def _discover(tools):
    return {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": {"tools": {"listChanged": False}},
        "instructions": tools.instructions,
        "ttlMs": LIST_TTL_MS,
        "cacheScope": CACHE_SCOPE,
    }


# --- Stateless era (2026-07-28) ------------------------------------------------------------------

# The HTTP status each error travels with in this era (spec, Streamable HTTP "Request Metadata").
_MODERN_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}


def _handle_modern(message, version, headers, tools):
    if isinstance(message, list):
        return error_reply(400, INVALID_REQUEST, "Invalid Request: send one JSON-RPC message per POST.")
    try:
        kind = _classify(message)
    except RpcError as exc:
        return Reply(400, exc.response(_readable_id(message)))
    if kind == NOTIFICATION:
        return Reply(202)  # this revision defines no client notifications over HTTP; accept and drop
    if kind == RESPONSE:
        return error_reply(400, INVALID_REQUEST, "Invalid Request: clients must not send responses.")
    try:
        _check_envelope(kind, version, headers)
        result = _dispatch_modern(kind, tools)
    except RpcError as exc:
        return Reply(_MODERN_STATUS.get(exc.code, 200), exc.response(kind.id))
    except Exception:
        logger.exception("MCP %s failed", kind.method)
        return Reply(200, RpcError(INTERNAL_ERROR, "Internal error").response(kind.id))
    result = {
        **result,
        "resultType": "complete",
        "_meta": {SERVER_INFO_META: tools.server_info},
    }
    return Reply(200, {"jsonrpc": "2.0", "id": kind.id, "result": result})


def _check_envelope(request, version, headers):
    """The per-request `_meta` and the headers that mirror the body must be present and agree."""
    meta = request.params.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    missing = [key for key in (PROTOCOL_VERSION_META, CLIENT_CAPABILITIES_META) if key not in meta]
    if missing:
        raise RpcError(INVALID_PARAMS, f"Invalid params: _meta is missing {', '.join(missing)}.")
    if meta[PROTOCOL_VERSION_META] != version:
        raise RpcError(
            HEADER_MISMATCH,
            f"Header mismatch: MCP-Protocol-Version header {version!r} does not match "
            f"_meta protocol version {meta[PROTOCOL_VERSION_META]!r}.",
        )
    method_header = headers.get("Mcp-Method")
    if method_header is None:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: the Mcp-Method header is required.")
    if method_header != request.method:
        raise RpcError(
            HEADER_MISMATCH,
            f"Header mismatch: Mcp-Method header {method_header!r} does not match method {request.method!r}.",
        )
    if request.method == "tools/call":
        name_header = headers.get("Mcp-Name")
        if name_header is None:
            raise RpcError(HEADER_MISMATCH, "Header mismatch: tools/call needs the Mcp-Name header.")
        name = decode_header_value(name_header)
        if name is None:
            raise RpcError(HEADER_MISMATCH, "Header mismatch: the Mcp-Name header is malformed.")
        if name != request.params.get("name"):
            raise RpcError(
                HEADER_MISMATCH,
                f"Header mismatch: Mcp-Name header {name!r} does not match the tool name in the body.",
            )


def decode_header_value(value):
    """A header value, Base64-decoded when it uses the spec's `=?base64?…?=` sentinel; None if broken."""
    if value.startswith("=?base64?") and value.endswith("?=") and len(value) >= len("=?base64??="):
        try:
            return base64.b64decode(value[len("=?base64?") : -len("?=")], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value


def _dispatch_modern(request, tools):
    method, params = request.method, request.params
    if method == "server/discover":
        return _discover(tools)
    if method == "tools/list":
        return {**_tools_list(params, tools), "ttlMs": LIST_TTL_MS, "cacheScope": CACHE_SCOPE}
    if method == "tools/call":
        return _tools_call(params, tools)
    # initialize and ping do not exist in this revision.
    raise RpcError(
        METHOD_NOT_FOUND,
        f"Method not found: {method}"
        + (f" (protocol {MODERN_VERSIONS[0]} has no handshake)" if method == "initialize" else ""),
    )
