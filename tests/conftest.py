"""Shared test helpers: vendor payload fixtures, Retell-style signing, and base configuration rows."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

FIXTURES = Path(__file__).parent / "fixtures"

# Property tests explore new inputs on every developer run; in CI (CI=true) they replay a fixed
# sequence, so a submission lands or fails on its code, not on the draw. What a developer's run
# finds becomes a fixed regression test.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")


def fixture_bytes(name):
    """The raw bytes of tests/fixtures/<name>.json."""
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_json(name):
    return json.loads(fixture_bytes(name))


def retell_signature(body, *, key=None, timestamp_ms=None):
    """Sign `body` exactly as Retell does, with the official retell-sdk signer (a real peer)."""
    from django.conf import settings
    from retell.lib.webhook_auth import symmetric

    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return symmetric["sign"](text, key or settings.RETELL_API_KEY, timestamp_ms)


def post_signed(client, url, body, **extra):
    """POST `body` (bytes, str or a JSON-able object) to `url` signed the Retell way."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body, ensure_ascii=False)
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {"HTTP_X_RETELL_SIGNATURE": retell_signature(body), **extra}
    return client.post(url, data=body, content_type="application/json", **headers)


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache (contact lookups are cached across requests)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def location(db):
    from integrations.models import GhlLocation

    return GhlLocation.objects.create(
        location_id="loc_BrightDental1",
        name="Bright Dental",
        timezone="America/Los_Angeles",
        default_calendar_id="cal_Cleanings01",
    )


@pytest.fixture
def agent(location):
    from integrations.models import Agent

    return Agent.objects.create(
        retell_agent_id="agent_5d3e1c9b2a7f4e6d8c0b",
        name="Bright Dental Receptionist",
        role=Agent.Role.RECEPTION,
        location=location,
        post_call_tags=["ai-call"],
    )
