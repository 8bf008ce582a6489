"""The Retell tool JSON we export (validated against Retell's own SDK types and a schema written from
REFERENCE.md §4), and what the ToolDefinition model refuses to save."""

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter
from retell.types import llm_create_params, llm_response, llm_update_params

from integrations.models import Agent, ToolDefinition
from integrations.tools.registry import HANDLERS, get_handler
from tests.tools.support import AGENT_ID, make_tool

# A Retell "custom" general tool, from REFERENCE.md §4 and retell-sdk 6.2's GeneralToolCustomTool.
RETELL_CUSTOM_TOOL = {
    "type": "object",
    "required": ["type", "name", "url"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "custom"},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "description": {"type": "string", "minLength": 1},
        "url": {"type": "string", "pattern": "^https://[^/]+/"},
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
        "parameters": {
            "type": "object",
            "required": ["type", "properties"],
            "properties": {
                "type": {"const": "object"},
                "properties": {"type": "object"},
                "required": {"type": "array", "items": {"type": "string"}},
            },
        },
        "args_at_root": {"type": "boolean"},
        "speak_during_execution": {"type": "boolean"},
        "speak_after_execution": {"type": "boolean"},
        "execution_message_description": {"type": "string"},
        "execution_message_type": {"enum": ["prompt", "static_text"]},
        "timeout_ms": {"type": "integer", "minimum": 1000, "maximum": 600000},
        "max_retry": {"type": "integer", "minimum": 0, "maximum": 5},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query_params": {"type": "object", "additionalProperties": {"type": "string"}},
        "response_variables": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
RETELL_TOOL_FIELDS = {
    field.alias or name for name, field in llm_response.GeneralToolCustomTool.model_fields.items()
}


def export(*args):
    out, err = StringIO(), StringIO()
    call_command("export_retell_tools", *args, stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


@pytest.fixture
def every_handler(location):
    """One definition per built-in handler, with the configuration each requires."""
    required_config = {
        "add_to_workflow": {"workflow_id": "wf_1"},
        "upsert_opportunity": {"pipeline_id": "pl_1"},
    }
    return [
        make_tool(name, config=required_config.get(name, {}), execution_message="Say you're checking.")
        for name in sorted(HANDLERS)
    ]


def test_every_exported_tool_is_a_valid_retell_custom_function(agent, every_handler):
    tools, _ = export("--agent", AGENT_ID)

    assert [tool["name"] for tool in tools] == sorted(HANDLERS)
    validator = Draft202012Validator(RETELL_CUSTOM_TOOL)
    for tool in tools:
        assert list(validator.iter_errors(tool)) == [], tool["name"]
        # Retell's own types: the request TypedDict (strictly) and the response model.
        TypeAdapter(llm_create_params.GeneralToolCustomTool).validate_python(tool, strict=True)
        llm_response.GeneralToolCustomTool.model_validate(tool)
        assert set(tool) <= RETELL_TOOL_FIELDS, set(tool) - RETELL_TOOL_FIELDS
        # The parameters are a JSON Schema whose required names are declared properties.
        Draft202012Validator.check_schema(tool["parameters"])
        assert set(tool["parameters"].get("required", [])) <= set(tool["parameters"]["properties"])


def test_exported_entry_in_full(agent, location):
    make_tool(
        "book_cleaning",
        "book_appointment",
        description="Book a cleaning.",
        execution_message="Tell the caller you're booking it.",
        timeout_ms=15000,
    )

    (tool,), _ = export("--agent", AGENT_ID)

    assert tool == {
        "type": "custom",
        "name": "book_cleaning",
        "description": "Book a cleaning.",
        "url": "https://retellghl.example.com/api/functions/book_cleaning",
        "method": "POST",
        "parameters": get_handler("book_appointment").default_schema({}),
        "speak_during_execution": True,
        "speak_after_execution": True,
        "execution_message_description": "Tell the caller you're booking it.",
        "timeout_ms": 15000,
    }


def test_export_lists_only_what_the_agent_may_call(agent, location):
    other = Agent.objects.create(retell_agent_id="agent_other", name="Other", location=location)
    make_tool("check_availability")
    make_tool("lookup_contact", agents=[agent])
    make_tool("add_note", agents=[other])
    make_tool("add_tags", enabled=False)
    make_tool("remove_tags", expose_as_custom_function=False, expose_over_mcp=True)

    tools, err = export("--agent", AGENT_ID, "--wrap")

    assert set(tools) <= set(llm_update_params.LlmUpdateParams.__annotations__)  # the API's own field
    assert [tool["name"] for tool in tools["general_tools"]] == ["check_availability", "lookup_contact"]
    assert err.strip().endswith(f"2 custom function(s) for {AGENT_ID}.")


def test_export_for_an_agent_we_do_not_know(location):
    make_tool("check_availability")
    make_tool("lookup_contact", agents=[Agent.objects.create(retell_agent_id="agent_x", name="X")])

    tools, err = export("--agent", "agent_unknown", "--base-url", "http://localhost:8000/")

    assert [tool["url"] for tool in tools] == ["http://localhost:8000/api/functions/check_availability"]
    assert "no agent agent_unknown" in err
    assert "not an https URL Retell can reach" in err


def test_output_option_writes_the_file_like_export_config(agent, location, tmp_path):
    make_tool("check_availability")
    path = tmp_path / "tools.json"
    out = StringIO()

    call_command("export_retell_tools", "--agent", AGENT_ID, "--wrap", "-o", str(path), stdout=out)

    assert out.getvalue() == f"Exported 1 custom function(s) for {AGENT_ID} to {path}.\n"
    assert (
        json.loads(path.read_text())["general_tools"]
        == export("--agent", AGENT_ID, "--wrap")[0]["general_tools"]
    )


# --- What a definition may be --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "book appointment"}, "name", "Letters, digits"),
        ({"name": "x" * 65}, "name", "at most 64"),
        ({"handler": "send_fax"}, "handler", "not a valid choice"),
        ({"argument_schema": {"type": "objekt"}}, "argument_schema", "Not a valid JSON Schema"),
        ({"argument_schema": {"type": "array"}}, "argument_schema", '"type": "object"'),
        (
            {"config": {"slots_to_offer": 50}},
            "config",
            "slots_to_offer: 50 is greater than the maximum of 10",
        ),
        ({"config": {"calendar": "cal_1"}}, "config", "Additional properties are not allowed"),
        ({"config": {"timezone": "Eastern"}}, "config", "not an IANA timezone"),
        ({"timeout_ms": 500}, "timeout_ms", "greater than or equal to 1000"),
    ],
)
def test_invalid_definitions_are_refused(db, fields, field, message):
    definition = ToolDefinition(**{"name": "check_availability", "handler": "check_availability", **fields})

    with pytest.raises(ValidationError) as refused:
        definition.full_clean()

    assert field in refused.value.message_dict
    assert any(message in text for text in refused.value.message_dict[field]), refused.value.message_dict


def test_handlers_needing_configuration_say_so(db):
    definition = ToolDefinition(name="enrol", handler="add_to_workflow", config={})

    with pytest.raises(ValidationError) as refused:
        definition.full_clean()

    assert refused.value.message_dict["config"] == ["'workflow_id' is a required property"]


def test_names_are_unique(db):
    make_tool("check_availability")
    with pytest.raises(ValidationError, match="already exists"):
        make_tool("check_availability")


def test_every_default_schema_is_a_valid_object_schema():
    for name, spec in HANDLERS.items():
        schema = spec.default_schema({})
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and isinstance(schema["properties"], dict), name
        Draft202012Validator.check_schema(spec.config)


def test_the_issues_thirteen_handlers_exist_with_typed_bounded_arguments():
    assert set(HANDLERS) == {
        "lookup_contact",
        "upsert_contact",
        "add_note",
        "add_tags",
        "remove_tags",
        "update_contact_fields",
        "check_availability",
        "book_appointment",
        "reschedule_appointment",
        "cancel_appointment",
        "list_contact_appointments",
        "add_to_workflow",
        "upsert_opportunity",
    }
    for name, spec in HANDLERS.items():
        for argument, schema in spec.default_schema({}).get("properties", {}).items():
            assert "type" in schema, (name, argument)
            if schema["type"] == "string":  # an LLM can send anything: every string is bounded
                assert {"maxLength", "enum", "format"} & set(schema), (name, argument)
