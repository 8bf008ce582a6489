"""Admin polish: the config models' lists, the pretty JSON editor, links into the operator UI."""

import pytest

from calls.models import Call, CallEvent, GhlSyncTask, ToolInvocation


@pytest.fixture
def logged_call(agent):
    call = Call.objects.create(call_id="call_admin1", agent=agent, transcript_object=[{"role": "agent"}])
    CallEvent.objects.create(call=call, retell_call_id=call.call_id, event="call_ended", raw_body="{}")
    GhlSyncTask.objects.create(call=call, kind="note", dedupe_key="call:call_admin1:note", status="failed")
    ToolInvocation.objects.create(call_id=call.call_id, tool_name="add_note", source="mcp", latency_ms=12)
    return call


@pytest.mark.django_db
def test_every_changelist_renders_with_links_to_the_call_page(admin_client, logged_call):
    for model in ["calls/call", "calls/callevent", "calls/ghlsynctask", "calls/toolinvocation"]:
        response = admin_client.get(f"/admin/{model}/")
        assert response.status_code == 200, model
        if model != "calls/call":
            assert 'href="/calls/call_admin1/"' in response.content.decode(), model


@pytest.mark.django_db
def test_call_admin_links_to_the_operator_ui(admin_client, logged_call):
    html = admin_client.get(f"/admin/calls/call/{logged_call.pk}/change/").content.decode()
    assert "View on site" in html
    response = admin_client.get(f"/admin/r/{_content_type(Call)}/{logged_call.pk}/")
    assert response["Location"].endswith("/calls/call_admin1/")


def _content_type(model):
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(model).pk


@pytest.mark.django_db
def test_location_list_counts_agents_and_agent_list_summarises_the_sync(admin_client, agent, location):
    agent.workflow_id = "wf_AfterCall"
    agent.save()
    html = admin_client.get("/admin/integrations/ghllocation/").content.decode()
    assert f'href="/admin/integrations/agent/?location__id__exact={location.pk}">1</a>' in html
    html = admin_client.get("/admin/integrations/agent/?q=wf_AfterCall").content.decode()
    assert "note + tags + workflow wf_AfterCall (on call_ended, call_analyzed)" in html
    assert f'href="/calls/?agent={agent.pk}"' in html
    assert (
        admin_client.get("/admin/integrations/agent/?q=nothing-like-this")
        .content.decode()
        .count("Bright Dental Receptionist")
        == 0
    )


@pytest.mark.django_db
def test_agent_json_settings_are_edited_indented_and_saved(admin_client, agent):
    agent.analysis_custom_fields = {"cf_LastOutcome": "call_summary"}
    agent.save()
    url = f"/admin/integrations/agent/{agent.pk}/change/"
    html = admin_client.get(url).content.decode()
    assert "{\n  &quot;cf_LastOutcome&quot;: &quot;call_summary&quot;\n}" in html
    form = {
        "name": agent.name,
        "retell_agent_id": agent.retell_agent_id,
        "role": agent.role,
        "location": agent.location_id,
        "is_active": "on",
        "events_to_process": '[\n  "call_ended"\n]',
        "sync_transcript_note": "on",
        "post_call_tags": '["ai-call", "vip"]',
        "analysis_custom_fields": "{}",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.events_to_process == ["call_ended"] and agent.post_call_tags == ["ai-call", "vip"]
    response = admin_client.post(url, {**form, "post_call_tags": "[not json"})
    assert response.status_code == 200 and "Enter a valid JSON." in response.content.decode()
