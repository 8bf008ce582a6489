"""Contact tools through `run_tool`, the transport-independent entry point: the exact GHL requests
each sends, how the contact is found, and what the agent is told."""

from types import MappingProxyType

import pytest

from calls.models import ToolInvocation
from integrations.ghl import CONTACTS_API
from integrations.tools.context import ToolContext
from integrations.tools.service import run_tool
from tests.conftest import fixture_json
from tests.tools.support import CALL_ID, GHL, assert_ghl_headers, make_tool, query, sent_json

DANA = "c_Dana7Lee01"


@pytest.fixture
def call_context(location):
    """A live inbound call from +14155550123 whose routing already found Dana."""
    return ToolContext(
        call_id=CALL_ID,
        agent_id="agent_5d3e1c9b2a7f4e6d8c0b",
        caller_number="+14155550123",
        dynamic_variables=MappingProxyType({"contact_id": DANA, "first_name": "Dana"}),
    )


@pytest.fixture
def stranger_context(location):
    """A call from a number routing did not recognise."""
    return ToolContext(call_id=CALL_ID, caller_number="+14155550188")


# --- Context from the Retell call object ---------------------------------------------------------


def test_context_reads_the_callers_number_and_dynamic_variables():
    call = fixture_json("retell_custom_function")["call"]
    context = ToolContext.from_retell_call(call)
    assert context.call_id == CALL_ID
    assert context.caller_number == "+14155550123"  # inbound: from_number
    assert context.contact_id == DANA
    assert context.dynamic_variables["customer_name"] == "Dana Lee"


def test_outbound_call_context_uses_the_number_we_dialled():
    context = ToolContext.from_retell_call(
        {
            "call_id": "c",
            "direction": "outbound",
            "from_number": "+14155559999",
            "to_number": "(415) 555-0142",
        }
    )
    assert context.caller_number == "+14155550142"
    assert context.contact_id == ""


def test_web_call_context_has_no_number():
    assert ToolContext.from_retell_call({"call_id": "c", "call_type": "web_call"}).caller_number == ""


# --- lookup_contact ------------------------------------------------------------------------------


def test_lookup_by_the_callers_number(ghl, stranger_context):
    definition = make_tool("lookup_contact")
    ghl.get(f"{GHL}/contacts/search/duplicate", json=fixture_json("ghl_duplicate_search_found"))

    result = run_tool(definition, {}, stranger_context)

    assert result.payload == {
        "found": True,
        "contact": {
            "id": DANA,
            "name": "Dana Lee",
            "first_name": "Dana",
            "last_name": "Lee",
            "email": "dana.lee@example.com",
            "phone": "+14155550123",
            "tags": ["patient", "vip"],
            "timezone": "America/Los_Angeles",
        },
        "message": "I found the record for Dana.",
    }
    (request,) = ghl.calls
    assert_ghl_headers(request, CONTACTS_API)
    assert request.request.url == (
        f"{GHL}/contacts/search/duplicate?locationId=loc_BrightDental1&number=%2B14155550188"
    )


def test_lookup_by_a_number_the_caller_gives(ghl, call_context):
    definition = make_tool("lookup_contact")
    ghl.get(f"{GHL}/contacts/search/duplicate", json=fixture_json("ghl_duplicate_search_none"))

    result = run_tool(definition, {"phone": "(415) 555-0142"}, call_context)

    assert result.payload == {"found": False, "message": "I couldn't find a record for that phone number."}
    assert not result.is_error  # "not found" is an answer, not a failure
    assert query(ghl.calls[0])["number"] == "+14155550142"


def test_lookup_uses_the_contact_routing_found(ghl, call_context):
    definition = make_tool("lookup_contact")
    ghl.get(f"{GHL}/contacts/{DANA}", json=fixture_json("ghl_contact"))

    assert run_tool(definition, {}, call_context).payload["contact"]["id"] == DANA


def test_lookup_without_any_number_asks_for_one(ghl, location):
    definition = make_tool("lookup_contact")

    result = run_tool(definition, {}, ToolContext())

    assert result.payload == {"error": "phone_needed", "message": "What's the phone number on your account?"}


def test_an_impossible_phone_is_a_speakable_error(ghl, call_context):
    definition = make_tool("lookup_contact")

    assert run_tool(definition, {"phone": "12"}, call_context).payload["error"] == "invalid_phone"


# --- upsert_contact and update_contact_fields ----------------------------------------------------


def test_upsert_creates_a_stranger_with_the_callers_number(ghl, stranger_context):
    definition = make_tool("upsert_contact")
    ghl.post(f"{GHL}/contacts/upsert", json={"new": True, "contact": {"id": "c_New", "firstName": "Sam"}})

    result = run_tool(definition, {"first_name": " Sam ", "email": "sam@example.com"}, stranger_context)

    assert result.payload["contact_id"] == "c_New"
    assert result.payload["created"] is True
    assert sent_json(ghl.calls[0]) == {
        "firstName": "Sam",
        "email": "sam@example.com",
        "phone": "+14155550188",
        "locationId": "loc_BrightDental1",
    }


def test_upsert_updates_the_known_contact_without_location_id(ghl, call_context):
    definition = make_tool("upsert_contact")
    ghl.put(f"{GHL}/contacts/{DANA}", json=fixture_json("ghl_contact"))

    result = run_tool(definition, {"email": "dana@new.example"}, call_context)

    assert result.payload["created"] is False
    assert sent_json(ghl.calls[0]) == {"email": "dana@new.example"}


def test_update_fields_maps_standard_and_configured_custom_fields(ghl, call_context):
    definition = make_tool(
        "update_contact_fields",
        config={"custom_fields": {"insurance": {"key": "contact.insurance", "description": "Insurer"}}},
    )
    assert definition.effective_schema["properties"]["insurance"]["description"] == "Insurer"
    ghl.put(f"{GHL}/contacts/{DANA}", json=fixture_json("ghl_contact"))

    result = run_tool(definition, {"city": "Oakland", "insurance": "Delta Dental"}, call_context)

    assert result.payload["message"] == "I've updated your details."
    assert sent_json(ghl.calls[0]) == {
        "city": "Oakland",
        "customFields": [{"key": "contact.insurance", "field_value": "Delta Dental"}],
    }


def test_update_fields_with_nothing_to_write_calls_nobody(ghl, call_context):
    definition = make_tool("update_contact_fields")

    assert run_tool(definition, {}, call_context).payload["error"] == "nothing_to_update"


# --- notes and tags ------------------------------------------------------------------------------


def test_add_note_to_the_contact_routing_found(ghl, call_context):
    definition = make_tool("add_note", config={"prefix": "AI receptionist: "})
    ghl.post(f"{GHL}/contacts/{DANA}/notes", json=fixture_json("ghl_note_created"))

    result = run_tool(definition, {"body": "Asked about whitening prices."}, call_context)

    assert result.payload == {"note_id": "n_4Qw8Zt", "contact_id": DANA, "message": "I've added that note."}
    assert_ghl_headers(ghl.calls[0], CONTACTS_API)
    assert sent_json(ghl.calls[0]) == {"body": "AI receptionist: Asked about whitening prices."}


def test_add_note_for_an_unknown_caller_finds_no_contact(ghl, stranger_context):
    definition = make_tool("add_note")
    ghl.get(f"{GHL}/contacts/search/duplicate", json={"contact": None})

    result = run_tool(definition, {"body": "Hello"}, stranger_context)

    assert result.payload["error"] == "contact_not_found"
    assert ToolInvocation.objects.get().status == ToolInvocation.Status.FAILED


def test_a_repeated_note_in_one_call_is_written_once(ghl, call_context):
    definition = make_tool("add_note")
    ghl.post(f"{GHL}/contacts/{DANA}/notes", json=fixture_json("ghl_note_created"))

    first = run_tool(definition, {"body": "Call back Friday"}, call_context)
    again = run_tool(definition, {"body": "Call back Friday"}, call_context)

    assert again.replayed and again.payload == first.payload
    assert len(ghl.calls) == 1


def test_allowed_tags_become_an_enum(ghl, call_context):
    definition = make_tool("add_tags", config={"allowed_tags": ["wants-callback", "new-patient"]})
    assert definition.effective_schema["properties"]["tags"]["items"] == {
        "type": "string",
        "enum": ["wants-callback", "new-patient"],
    }
    ghl.post(f"{GHL}/contacts/{DANA}/tags", json={"tags": ["patient", "vip", "wants-callback"]})

    assert (
        run_tool(definition, {"tags": ["vip-forever"]}, call_context).payload["error"] == "invalid_arguments"
    )
    result = run_tool(definition, {"tags": ["wants-callback", "wants-callback"]}, call_context)

    assert result.payload == {"contact_id": DANA, "tags": ["wants-callback"], "message": "Done."}
    assert sent_json(ghl.calls[0]) == {"tags": ["wants-callback"]}


def test_allowed_tags_hold_even_when_the_schema_is_overridden(ghl, call_context):
    definition = make_tool(
        "add_tags",
        config={"allowed_tags": ["wants-callback"]},
        argument_schema={"type": "object", "properties": {"tags": {"type": "array"}}},
    )

    result = run_tool(definition, {"tags": ["vip"]}, call_context)

    assert result.payload["error"] == "tag_not_allowed"
    assert result.payload["refused"] == ["vip"]


def test_remove_tags_sends_a_delete_with_a_body(ghl, call_context):
    definition = make_tool("remove_tags")
    ghl.delete(f"{GHL}/contacts/{DANA}/tags", json={"tags": ["patient"]})

    run_tool(definition, {"tags": ["vip"]}, call_context)

    assert ghl.calls[0].request.method == "DELETE"
    assert sent_json(ghl.calls[0]) == {"tags": ["vip"]}


# --- workflows and opportunities -----------------------------------------------------------------


def test_add_to_the_configured_workflow(ghl, call_context):
    definition = make_tool("add_to_workflow", config={"workflow_id": "wf_Recall"})
    ghl.post(f"{GHL}/contacts/{DANA}/workflow/wf_Recall", json={"succeded": True})

    assert run_tool(definition, {}, call_context).payload["workflow_id"] == "wf_Recall"
    assert sent_json(ghl.calls[0]) == {}


def test_upsert_opportunity_in_the_configured_pipeline(ghl, call_context):
    definition = make_tool(
        "upsert_opportunity",
        config={"pipeline_id": "pl_New", "pipeline_stage_id": "st_Lead", "name": "Enquiry"},
    )
    ghl.post(f"{GHL}/opportunities/upsert", json={"opportunity": {"id": "op_1"}})

    result = run_tool(definition, {"monetary_value": 1200}, call_context)

    assert result.payload["opportunity_id"] == "op_1"
    assert sent_json(ghl.calls[0]) == {
        "pipelineId": "pl_New",
        "locationId": "loc_BrightDental1",
        "contactId": DANA,
        "name": "Enquiry",
        "status": "open",
        "pipelineStageId": "st_Lead",
        "monetaryValue": 1200,
    }


def test_ghl_rejection_is_reported_without_details_leaking(ghl, call_context):
    definition = make_tool("add_note")
    ghl.post(f"{GHL}/contacts/{DANA}/notes", status=422, json=fixture_json("ghl_error_422"))

    result = run_tool(definition, {"body": "x"}, call_context)

    assert result.payload == {"error": "ghl_rejected", "message": "I couldn't complete that in our records."}
    assert "locationId should not exist" in ToolInvocation.objects.get().error
