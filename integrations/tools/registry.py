"""The built-in tool handlers and what each needs: argument schema, configuration schema, risk.

A handler is a small function `(client, args, config, context) -> dict` registered with
`@handler(...)`. It talks to GHL only through the `GhlClient` it is given, raises `ToolError` for
outcomes the caller should hear about ("that slot is taken"), and lets the client's typed errors
propagate: `integrations.tools.service.run_tool` turns those into speakable answers, logs the
invocation and deduplicates side effects. Several tool definitions (public names) may share one
handler with different configuration.
"""

from collections.abc import Callable
from dataclasses import dataclass


class ToolError(Exception):
    """An outcome the agent should tell the caller about, e.g. "slot_unavailable".

    `code` is a stable machine code; `message` is one short sentence an agent can say as is;
    `data` adds structured facts the LLM can act on (alternative slots, which appointments exist).
    """

    def __init__(self, code, message, **data):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_result(self):
        return {"error": self.code, "message": self.message, **self.data}


@dataclass(frozen=True)
class Handler:
    name: str
    function: Callable
    title: str
    description: str  # default description for the LLM; a definition may override it
    # JSON Schema of the arguments, or a callable `config -> schema` when configuration shapes it
    # (e.g. allowed tags become an enum).
    arguments: dict | Callable
    config: dict  # JSON Schema of the fixed configuration an operator sets in the admin
    side_effect: bool  # writes to GHL: deduplicated per (call, tool, arguments)
    destructive: bool = False  # removes or cancels something (MCP destructiveHint)
    # Repeating the call with the same arguments changes nothing more (MCP idempotentHint): upserts,
    # tag changes. Meaningful only for side effects; a read is trivially idempotent.
    idempotent: bool = False
    subject: str = "our records"  # what we failed to reach, for speakable errors

    def default_schema(self, config):
        return self.arguments(config or {}) if callable(self.arguments) else self.arguments

    @property
    def read_only(self):
        return not self.side_effect


HANDLERS: dict[str, Handler] = {}


def handler(
    name,
    *,
    title,
    description,
    arguments,
    config=None,
    side_effect,
    destructive=False,
    idempotent=False,
    subject=None,
):
    """Register `function` as the built-in handler `name`."""

    def register(function):
        if name in HANDLERS:
            raise RuntimeError(f"tool handler {name!r} is registered twice")
        HANDLERS[name] = Handler(
            name=name,
            function=function,
            title=title,
            description=description,
            arguments=arguments,
            config=config or {"type": "object", "properties": {}},
            side_effect=side_effect,
            destructive=destructive,
            idempotent=idempotent,
            subject=subject or "our records",
        )
        return function

    return register


def get_handler(name):
    _load_handlers()
    return HANDLERS.get(name)


def handler_choices():
    """Choices for ToolDefinition.handler (a callable, so adding a handler needs no migration)."""
    _load_handlers()
    return [(name, spec.title) for name, spec in sorted(HANDLERS.items())]


def _load_handlers():
    # Importing the handler modules registers them; done lazily so models can import this module.
    from integrations.tools import calendar, contacts  # noqa: F401
