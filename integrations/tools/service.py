"""Running a tool, whatever the transport: validate → deduplicate → call GHL → speakable answer → log.

`run_tool(definition, arguments, context)` is the one entry point; Retell custom functions
(`custom_function_request`) and the MCP server call it alike, so both get the same results, the same
idempotency and the same `calls.ToolInvocation` log.

The answer is always a JSON object with a short `message` an agent can say. Failures are answers
too, `{"error": code, "message": ...}`, never exceptions: a caller is waiting in silence, and an
HTTP error would only make Retell retry.
"""

import functools
import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import requests
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from jsonschema import Draft202012Validator

from calls.models import ToolInvocation
from integrations.errors import NotConfigured, NotFound, RateLimited, RetryableError, VendorError
from integrations.ghl import ghl_session, ghl_stopwatch
from integrations.models import Agent, GhlLocation, ToolDefinition
from integrations.phones import InvalidPhoneNumber
from integrations.tools.context import ToolContext
from integrations.tools.registry import ToolError

logger = logging.getLogger(__name__)

Status = ToolInvocation.Status

# A RUNNING invocation older than this died with its worker (no handler runs anywhere near as long:
# a handful of GHL calls, each bounded by the live timeouts). A retry may then act again.
ABANDONED_AFTER = timedelta(minutes=2)
DUPLICATE_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ToolResult:
    payload: dict  # the JSON answer, always with a speakable "message"
    invocation_id: int | None = None
    replayed: bool = False  # a duplicate request answered with the first request's result

    @property
    def is_error(self):
        return "error" in self.payload


class ToolUnavailable(Exception):
    """The request names no usable tool (404) or one the calling agent may not use (403)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --- The entry point -----------------------------------------------------------------------------


def run_tool(definition, arguments, context):
    """Run `definition` with `arguments` for `context` (a ToolContext) and log it; returns a ToolResult."""
    started = time.perf_counter()
    record = {
        "call_id": context.call_id,
        "agent_id": context.agent_id,
        "tool_name": definition.name,
        "handler": definition.handler,
        "definition_id": definition.pk,
        "source": context.source,
        "mcp_token_id": context.mcp_token_id,
        "arguments": arguments,
    }
    spec = definition.handler_spec
    if spec is None:
        payload = _error("tool_unavailable", "That tool isn't available right now.")
        return _finish(None, record, started, payload, f"unknown handler {definition.handler!r}")

    try:
        schema, validator = _validator(definition)
        arguments = _clean_arguments(arguments, schema)
        record["arguments"] = arguments
        problems = sorted(validator.iter_errors(arguments), key=lambda error: _path(error))
    except Exception as exc:  # a schema the admin accepted but cannot be applied (e.g. a $ref)
        logger.exception("tool %s: argument schema unusable", definition.name)
        payload = _error("tool_unavailable", "That tool isn't available right now.")
        return _finish(None, record, started, payload, f"argument schema: {type(exc).__name__}: {exc}")
    if problems:
        details = [_describe(problem) for problem in problems[:10]]
        payload = _error(
            "invalid_arguments",
            "I'm missing some details to do that.",
            details=details,
            hint="Fix the arguments as the details say, asking the caller if needed, then call again.",
        )
        return _finish(None, record, started, payload, "; ".join(details))

    claimed = None
    if spec.side_effect and context.call_id:
        key = idempotency_key(context.call_id, definition.name, arguments)
        claimed, previous = _claim(key, record)
        if claimed is None:
            return _replay(previous)

    with ghl_stopwatch() as ghl:
        payload, error = _execute(spec, definition, arguments, context)
    return _finish(claimed, record, started, payload, error, ghl_ms=ghl.ms)


def idempotency_key(call_id, tool_name, arguments):
    """sha256 of (call, tool, arguments) as canonical JSON: equal requests give equal keys."""
    canonical = json.dumps(
        [call_id, tool_name, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- Retell custom functions ---------------------------------------------------------------------


def custom_function_request(tool_name, body):
    """Answer one Retell custom-function request (REFERENCE.md §4) for the tool named in the URL.

    `body` is `{name, args, call}`, or just the args when the function is set to `args_at_root`.
    Raises ToolUnavailable for unknown/disabled tools and agents not allowed to use them.
    """
    arguments, call = split_custom_function_body(body)
    agent_id = call.get("agent_id") if isinstance(call, dict) else ""
    agent_id = agent_id if isinstance(agent_id, str) else ""
    definition = find_custom_function(tool_name, agent_id=agent_id)
    if definition is None:
        raise ToolUnavailable(404, "unknown_tool", f"No enabled custom function is named {tool_name!r}.")
    if definition.restricted and not definition.agent_allowed:
        who = f"agent {agent_id!r}" if agent_id else "a request without a call object (args_at_root)"
        raise ToolUnavailable(403, "agent_not_allowed", f"Tool {tool_name!r} is not enabled for {who}.")
    location = cached_location(definition.effective_location_id, definition.effective_location_stamp)
    context = ToolContext.from_retell_call(call, location=location)
    return run_tool(definition, arguments, context)


def split_custom_function_body(body):
    """(arguments, call object or None) from either request form."""
    if isinstance(body, dict) and (isinstance(body.get("call"), dict) or set(body) == {"name", "args"}):
        return body.get("args") if body.get("args") is not None else {}, body.get("call")
    return (body if body is not None else {}), None  # a JSON null: no arguments at all


def find_custom_function(name, *, agent_id):
    """The enabled definition served at /api/functions/<name> and the caller's rights, in one query.

    Annotated with `restricted` (it names agents), `agent_allowed` (the caller is one of them) and
    the location it acts on (`effective_location_id`: pinned, else the calling agent's, else the
    GHL_LOCATION_ID one; with `effective_location_stamp`, that location's updated_at).

    Written as SQL on purpose: it runs before every tool call while a caller waits, and compiling the
    equivalent ORM expression (three subqueries) costs ~10x more than running it.
    """
    params = {"agent": agent_id, "name": name, "default_location": settings.GHL_LOCATION_ID}
    definitions = list(ToolDefinition.objects.raw(_lookup_sql(), params))
    if not definitions:
        return None
    definition = definitions[0]
    definition.restricted = bool(definition.restricted)  # SQLite answers EXISTS with 0/1
    definition.agent_allowed = bool(definition.agent_allowed)
    return definition


@functools.cache
def _lookup_sql():
    quote = connection.ops.quote_name
    tools, agents, locations = (quote(model._meta.db_table) for model in (ToolDefinition, Agent, GhlLocation))
    links = quote(ToolDefinition.agents.through._meta.db_table)
    return f"""
        SELECT tool.*,
            EXISTS (SELECT 1 FROM {links} link WHERE link.tooldefinition_id = tool.id) AS restricted,
            EXISTS (
                SELECT 1 FROM {links} link JOIN {agents} agent ON agent.id = link.agent_id
                WHERE link.tooldefinition_id = tool.id AND agent.retell_agent_id = %(agent)s
            ) AS agent_allowed,
            location.id AS effective_location_id,
            location.updated_at AS effective_location_stamp
        FROM {tools} tool
        LEFT JOIN {locations} location ON location.id = COALESCE(
            tool.location_id,
            (SELECT agent.location_id FROM {agents} agent WHERE agent.retell_agent_id = %(agent)s),
            (SELECT fallback.id FROM {locations} fallback WHERE fallback.location_id = %(default_location)s)
        )
        WHERE tool.name = %(name)s AND tool.enabled = TRUE AND tool.expose_as_custom_function = TRUE
    """


_locations = {}  # location pk → (updated_at as the lookup query returned it, GhlLocation)


def cached_location(pk, stamp):
    """The location with this pk, reused across requests until its row changes (token, timezone...)."""
    if pk is None:
        return None
    cached = _locations.get(pk)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    location = GhlLocation.objects.filter(pk=pk).first()
    if location is not None:
        _locations[pk] = (stamp, location)
    return location


def resolve_location(definition, fallback):
    """Where a tool acts: the definition's pinned location, else the transport's, else the default."""
    if definition.location_id is not None:
        if fallback is not None and fallback.pk == definition.location_id:
            return fallback
        return definition.location
    return fallback or GhlLocation.objects.default()


# --- Validation ----------------------------------------------------------------------------------

_validators = {}  # definition pk → (updated_at, schema, validator): compiled once per saved version


def _validator(definition):
    cached = _validators.get(definition.pk)
    if cached is not None and cached[0] == definition.updated_at:
        return cached[1], cached[2]
    schema = definition.effective_schema
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    if definition.pk is not None:
        _validators[definition.pk] = (definition.updated_at, schema, validator)
    return schema, validator


def _clean_arguments(arguments, schema):
    """Drop what an LLM adds that means nothing: null values (= omitted) and undeclared keys.

    Undeclared keys are ignored rather than refused (a wasted turn for the caller) and never reach a
    handler, so an operator who narrows a schema also narrows what a tool may write.
    """
    if not isinstance(arguments, dict):
        return arguments
    cleaned = {key: value for key, value in arguments.items() if value is not None}
    properties = schema.get("properties")
    if isinstance(properties, dict) and not schema.get("additionalProperties"):
        cleaned = {key: value for key, value in cleaned.items() if key in properties}
    return cleaned


def _path(error):
    return [str(part) for part in error.absolute_path]


def _describe(error):
    where = ".".join(_path(error))
    return f"{where}: {error.message}" if where else error.message


# --- Idempotency ---------------------------------------------------------------------------------


def _claim(key, record):
    """(new RUNNING invocation, None) when this request should act, else (None, the one to answer from).

    The unique idempotency_key decides between concurrent duplicates: one insert wins, the others
    wait for its result. A failed, expired or abandoned first attempt gives its key up (keeping its
    log row) so a retry can act again.
    """
    deadline = time.monotonic() + settings.TOOL_DUPLICATE_WAIT_SECONDS
    window = timedelta(seconds=settings.TOOL_IDEMPOTENCY_WINDOW_SECONDS)
    previous = None
    while True:
        try:
            with transaction.atomic():
                return ToolInvocation.objects.create(
                    idempotency_key=key, status=Status.RUNNING, **record
                ), None
        except IntegrityError:
            pass
        previous = ToolInvocation.objects.filter(idempotency_key=key).first()
        if previous is None:  # given up between our insert and our read: try again
            continue
        now = timezone.now()
        if (
            previous.status == Status.SUCCEEDED
            and (previous.finished_at or previous.created_at) > now - window
        ):
            return None, previous
        if previous.status == Status.RUNNING and previous.created_at > now - ABANDONED_AFTER:
            if time.monotonic() >= deadline:
                return None, previous
            pause()
            continue
        _release(previous, key)


def _release(previous, key):
    """Free the key of a finished-and-failed, expired or abandoned invocation (the log row stays)."""
    changes = {"idempotency_key": None}
    if previous.status == Status.RUNNING:
        changes |= {"status": Status.FAILED, "success": False, "error": "abandoned: no result was recorded"}
    # Conditional, so of several concurrent retries exactly one releases it; the others then race
    # on the insert like any duplicates.
    ToolInvocation.objects.filter(pk=previous.pk, idempotency_key=key, status=previous.status).update(
        **changes
    )


def pause():
    time.sleep(DUPLICATE_POLL_SECONDS)


def _replay(previous):
    ToolInvocation.objects.filter(pk=previous.pk).update(duplicate_count=F("duplicate_count") + 1)
    if previous.status == Status.SUCCEEDED:
        return ToolResult(previous.result, previous.pk, replayed=True)
    # Still running after our wait: say so rather than act twice.
    payload = _error("in_progress", "I'm still working on that, one moment please.", retryable=True)
    return ToolResult(payload, previous.pk, replayed=True)


# --- Execution -----------------------------------------------------------------------------------

_local = threading.local()


def _session():
    """One requests.Session per thread: GHL connections (TLS included) are reused across tool calls.

    Built by `ghl_session`, so with GHL_SANDBOX on the sandbox answers; kept per sandbox setting and
    base URL, which tests switch at run time.
    """
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    key = (settings.GHL_SANDBOX, settings.GHL_BASE_URL)
    session = sessions.get(key)
    if session is None:
        session = sessions[key] = ghl_session(settings.GHL_BASE_URL)
        # Read proxy settings from the environment once, not on every request: requests would
        # rescan os.environ per call (about a millisecond) and let a ~/.netrc entry replace our
        # Authorization header.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(settings.GHL_BASE_URL)
    return session


def _execute(spec, definition, arguments, context):
    """(payload, error text for the log) from running the handler; never raises."""
    subject = spec.subject
    try:
        location = resolve_location(definition, context.location)
        client = location.client(live=True, session=_session())
        payload = spec.function(
            client, arguments, definition.config or {}, replace(context, location=location)
        )
    except ToolError as exc:
        return exc.as_result(), f"{exc.code}: {exc.message}"
    except (RetryableError, RateLimited) as exc:
        message = f"I'm having trouble reaching {subject} right now, so I can't confirm that yet."
        return _error("ghl_unavailable", message, retryable=True), str(exc)
    except NotFound as exc:
        return _error("not_found", "I couldn't find that in our system."), str(exc)
    except VendorError as exc:
        return _error("ghl_rejected", f"I couldn't complete that in {subject}."), str(exc)
    except NotConfigured as exc:
        return _error("not_configured", "That isn't set up on our side yet, so I can't do it now."), str(exc)
    except InvalidPhoneNumber as exc:
        message = "That phone number doesn't look complete. Could you say it again?"
        return _error("invalid_phone", message), str(exc)
    except Exception as exc:  # a bug must still leave the caller with words, not silence
        logger.exception("tool %s (%s) failed", definition.name, definition.handler)
        message = "Something went wrong on my side, so I can't do that right now."
        return _error("internal_error", message), f"{type(exc).__name__}: {exc}"
    if not isinstance(payload, dict):
        payload = {"result": payload}
    payload.setdefault("message", "Done.")
    return payload, ""


def _error(code, message, **data):
    return {"error": code, "message": message, **data}


def _finish(claimed, record, started, payload, error, *, ghl_ms=0.0):
    """Log the invocation (complete the claimed row, or write one) and wrap the answer."""
    finished = {
        "ghl_ms": ghl_ms,
        "result": payload,
        "status": Status.FAILED if "error" in payload else Status.SUCCEEDED,
        "success": "error" not in payload,
        "error": error,
        "error_code": payload.get("error", ""),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "finished_at": timezone.now(),
    }
    try:
        with _log_write():
            if claimed is not None:
                ToolInvocation.objects.filter(pk=claimed.pk).update(**finished)
                invocation_id = claimed.pk
            else:
                invocation_id = ToolInvocation.objects.create(**record, **finished).pk
    except DatabaseError:
        # The caller still gets the answer; the lost log line is reported instead.
        logger.exception("could not log tool invocation %s", record["tool_name"])
        invocation_id = claimed.pk if claimed is not None else None
    return ToolResult(payload, invocation_id)


@contextmanager
def _log_write():
    """A transaction whose commit does not wait for the disk (PostgreSQL `synchronous_commit off`).

    For writes that only record what happened: a durable commit costs a WAL flush (milliseconds)
    while the caller waits, and a crash could lose at most the last fraction of a second of log rows.
    The idempotency claim itself is never written this way. Other sessions see the row as soon as it
    commits either way.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
