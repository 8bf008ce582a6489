"""`/api/mcp`: the MCP tool server over Streamable HTTP (REFERENCE.md §8), under plain WSGI.

The HTTP gate first — method, Origin, token — answering like every other endpoint here
(`{"error", "message"}`; 401 with a `WWW-Authenticate: Bearer` challenge). Past it the caller speaks
MCP, so every answer is JSON-RPC: `integrations.mcp.protocol.handle` decides what to say and with which
status, and this view only picks the wire format: JSON by default, one SSE event when the client
accepts only `text/event-stream`, 202 with no body for notifications.

Stateless on purpose: no `Mcp-Session-Id` is issued (the protocol lets a server omit it), so any
gunicorn worker can serve any request and nothing has to expire. GET (a server-initiated stream) and
DELETE (ending a session) have nothing to serve: 405.
"""

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.ghl import reports_ghl_time
from integrations.mcp import protocol
from integrations.mcp.service import McpToolServer, authenticate
from retellghl.api import json_error

JSON_TYPES = {"application/json", "application/*", "*/*"}
EVENT_STREAM_TYPES = {"text/event-stream", "text/*"}


@csrf_exempt  # clients authenticate with a header token, which a cross-site form cannot send
@reports_ghl_time
def mcp_endpoint(request):
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, request):
        # DNS rebinding: a web page must not reach a server on the reader's network through its browser.
        return json_error(403, "forbidden_origin", f"Origin {origin!r} may not call this MCP server.")
    if request.method == "OPTIONS":
        return _with_cors(_preflight(request), origin, request)
    if request.method != "POST":
        response = json_error(
            405,
            "method_not_allowed",
            "This MCP server takes POSTed JSON-RPC messages only: it opens no server-initiated stream "
            "(GET) and keeps no session to end (DELETE).",
        )
        response["Allow"] = "POST, OPTIONS"
        return _with_cors(response, origin, request)

    presented = presented_token(request)
    token = authenticate(presented)
    if token is None:
        return _with_cors(_unauthorized(presented), origin, request)
    return _with_cors(_answer(request, token), origin, request)


def _answer(request, token):
    wire_format = response_format(request.headers.get("Accept", ""))
    if wire_format is None:
        return _rpc_error(406, "Not Acceptable: accept application/json or text/event-stream.")
    body = _bounded_body(request)
    if body is None:
        limit = settings.MCP_MAX_BODY_BYTES
        return _rpc_error(413, f"Request too large: at most {limit} bytes per message.")
    reply = protocol.handle(body, request.headers, McpToolServer(token))
    return render(reply, wire_format)


# --- The gate ------------------------------------------------------------------------------------


def origin_allowed(origin, request):
    """Our own host, or one of MCP_ALLOWED_ORIGINS. (Requests without Origin never get here.)"""
    normalised = origin.rstrip("/").lower()
    if normalised in settings.MCP_ALLOWED_ORIGINS:
        return True
    try:
        origin_host = urlsplit(normalised).netloc
    except ValueError:
        return False
    return bool(origin_host) and origin_host == request.get_host().lower()


def presented_token(request):
    """The token from `Authorization: Bearer <token>`, else from the MCP_TOKEN_HEADER header; or ""."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    value = request.headers.get(settings.MCP_TOKEN_HEADER, "").strip()
    # Some clients paste the whole "Bearer <token>" into a custom header: take the token.
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def _unauthorized(presented):
    # RFC 6750: the challenge names invalid_token only when a token was presented.
    if presented:
        response = json_error(401, "invalid_token", "Unknown or disabled MCP token.")
        response["WWW-Authenticate"] = 'Bearer realm="mcp", error="invalid_token"'
    else:
        header = settings.MCP_TOKEN_HEADER
        message = f"Send an MCP token as 'Authorization: Bearer <token>' or in the {header} header."
        response = json_error(401, "missing_token", message)
        response["WWW-Authenticate"] = 'Bearer realm="mcp"'
    return response


def _preflight(request):
    response = HttpResponse(status=204)
    response["Allow"] = "POST, OPTIONS"
    if request.headers.get("Origin") is not None:
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        # The origin passed the allow-list, so let it send what it asks for (Authorization, MCP-*).
        requested = request.headers.get("Access-Control-Request-Headers", "")
        if requested:
            response["Access-Control-Allow-Headers"] = requested
        response["Access-Control-Max-Age"] = "600"
    return response


def _with_cors(response, origin, request):
    """Let an allowed cross-origin browser client (e.g. an MCP inspector) read the answer."""
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "WWW-Authenticate"
        response["Vary"] = "Origin"
    return response


# --- Reading and writing MCP ---------------------------------------------------------------------


def response_format(accept):
    """ "json", "sse" or None (nothing we can send) from an Accept header. JSON when both are fine."""
    if not accept.strip():
        return "json"  # a client that states no preference takes JSON, the simpler of the two
    accepted = set()
    for media_range in accept.split(","):
        media_type, *parameters = media_range.split(";")
        if not any(_is_q_zero(parameter) for parameter in parameters):
            accepted.add(media_type.strip().lower())
    if accepted & JSON_TYPES:
        return "json"
    if accepted & EVENT_STREAM_TYPES:
        return "sse"
    return None


def _is_q_zero(parameter):
    name, _, value = parameter.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def _bounded_body(request):
    """The raw body, or None when it is larger than MCP_MAX_BODY_BYTES."""
    limit = settings.MCP_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None  # refused before reading it
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= limit else None


def render(reply, wire_format):
    if reply.body is None:
        return HttpResponse(status=reply.status)  # 202: a notification or response was accepted
    if wire_format == "sse" and reply.status == 200:
        # The whole answer as one finished stream (a batch: one event per response). Errors with a
        # 4xx status stay JSON, as clients read those before looking for a stream.
        messages = reply.body if isinstance(reply.body, list) else [reply.body]
        events = "".join(f"event: message\ndata: {_dumps(message)}\n\n" for message in messages)
        response = HttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    return HttpResponse(_dumps(reply.body), content_type="application/json", status=reply.status)


def _rpc_error(status, message):
    return render(protocol.error_reply(status, protocol.INVALID_REQUEST, message), "json")


def _dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), cls=DjangoJSONEncoder)
