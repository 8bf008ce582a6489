"""The foundation: settings, encrypted tokens, default location, admin and the health endpoint."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import responses
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.urls import reverse

from integrations.errors import NotConfigured
from integrations.models import Agent, GhlLocation


@pytest.mark.django_db
def test_location_token_is_encrypted_at_rest_and_readable_in_python():
    location = GhlLocation.objects.create(location_id="loc_X", name="X", token="pit-secret-123")
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM integrations_ghllocation WHERE id = %s", [location.pk])
        (stored,) = cursor.fetchone()
    assert "pit-secret-123" not in stored
    assert stored.startswith("fernet:")
    assert GhlLocation.objects.get(pk=location.pk).token == "pit-secret-123"


@pytest.mark.django_db
def test_default_location_is_seeded_from_the_environment(settings):
    location = GhlLocation.objects.default()
    assert location.location_id == settings.GHL_LOCATION_ID
    assert location.token == ""  # nothing stored: the env token serves it
    assert location.api_token == settings.GHL_API_TOKEN
    assert GhlLocation.objects.default().pk == location.pk  # created once


@pytest.mark.django_db
def test_no_default_location_fails_clearly(settings):
    settings.GHL_LOCATION_ID = ""
    GhlLocation.objects.create(location_id="loc_A", name="A")
    GhlLocation.objects.create(location_id="loc_B", name="B")
    with pytest.raises(NotConfigured, match="GHL_LOCATION_ID"):
        GhlLocation.objects.default()


@pytest.mark.django_db
def test_location_without_token_cannot_build_a_client():
    location = GhlLocation.objects.create(location_id="loc_NoToken", name="No token")
    with pytest.raises(NotConfigured):
        location.client()


@pytest.mark.django_db
def test_agent_defaults_to_acting_on_ended_and_analyzed(location):
    agent = Agent.objects.create(retell_agent_id="agent_1", name="A", location=location)
    assert agent.acts_on("call_ended") and agent.acts_on("call_analyzed")
    assert not agent.acts_on("call_started")
    agent.is_active = False
    assert not agent.acts_on("call_ended")


@pytest.mark.django_db
def test_healthz_reports_database_and_queue(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["queue"]["ok"] is True and body["queue"]["broker"] in ("orm", "redis")


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_fails(client, monkeypatch):
    from retellghl import health

    def broken():
        raise ConnectionError("database is down")

    monkeypatch.setattr(health, "_database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "ConnectionError: database is down"}


ADMIN_MODELS = [
    ("integrations", "ghllocation"),
    ("integrations", "agent"),
    ("calls", "call"),
    ("calls", "callevent"),
    ("calls", "toolinvocation"),
    ("calls", "ghlsynctask"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("app,model", ADMIN_MODELS)
def test_every_model_is_browsable_and_searchable_in_the_admin(admin_client, agent, app, model):
    from calls.models import Call, CallEvent, GhlSyncTask, ToolInvocation

    call = Call.objects.create(call_id="call_abc", agent=agent, from_number="+14155550123")
    CallEvent.objects.create(call=call, retell_call_id="call_abc", event="call_ended", raw_body="{}")
    ToolInvocation.objects.create(call_id="call_abc", tool_name="lookup_contact", source="mcp")
    GhlSyncTask.objects.create(call=call, kind="note", dedupe_key="call:call_abc:note")

    changelist = reverse(f"admin:{app}_{model}_changelist")
    assert admin_client.get(changelist).status_code == 200
    assert admin_client.get(changelist, {"q": "abc"}).status_code == 200


@pytest.mark.django_db
def test_admin_never_shows_a_stored_token(admin_client):
    location = GhlLocation.objects.create(location_id="loc_S", name="S", token="pit-very-secret")
    page = admin_client.get(reverse("admin:integrations_ghllocation_change", args=[location.pk]))
    assert page.status_code == 200
    assert b"pit-very-secret" not in page.content
    listing = admin_client.get(reverse("admin:integrations_ghllocation_changelist"))
    assert b"pit-very-secret" not in listing.content and b"stored (encrypted)" in listing.content


@pytest.mark.django_db
def test_admin_token_field_is_write_only(admin_client):
    location = GhlLocation.objects.create(location_id="loc_W", name="W", token="pit-old")
    url = reverse("admin:integrations_ghllocation_change", args=[location.pk])
    form = {
        "name": "W",
        "location_id": "loc_W",
        "timezone": "UTC",
        "default_calendar_id": "",
        "new_token": "",
    }
    assert admin_client.post(url, form).status_code == 302
    assert GhlLocation.objects.get(pk=location.pk).token == "pit-old"  # empty keeps it
    assert admin_client.post(url, {**form, "new_token": "pit-new"}).status_code == 302
    assert GhlLocation.objects.get(pk=location.pk).token == "pit-new"
    assert admin_client.post(url, {**form, "timezone": "Mars/Olympus"}).status_code == 200  # invalid tz


@pytest.mark.django_db
def test_admin_retry_selected_requeues_failed_sync_tasks(admin_client, agent):
    from calls.models import Call, GhlSyncTask

    call = Call.objects.create(call_id="call_r", agent=agent)
    task = GhlSyncTask.objects.create(
        call=call,
        kind="note",
        dedupe_key="call:call_r:note",
        status="failed",
        attempts=8,
        last_error="HTTP 500",
    )
    url = reverse("admin:calls_ghlsynctask_changelist")
    response = admin_client.post(
        url, {"action": "retry_selected", "_selected_action": [task.pk]}, follow=True
    )
    assert b"1 sync task(s) queued for retry." in response.content
    task.refresh_from_db()
    assert task.status == "pending" and task.next_attempt_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_healthz_answers_other_methods_with_a_json_405_not_a_csrf_page(client, method):
    response = getattr(client, method)("/healthz")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "url", ["/api/", "/api/functions/", "/api/webhooks/nope", "/api/nothing/here", "/api/functions/%2F%0A"]
)
def test_unknown_api_urls_are_a_json_404(client, url):
    response = client.post(url, data=b"{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


# --- settings: .env.example and production checks ----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_documents_every_variable_the_settings_read():
    read = set(
        re.findall(r'\benv(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', (ROOT / "retellghl/settings.py").read_text())
    )
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "RETELL_API_KEY", "GHL_API_TOKEN"} <= read
    assert read - documented == set()


def manage(*args, **env):
    """Run manage.py on the production settings in a fresh process: settings read the environment once,
    at import, and this test process carries settings_test's variables. Only `env` (and PATH) is set."""
    environment = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "retellghl.settings", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DEBUG="false",
        ALLOWED_HOSTS="example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("key, check", [("", "retellghl.W001"), ("not-a-key", "retellghl.W002")])
def test_check_deploy_warns_about_a_missing_or_bad_encryption_key(tmp_path, key, check):
    result = manage(
        "check",
        "--deploy",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=key,
        DEBUG="false",
        ALLOWED_HOSTS="example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0  # a warning: the server still starts
    assert check in result.stderr + result.stdout


def test_a_bare_clone_can_check_its_migrations_without_any_secret(tmp_path):
    result = manage("makemigrations", "--check", "--dry-run", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_production_without_secret_key_refuses_to_start(tmp_path):
    result = manage(
        "check", SECRET_KEY="", DEBUG="false", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


# --- admin: every model, browsable and searchable --------------------------------------------------


def _our_models():
    return [model for label in ("integrations", "calls") for model in apps.get_app_config(label).get_models()]


@pytest.mark.django_db
@pytest.mark.parametrize("model", _our_models(), ids=lambda model: model._meta.label)
def test_every_model_is_registered_in_the_admin_with_search(admin_client, model):
    model_admin = admin.site._registry.get(model)
    assert model_admin is not None, f"{model._meta.label} is not registered in the admin"
    assert model_admin.search_fields, f"{model._meta.label} has no search_fields"
    changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(changelist).status_code == 200
    assert admin_client.get(changelist, {"q": "c_Dana7Lee01 +14155550123"}).status_code == 200


# --- a missing GHL token: a clear failure on the outbox task, never a traceback ------------------


@pytest.mark.django_db
def test_post_call_sync_without_a_ghl_token_fails_clearly(client, agent, settings):
    from calls import outbox
    from calls.models import Call, CallEvent, GhlSyncTask
    from calls.pipeline import process_call_event
    from tests.conftest import fixture_bytes, post_signed

    settings.GHL_API_TOKEN = ""  # the agent's location (GHL_LOCATION_ID) has no token stored either
    with responses.RequestsMock() as ghl:  # nothing may be sent to GHL
        response = post_signed(client, "/api/webhooks/retell", fixture_bytes("retell_call_ended"))
        assert response.status_code == 204 and response.content == b""
        for event_id in CallEvent.objects.values_list("pk", flat=True):
            process_call_event(event_id)
        outbox.run_due_tasks()
        assert len(ghl.calls) == 0

    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "failed"
    assert task.last_error == "GHL token is not configured for location loc_BrightDental1"
    assert Call.objects.get().ghl_sync_status == "failed"


# --- an unexpected crash --------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unexpected_crash_under_api_answers_json_without_a_traceback(client, monkeypatch):
    from tests.conftest import fixture_bytes, post_signed

    def crash(raw_body):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("calls.views.ingest_retell_event", crash)
    client.raise_request_exception = False

    response = post_signed(client, "/api/webhooks/retell", fixture_bytes("retell_call_ended"))

    assert response.status_code == 500  # a 5xx: Retell retries a delivery we could not store
    assert response.json() == {
        "error": "server_error",
        "message": "Something went wrong on our side; it has been logged.",
    }
    assert b"secret internals" not in response.content
