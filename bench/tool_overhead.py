"""Our own overhead on an in-call tool request: everything except the GHL round trip.

Runs signed POST /api/functions/<tool> requests through Django's test client against a database
(SQLite by default, or DATABASE_URL) with GHL faked by `responses`, and reports per-request time
(signing excluded, Django's middleware and the test client's request building included) minus the
time spent inside GhlClient._request (the fake's own cost, standing in for the network round trip).

    DJANGO_SETTINGS_MODULE=retellghl.settings_test .venv/bin/python bench/tool_overhead.py [n]
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
from integrations.models import GhlLocation, ToolDefinition  # noqa: E402
from integrations.tools import calendar  # noqa: E402
from tests.conftest import retell_signature  # noqa: E402
from tests.tools.support import GHL, free_slots, retell_body  # noqa: E402

ghl_seconds = ghl_cpu_seconds = 0.0
_request = ghl.GhlClient._request


def timed_request(self, *args, **kwargs):
    global ghl_seconds, ghl_cpu_seconds
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        return _request(self, *args, **kwargs)
    finally:
        ghl_seconds += time.perf_counter() - started
        ghl_cpu_seconds += time.process_time() - cpu_started


def measure(client, name, args_for, count):
    global ghl_seconds, ghl_cpu_seconds
    overheads, totals, cpu = [], [], []
    for index in range(count):
        body = json.dumps(retell_body(name, args_for(index))).encode()
        signature = retell_signature(body)  # signing is Retell's cost, not ours: outside the timer
        ghl_seconds = ghl_cpu_seconds = 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.post(
            f"/api/functions/{name}",
            data=body,
            content_type="application/json",
            HTTP_X_RETELL_SIGNATURE=signature,
        )
        total = time.perf_counter() - started
        cpu.append((time.process_time() - cpu_started - ghl_cpu_seconds) * 1000)
        assert response.status_code == 200 and "error" not in response.json(), response.content
        totals.append(total * 1000)
        overheads.append((total - ghl_seconds) * 1000)
    p95 = sorted(overheads)[int(count * 0.95) - 1]
    return statistics.median(totals), statistics.median(overheads), p95, statistics.median(cpu)


def main(count):
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        ghl.GhlClient._request = timed_request
        calendar.now = lambda: datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
        GhlLocation.objects.create(
            location_id="loc_BrightDental1",
            name="Bench",
            timezone="America/Los_Angeles",
            default_calendar_id="cal_Cleanings01",
        )
        ToolDefinition.objects.create(name="check_availability", handler="check_availability")
        ToolDefinition.objects.create(name="book_appointment", handler="book_appointment")
        slots = [
            f"2026-12-08T{hour:02d}:{minute:02d}:00-08:00" for hour in range(8, 18) for minute in (0, 30)
        ]
        client = Client()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.get(f"{GHL}/calendars/cal_Cleanings01/free-slots", json=free_slots(*slots))
            mock.post(f"{GHL}/calendars/events/appointments", json={"id": "a_1"})
            # Warm-up: imports, URL resolver, validator compilation.
            measure(client, "check_availability", lambda i: {"date": "2026-12-08"}, 5)
            print(
                f"{connection.vendor}, {count} requests each, ms: median total / median ours / p95 ours"
                " / median ours in CPU time (steadier on a busy machine)"
            )
            for name, args_for in [
                ("check_availability", lambda i: {"date": "2026-12-08", "time_of_day": "afternoon"}),
                # A new slot each time so every request books (no idempotent replay).
                ("book_appointment", lambda i: {"start_time": slots[i % len(slots)], "first_name": f"n{i}"}),
            ]:
                total, ours, p95, cpu = measure(client, name, args_for, count)
                print(f"  {name:20s} {total:6.2f} / {ours:6.2f} / {p95:6.2f} / {cpu:6.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
