"""Tool definitions as Retell custom-function entries (an LLM's `general_tools`, REFERENCE.md §4)."""

from django.conf import settings
from django.urls import reverse

from integrations.models import ToolDefinition


def custom_function_url(definition, base_url=None):
    base = (base_url or settings.PUBLIC_BASE_URL).rstrip("/")
    return base + reverse("custom_function", kwargs={"tool_name": definition.name})


def retell_custom_function(definition, base_url=None):
    """One `{"type": "custom", ...}` entry, ready for Retell's general_tools list."""
    entry = {
        "type": "custom",
        "name": definition.name,
        "description": definition.effective_description,
        "url": custom_function_url(definition, base_url),
        "method": "POST",
        "parameters": definition.effective_schema,
        "speak_during_execution": definition.speak_during_execution,
        "speak_after_execution": definition.speak_after_execution,
        "timeout_ms": definition.timeout_ms,
    }
    if definition.speak_during_execution and definition.execution_message.strip():
        entry["execution_message_description"] = definition.execution_message.strip()
    return entry


def custom_functions_for_agent(retell_agent_id, base_url=None):
    """Entries for every enabled custom function the agent may call, by name."""
    definitions = (
        ToolDefinition.objects.custom_functions()
        .for_agent(retell_agent_id)
        .select_related("location")
        .order_by("name")
    )
    return [retell_custom_function(definition, base_url) for definition in definitions]
