"""Operators configure tools and read their invocations in the admin."""

import pytest
from django.urls import reverse

from calls.models import Call, ToolInvocation
from integrations.models import ToolDefinition
from tests.tools.support import CALL_ID, make_tool


@pytest.fixture
def definition(location):
    return make_tool("book_cleaning", "book_appointment", config={"calendar_id": "cal_Cleanings01"})


def test_tool_definitions_list_search_and_filter(admin_client, definition):
    url = reverse("admin:integrations_tooldefinition_changelist")
    assert admin_client.get(url).status_code == 200
    assert b"book_cleaning" in admin_client.get(url, {"q": "cleaning"}).content
    assert b"book_cleaning" not in admin_client.get(url, {"handler__exact": "add_note"}).content


def test_change_page_shows_handler_defaults_and_the_retell_json(admin_client, definition):
    page = admin_client.get(reverse("admin:integrations_tooldefinition_change", args=[definition.pk]))

    assert page.status_code == 200
    content = page.content.decode()
    assert "https://retellghl.example.com/api/functions/book_cleaning" in content
    assert "slots_to_offer" in content  # the handler's configuration keys are documented in place


def test_a_tool_is_created_from_the_admin_with_validation(admin_client, agent):
    url = reverse("admin:integrations_tooldefinition_add")
    assert admin_client.get(url).status_code == 200
    form = {
        "name": "enrol_recall",
        "handler": "add_to_workflow",
        "enabled": "on",
        "description": "",
        "config": "{}",
        "argument_schema": "",
        "agents": [agent.pk],
        "expose_as_custom_function": "on",
        "speak_during_execution": "on",
        "execution_message": "",
        "speak_after_execution": "on",
        "timeout_ms": "20000",
    }

    refused = admin_client.post(url, form)
    assert refused.status_code == 200  # workflow_id is required by the handler
    assert "workflow_id" in refused.content.decode()

    created = admin_client.post(url, {**form, "config": '{"workflow_id": "wf_Recall"}'})
    assert created.status_code == 302
    saved = ToolDefinition.objects.get(name="enrol_recall")
    assert saved.config == {"workflow_id": "wf_Recall"}
    assert saved.argument_schema is None  # the handler's default schema applies
    assert list(saved.agents.all()) == [agent]


def test_invocations_are_visible_on_their_call(admin_client, definition):
    call = Call.objects.create(call_id=CALL_ID)
    invocation = ToolInvocation.objects.create(
        call_id=CALL_ID,
        tool_name="book_cleaning",
        source=ToolInvocation.Source.CUSTOM_FUNCTION,
        status=ToolInvocation.Status.FAILED,
        error_code="slot_unavailable",
        latency_ms=312.4,
        definition=definition,
    )

    page = admin_client.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()

    assert reverse("admin:calls_toolinvocation_change", args=[invocation.pk]) in page
    assert "slot_unavailable" in page
    assert "312 ms" in page
    listing = admin_client.get(
        reverse("admin:calls_toolinvocation_changelist"), {"error_code": "slot_unavailable"}
    )
    assert listing.status_code == 200
    detail = admin_client.get(reverse("admin:calls_toolinvocation_change", args=[invocation.pk]))
    assert detail.status_code == 200
