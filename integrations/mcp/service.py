"""The MCP tool server's data: who is calling (an McpToken) and the tools that token may see and run.

Tools are read from the database on every request, so what an operator changes in the admin
(descriptions, schemas, exposure, a token's allowed tools) is what the next `tools/list` shows.
Calls go through `integrations.tools.service.run_tool`, the same code as Retell custom functions:
one validation, one GHL error mapping, one `calls.ToolInvocation` log (source "mcp", with the token).
"""

import functools
import json
from importlib import metadata

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from integrations.mcp.protocol import UnknownTool
from integrations.models import GhlLocation, McpToken, ToolDefinition
from integrations.tools import context as tool_context
from integrations.tools.service import cached_location, run_tool

SERVER_NAME = "retellghl"
SERVER_TITLE = "Retell ↔ GoHighLevel tools"


def authenticate(presented):
    """The enabled McpToken for the secret `presented`, or None. Notes the use (at most once a minute).

    The token comes with its location and `restricted` (whether it names tools), from one SQL statement
    written out on purpose, like `find_custom_function`: it runs before every MCP request, and building
    the ORM equivalent (select_related and an EXISTS) cost ~1 ms, several times what running it costs.
    """
    token_hash = McpToken.hash_of(presented)
    if token_hash is None:
        return None
    token = next(iter(McpToken.objects.raw(_token_sql(), {"hash": token_hash})), None)
    if token is None:
        return None
    token.restricted = bool(token.restricted)  # SQLite answers EXISTS with 0/1
    token.location = cached_location(token.location_id, token.location_stamp)
    token.record_use(timezone.now())
    return token


@functools.cache
def _token_sql():
    quote = connection.ops.quote_name
    tokens, locations = quote(McpToken._meta.db_table), quote(GhlLocation._meta.db_table)
    links = quote(McpToken.tools.through._meta.db_table)
    return f"""
        SELECT token.*, location.updated_at AS location_stamp,
            EXISTS (SELECT 1 FROM {links} link WHERE link.mcptoken_id = token.id) AS restricted
        FROM {tokens} token JOIN {locations} location ON location.id = token.location_id
        WHERE token.token_hash = %(hash)s AND token.enabled = TRUE
    """


@functools.cache
def _definitions_sql(*, restricted, named):
    """The MCP tools a token may see and run (optionally only the one named %(name)s), as SQL: enabled,
    exposed over MCP, not pinned to another location, and among the token's tools when it names any."""
    quote = connection.ops.quote_name
    tools, links = quote(ToolDefinition._meta.db_table), quote(McpToken.tools.through._meta.db_table)
    token_names_it = f"""
        AND EXISTS (
            SELECT 1 FROM {links} link WHERE link.tooldefinition_id = tool.id AND link.mcptoken_id = %(token)s
        )"""
    return f"""
        SELECT tool.* FROM {tools} tool
        WHERE tool.enabled = TRUE AND tool.expose_over_mcp = TRUE
            AND (tool.location_id IS NULL OR tool.location_id = %(location)s)
            {token_names_it if restricted else ""}
            {"AND tool.name = %(name)s" if named else ""}
        ORDER BY tool.name
    """


@functools.cache
def server_version():
    try:
        return metadata.version("retellghl")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0.0.0"


class McpToolServer:
    """The tools one token sees: enabled, exposed over MCP, not pinned to another location, and among
    the token's allowed tools when it names any. Implements `integrations.mcp.protocol.ToolBackend`."""

    def __init__(self, token):
        self.token = token
        self.location = token.location
        self.server_info = {"name": SERVER_NAME, "title": SERVER_TITLE, "version": server_version()}

    @property
    def instructions(self):
        return (
            f"Tools for the GoHighLevel location {self.location.name}. Every result is a JSON object whose "
            "`message` can be said to the caller as is. A failed call has isError true and an `error` "
            "code; for invalid_arguments, `details` says what to fix."
        )

    def definitions(self, name=None):
        """The definitions this token may use (one query, also run before every tools/call)."""
        sql = _definitions_sql(restricted=self.restricted, named=name is not None)
        params = {"name": name, "location": self.location.pk, "token": self.token.pk}
        return list(ToolDefinition.objects.raw(sql, params))

    @property
    def restricted(self):
        restricted = getattr(self.token, "restricted", None)  # set by authenticate()
        return self.token.tools.exists() if restricted is None else restricted

    def list_tools(self):
        return [describe_tool(definition) for definition in self.definitions() if definition.handler_spec]

    def call_tool(self, name, arguments):
        definition = next(iter(self.definitions(name)), None)
        if definition is None or definition.handler_spec is None:
            raise UnknownTool(name)
        context = tool_context.ToolContext(
            source=tool_context.MCP, location=self.location, mcp_token_id=self.token.pk
        )
        return call_result(run_tool(definition, arguments, context))


def describe_tool(definition):
    """The MCP Tool object for a definition (tools/list)."""
    spec = definition.handler_spec
    title = tool_title(definition, spec)
    # All hints: clients may use them to decide what needs the user's confirmation. The tools act on
    # one CRM location (a closed world), and a read has no side effect to describe further.
    annotations = {"title": title, "readOnlyHint": spec.read_only, "openWorldHint": False}
    if not spec.read_only:
        annotations |= {"destructiveHint": spec.destructive, "idempotentHint": spec.idempotent}
    return {
        "name": definition.name,
        "title": title,
        "description": definition.effective_description,
        "inputSchema": definition.effective_schema,
        "annotations": annotations,
    }


def tool_title(definition, spec):
    """The handler's title, unless the definition renames it (book_cleaning → "Book cleaning")."""
    if definition.name == spec.name:
        return spec.title
    return definition.name.replace("_", " ").replace("-", " ").strip().capitalize()


def call_result(result):
    """A CallToolResult from a ToolResult: the JSON answer as text (for any client) and as structuredContent.

    A tool's failure (slot taken, GHL down, invalid arguments) is a result with isError, so the model
    reads it and can correct itself; only "no such tool" is a protocol error.
    """
    text = json.dumps(result.payload, ensure_ascii=False, cls=DjangoJSONEncoder)
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": result.payload,
        "isError": result.is_error,
    }
