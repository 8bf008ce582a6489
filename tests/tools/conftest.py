"""Fixtures for the in-call tool tests: a faked GHL and a pinned clock."""

import pytest
import responses

from tests.tools.support import NOW


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock(monkeypatch):
    """Pins "now" for the calendar tools; set `clock.now` to move it."""

    class Clock:
        now = NOW

    monkeypatch.setattr("integrations.tools.calendar.now", lambda: Clock.now)
    return Clock
