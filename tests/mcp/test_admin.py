"""Operators create MCP tokens in the admin: shown once with the exact Retell `mcps` entry, stored hashed,
rotatable, scoped to tools the token's location can use."""

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from pydantic import TypeAdapter
from retell.types import llm_create_params, llm_response

from calls.models import ToolInvocation
from integrations.mcp.retell_export import retell_mcps_entry
from integrations.models import McpToken
from tests.mcp.support import make_token, post, request
from tests.tools.support import make_tool

ADD_URL = reverse("admin:integrations_mcptoken_add")
SECRET_RE = re.compile(r"mcp_[A-Za-z0-9_-]{43}")


def form(location, **changes):
    return {"name": "Retell front desk", "location": location.pk, "enabled": "on", "tools": [], **changes}


def shown_messages(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def shown_secret(response):
    """The one token the admin showed (it appears alone and inside the Retell entry)."""
    (message,) = [message for message in shown_messages(response) if "shown only now" in message]
    (secret,) = set(SECRET_RE.findall(message))
    return secret, message


def test_a_new_token_is_shown_once_with_its_retell_entry(admin_client, client, location, mcp_tools):
    response = admin_client.post(ADD_URL, form(location), follow=True)

    secret, message = shown_secret(response)
    token = McpToken.objects.get()
    assert token.token_hint == secret[:8]
    assert secret not in json.dumps(list(McpToken.objects.values()), default=str)  # only its hash is kept
    entry = json.loads(message.split("Retell LLM mcps entry: ", 1)[1])
    assert entry == {
        "name": "retell-front-desk",
        "url": "https://retellghl.example.com/api/mcp",
        "headers": {"Authorization": f"Bearer {secret}"},
        "timeout_ms": 20000,
    }
    # The token works at once, and the change page never shows it again.
    assert post(client, request("tools/list"), secret=secret).status_code == 200
    page = admin_client.get(reverse("admin:integrations_mcptoken_change", args=[token.pk]))
    assert secret not in page.content.decode()
    assert "the token shown once when it was created" in page.content.decode()


def test_the_retell_entry_is_a_valid_retell_mcps_item(location):
    token, secret = make_token("Front desk", location)

    entry = retell_mcps_entry(token, secret)

    TypeAdapter(llm_create_params.Mcp).validate_python(entry, strict=True)
    parsed = llm_response.Mcp.model_validate(entry)
    assert set(entry) <= set(llm_response.Mcp.model_fields)
    assert parsed.url == "https://retellghl.example.com/api/mcp"


def test_the_readme_entry_is_a_valid_retell_mcps_item():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## MCP tool server", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    entry = json.loads(block)

    TypeAdapter(llm_create_params.Mcp).validate_python(entry, strict=True)
    assert set(entry) <= set(llm_response.Mcp.model_fields)
    assert entry["url"].endswith("/api/mcp")
    assert entry["headers"]["Authorization"].startswith("Bearer mcp_")


def test_editing_a_token_keeps_its_secret(admin_client, client, location, mcp_tools):
    token, secret = make_token("Front desk", location)

    response = admin_client.post(
        reverse("admin:integrations_mcptoken_change", args=[token.pk]),
        form(location, name="Front desk (renamed)", tools=[mcp_tools["lookup_contact"].pk]),
        follow=True,
    )

    assert not any(SECRET_RE.search(message) for message in shown_messages(response))
    token.refresh_from_db()
    assert token.name == "Front desk (renamed)"
    assert [
        tool["name"] for tool in post(client, request("tools/list"), secret=secret).json()["result"]["tools"]
    ] == ["lookup_contact"]


def test_rotating_a_token_shows_the_new_one_and_retires_the_old(admin_client, client, location):
    token, old_secret = make_token("Front desk", location)

    response = admin_client.post(
        reverse("admin:integrations_mcptoken_changelist"),
        {"action": "rotate_token", "_selected_action": [token.pk]},
        follow=True,
    )

    new_secret, _ = shown_secret(response)
    assert new_secret != old_secret
    assert post(client, request("ping"), secret=old_secret).status_code == 401
    assert post(client, request("ping"), secret=new_secret).status_code == 200


def test_tools_of_another_location_cannot_be_granted(admin_client, location, other_location):
    elsewhere = make_tool("lookup_contact", expose_over_mcp=True, location=other_location)
    here = make_tool("check_availability", expose_over_mcp=True, location=location)

    refused = admin_client.post(ADD_URL, form(location, tools=[elsewhere.pk, here.pk]))

    assert refused.status_code == 200
    assert "lookup_contact act(s) on another GHL location" in refused.content.decode()
    assert not McpToken.objects.exists()


def test_only_mcp_tools_are_offered(admin_client, location, mcp_tools):
    custom_only = make_tool("add_note")

    page = admin_client.get(ADD_URL)

    choices = [choice.value for choice, _ in page.context["adminform"].form.fields["tools"].choices]
    assert set(choices) == {tool.pk for tool in mcp_tools.values()}
    assert custom_only.pk not in choices


def test_token_list_search_and_filter(admin_client, location, other_location):
    make_token("Front desk", location)
    make_token("Sunny line", other_location, enabled=False)
    url = reverse("admin:integrations_mcptoken_changelist")

    assert admin_client.get(url).status_code == 200
    assert b"Sunny line" in admin_client.get(url, {"q": "sunny"}).content
    assert b"Front desk" not in admin_client.get(url, {"enabled__exact": "0"}).content


@pytest.mark.django_db
def test_invocations_can_be_filtered_by_token(admin_client, client, location, mcp_tools):
    token, secret = make_token("Front desk", location)
    post(client, request("tools/call", {"name": "lookup_contact", "arguments": {}}), secret=secret)
    url = reverse("admin:calls_toolinvocation_changelist")

    page = admin_client.get(url, {"mcp_token__id__exact": token.pk})

    assert page.status_code == 200
    assert list(page.context["cl"].queryset) == list(ToolInvocation.objects.filter(mcp_token=token))
    assert ToolInvocation.objects.filter(mcp_token=token).count() == 1
