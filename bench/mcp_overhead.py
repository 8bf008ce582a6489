"""Our own time per MCP request: token check, tool list from the database, a tool call minus GHL.

POSTs JSON-RPC messages to /api/mcp through Django's test client against a database (SQLite by
default, or DATABASE_URL), GHL faked by `responses`, and reports the median and p95 per request. For
tools/call the time spent inside GhlClient._request (the fake, standing in for the network) is taken
out, so the number compares with bench/tool_overhead.py's custom-function path.

    DJANGO_SETTINGS_MODULE=retellghl.settings_test .venv/bin/python bench/mcp_overhead.py [n]
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellghl.settings_test")

import django  # noqa: E402

django.setup()

from datetime import UTC, datetime  # noqa: E402

import responses  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

from integrations import ghl  # noqa: E402
from integrations.models import GhlLocation, McpToken, ToolDefinition  # noqa: E402
from integrations.tools import calendar  # noqa: E402
from tests.tools.support import GHL, free_slots  # noqa: E402

ghl_seconds = 0.0
_request = ghl.GhlClient._request


def timed_request(self, *args, **kwargs):
    global ghl_seconds
    started = time.perf_counter()
    try:
        return _request(self, *args, **kwargs)
    finally:
        ghl_seconds += time.perf_counter() - started


def measure(client, secret, message, count):
    global ghl_seconds
    body = json.dumps(message)
    times = []
    for _ in range(count):
        ghl_seconds = 0.0
        started = time.perf_counter()
        response = client.post(
            "/api/mcp",
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
            HTTP_ACCEPT="application/json, text/event-stream",
            HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
        )
        times.append((time.perf_counter() - started - ghl_seconds) * 1000)
        assert response.status_code == 200 and "error" not in response.json(), response.content
    return statistics.median(times), sorted(times)[int(count * 0.95) - 1]


def main(count):
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        ghl.GhlClient._request = timed_request
        calendar.now = lambda: datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
        location = GhlLocation.objects.create(
            location_id="loc_BrightDental1",
            name="Bench",
            timezone="America/Los_Angeles",
            default_calendar_id="cal_Cleanings01",
        )
        for name in ("check_availability", "book_appointment", "lookup_contact", "add_tags", "add_note"):
            ToolDefinition.objects.create(name=name, handler=name, expose_over_mcp=True)
        token = McpToken(name="bench", location=location)
        secret = token.set_new_token()
        token.save()
        client = Client()
        call = {"name": "check_availability", "arguments": {"date": "2026-12-08", "time_of_day": "afternoon"}}
        messages = [
            ("ping", {"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            ("tools/list (5 tools)", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            ("tools/call", {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call}),
        ]
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.get(
                f"{GHL}/calendars/cal_Cleanings01/free-slots",
                json=free_slots("2026-12-08T14:00:00-08:00", "2026-12-08T16:00:00-08:00"),
            )
            for _, message in messages:  # warm-up: imports, URL resolver, validator compilation
                measure(client, secret, message, 5)
            print(f"{connection.vendor}, {count} requests each, ms: median / p95 (GHL time excluded)")
            for label, message in messages:
                median, p95 = measure(client, secret, message, count)
                print(f"  {label:22s} {median:6.2f} / {p95:6.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
