"""What a tool knows about the conversation it serves, whatever the transport.

Retell custom functions build it from the live call object (REFERENCE.md §4); the MCP server builds
it from its token (the token's location, and the token itself for the log). Handlers read the
caller's number and `contact_id` from here so the LLM rarely has to pass ids, and they still work from
explicit arguments when there is no call (`args_at_root` requests, MCP clients).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from integrations.phones import to_e164_or_none

CUSTOM_FUNCTION = "custom_function"  # calls.ToolInvocation.Source values
MCP = "mcp"


@dataclass(frozen=True)
class ToolContext:
    source: str = CUSTOM_FUNCTION
    call_id: str = ""
    agent_id: str = ""  # Retell agent id
    caller_number: str = ""  # the customer's number in E.164, "" when unknown (web calls, MCP)
    dynamic_variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The transport's location (the calling agent's, or the MCP token's). A definition pinned to a
    # location wins; with neither, the deployment's default location serves the call.
    location: object = None  # integrations.models.GhlLocation | None
    mcp_token_id: int | None = None  # the MCP client's token (integrations.McpToken), logged with the call

    @classmethod
    def from_retell_call(cls, call, *, location=None):
        """Context from Retell's live call object; tolerant of missing or oddly typed fields."""
        call = call if isinstance(call, dict) else {}
        # The customer is who called us, or whom we called.
        number_field = "to_number" if call.get("direction") == "outbound" else "from_number"
        variables = {}
        for source in ("collected_dynamic_variables", "retell_llm_dynamic_variables"):
            values = call.get(source)
            if isinstance(values, dict):  # later sources win: what routing set beats what was collected
                variables.update({str(k): str(v) for k, v in values.items() if v is not None})
        return cls(
            source=CUSTOM_FUNCTION,
            # Cut to what the invocation log holds: Retell's ids are far shorter.
            call_id=_text(call.get("call_id"))[:128],
            agent_id=_text(call.get("agent_id"))[:128],
            caller_number=to_e164_or_none(call.get(number_field)) or "",
            dynamic_variables=MappingProxyType(variables),
            location=location,
        )

    @property
    def contact_id(self):
        return self.dynamic_variables.get("contact_id", "").strip()

    @property
    def contact_timezone(self):
        return self.dynamic_variables.get("timezone", "").strip()


def _text(value):
    return value.strip() if isinstance(value, str) else ""
