"""A fake GoHighLevel API for the benchmarks: the endpoints we use, fixture-shaped answers, fixed latency.

Runs as its own process (`python -m bench.fake_ghl --port P --latency-ms 50`) so its CPU and its
sleeps are not charged to the server under test. Every API answer waits `--latency-ms` first: that is
the GHL round trip the benchmark subtracts when it computes our own overhead.

It checks what real GHL checks first (a bearer token and a Version header, else 401) and records, for
the end-to-end figure, when the note of each call arrived: the note body carries `Call ID: <id>`.

Control endpoints (no latency): GET /__bench/stats (request counts by route, note arrivals per call)
and POST /__bench/reset.
"""

import argparse
import json
import re
import sys
import threading
import time
import uuid
import zoneinfo
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CALL_ID_IN_NOTE = re.compile(r"Call ID: (\S+)")
SLOT_HOURS = range(9, 17)  # a calendar open 9:00-17:00, a slot every 30 minutes


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


CONTACT = fixture("ghl_duplicate_search_found")["contact"]
NOTE = fixture("ghl_note_created")["note"]
APPOINTMENT = fixture("ghl_appointment_created")


class Recorder:
    """What the fake saw, shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.counts = {}
            self.note_arrivals = {}  # call_id → epoch seconds of the first note POST for it
            self.note_posts = {}  # call_id → number of note POSTs (more than 1 would be a duplicate note)

    def count(self, route):
        with self.lock:
            self.counts[route] = self.counts.get(route, 0) + 1

    def note(self, call_id, arrived):
        with self.lock:
            self.note_arrivals.setdefault(call_id, arrived)
            self.note_posts[call_id] = self.note_posts.get(call_id, 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "counts": dict(self.counts),
                "note_arrivals": dict(self.note_arrivals),
                "duplicate_notes": {key: n for key, n in self.note_posts.items() if n > 1},
            }


def contact_for(phone=None, contact_id=None):
    contact = dict(CONTACT)
    if phone:
        contact["phone"] = phone
        contact["id"] = "c_" + re.sub(r"\D", "", phone)
    if contact_id:
        contact["id"] = contact_id
    return contact


def free_slots(query):
    """Slots for every day in [startDate, endDate] (epoch ms), in the requested timezone."""
    zone = zoneinfo.ZoneInfo(query.get("timezone") or "UTC")
    start = datetime.fromtimestamp(int(query["startDate"]) / 1000, zone)
    end = datetime.fromtimestamp(int(query["endDate"]) / 1000, zone)
    answer = {}
    day = start.date()
    while day <= end.date():
        slots = []
        for hour in SLOT_HOURS:
            for minute in (0, 30):
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                if start <= moment <= end:
                    slots.append(moment.isoformat())
        if slots:
            answer[day.isoformat()] = {"slots": slots}
        day += timedelta(days=1)
    answer["traceId"] = str(uuid.uuid4())
    return answer


def route(method, path, query, body):
    """(route name for the counters, status, JSON answer) for one GHL API request."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["contacts", "search", "duplicate"] and method == "GET":
        return "contacts.duplicate", 200, {"contact": contact_for(phone=query.get("number"))}
    if parts == ["contacts"] and method == "POST":
        return "contacts.create", 201, {"contact": contact_for(phone=body.get("phone"))}
    if parts == ["contacts", "upsert"] and method == "POST":
        return "contacts.upsert", 200, {"new": False, "contact": contact_for(phone=body.get("phone"))}
    if parts[0] == "contacts" and len(parts) == 2:
        return f"contacts.{method.lower()}", 200, {"contact": contact_for(contact_id=parts[1])}
    if parts[0] == "contacts" and len(parts) >= 3:
        contact_id, what = parts[1], parts[2]
        if what == "notes" and method == "POST":
            return (
                "notes.create",
                201,
                {"note": {**NOTE, "body": body.get("body", ""), "contactId": contact_id}},
            )
        if what == "notes" and method == "PUT":
            return "notes.update", 200, {"note": {**NOTE, "id": parts[3], "body": body.get("body", "")}}
        if what == "notes":
            return "notes.list", 200, {"notes": []}
        if what == "tags":
            return f"tags.{method.lower()}", 200, {"tags": list(body.get("tags") or [])}
        if what == "appointments":
            return "contacts.appointments", 200, {"events": []}
        if what == "workflow":
            return "workflow.add", 200, {"succeded": True}
    if parts[0] == "calendars" and len(parts) == 3 and parts[2] == "free-slots":
        return "calendars.free_slots", 200, free_slots(query)
    if parts[:3] == ["calendars", "events", "appointments"]:
        return f"appointments.{method.lower()}", 200, {**APPOINTMENT, **(body or {})}
    if parts == ["opportunities", "upsert"]:
        return "opportunities.upsert", 200, {"opportunity": {"id": "o_bench", **(body or {})}}
    return "unknown", 404, {"statusCode": 404, "message": f"Cannot {method} {path}"}


def make_handler(recorder, latency):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like GHL: the clients reuse connections
        # Headers and body leave in two writes: with Nagle's algorithm on, the body would wait for the
        # client's delayed ACK of the headers (40 ms on Linux), an artefact no real GHL answer has.
        disable_nagle_algorithm = True

        def log_message(self, *args):  # no access log: it would cost more than the answers
            pass

        def _answer(self, status, payload, headers=()):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self):
            arrived = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            if url.path.startswith("/__bench/"):
                if url.path == "/__bench/stats":
                    return self._answer(200, recorder.snapshot())
                if url.path == "/__bench/reset" and self.command == "POST":
                    recorder.reset()
                    return self._answer(200, {"ok": True})
                return self._answer(404, {"error": "unknown control endpoint"})

            if not (self.headers.get("Authorization") or "").startswith("Bearer ") or not self.headers.get(
                "Version"
            ):
                recorder.count("unauthorised")
                return self._answer(401, {"statusCode": 401, "message": "Invalid JWT"})
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self._answer(422, {"statusCode": 422, "message": ["body is not JSON"]})
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            name, status, payload = route(self.command, url.path, query, body)
            recorder.count(name)
            if name == "notes.create":
                match = CALL_ID_IN_NOTE.search(body.get("body") or "")
                if match:
                    recorder.note(match.group(1), arrived)
            remaining = latency - (time.time() - arrived)  # the latency counts from the request's arrival
            if remaining > 0:
                time.sleep(remaining)
            rate_headers = [
                ("X-RateLimit-Max", "100"),
                ("X-RateLimit-Remaining", "99"),
                ("X-RateLimit-Interval-Milliseconds", "10000"),
                ("X-RateLimit-Daily-Remaining", "199999"),
            ]
            self._answer(status, payload, rate_headers)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) refuses connections under load


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    server = Server(("127.0.0.1", args.port), make_handler(Recorder(), args.latency_ms / 1000))
    print(f"fake GHL on http://127.0.0.1:{args.port} (latency {args.latency_ms:g} ms)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
