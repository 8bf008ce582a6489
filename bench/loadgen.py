"""Load generator for bench/run.py, run in its own process: a JSON spec on stdin, JSON results on stdout.

    echo '{"port": 8000, "scenario": "baseline", "mode": "closed", "concurrency": 4, "duration": 5}' \
        | python -m bench.loadgen

Two ways to load a server:
- closed loop (`concurrency` clients, each sends its next request when the previous one is answered):
  the most the server can do, the throughput figure;
- open loop (`rate` requests/s on a fixed schedule, whatever the answers do): the latency a steady
  stream of callers sees. Latency is measured from each request's SCHEDULED time, so a server (or a
  starved load generator) that falls behind shows up in the figures instead of hiding in a slower
  send rate ("coordinated omission").

Every run is bounded by `duration` seconds AND `max_requests`, every request by `timeout` seconds.
Requests go over plain sockets, one connection each with `Connection: close` (gunicorn's sync workers
close after every answer anyway): the cheapest client Python can be, because it shares the machine's
cores with the server it measures.
"""

import copy
import itertools
import json
import os
import queue
import re
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellghl.settings_test")  # never configured here

from integrations.signatures import SIGNATURE_HEADER, sign_retell_body  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CALL_ID_PLACEHOLDER = "__BENCH_CALL_ID__"


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def compact(payload):
    # Retell posts compact UTF-8 JSON; non-ASCII stays as is (the signature covers the raw text).
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# --- Scenarios: what one request looks like and what counts as a correct answer -----------------


class Scenario:
    path = "/"
    expected_status = 200

    def __init__(self, options):
        self.options = options
        self.run_tag = options.get("run_tag", "r")

    def build(self, index):
        """(body bytes, extra headers, tag): the request with this index."""
        raise NotImplementedError

    def check(self, status, body):
        """None when the answer is what a working server says, else a short description."""
        if status != self.expected_status:
            return f"HTTP {status}: {body[:160].decode('utf-8', 'replace')}"
        return None

    def signed(self, body_text):
        return body_text.encode(), {SIGNATURE_HEADER: sign_retell_body(body_text, self.options["api_key"])}


class Baseline(Scenario):
    """The empty view: the framework's own cost per request."""

    path = "/bench/baseline"
    expected_status = 204

    def build(self, index):
        return b'{"event":"ping"}', {}, None


class Ingest(Scenario):
    """call_ended with the 50-turn transcript, a new call_id per request, signed like Retell."""

    path = "/api/webhooks/retell"
    expected_status = 204

    def __init__(self, options):
        super().__init__(options)
        payload = fixture("retell_call_ended_50_turns")
        payload["call"]["call_id"] = CALL_ID_PLACEHOLDER
        self.prefix, self.suffix = compact(payload).split(CALL_ID_PLACEHOLDER)

    def build(self, index):
        call_id = f"call_bench_{self.run_tag}_{index}"
        body, headers = self.signed(self.prefix + call_id + self.suffix)
        return body, headers, call_id


class BaselineWithBody(Ingest):
    """The same signed call_ended body to the empty view: the cost of merely receiving it."""

    path = "/bench/baseline"


class StoreOnly(Ingest):
    """The same signed call_ended body, verified and stored as one row: ingestion's ceiling."""

    path = "/bench/store"


class Inbound(Scenario):
    """call_inbound to our routed number, from one repeat caller (cached) or a new caller each time."""

    path = "/api/webhooks/inbound"

    def __init__(self, options):
        super().__init__(options)
        self.payload = fixture("retell_call_inbound")
        self.unique_callers = options.get("unique_callers", False)
        self.first_number = int(options.get("first_number", 2_000_000))

    def build(self, index):
        payload = copy.deepcopy(self.payload)
        payload["event_timestamp"] = int(time.time() * 1000)
        if self.unique_callers:  # a number nobody called from before: the lookup must go to GHL
            payload["call_inbound"]["from_number"] = f"+1415{self.first_number + index:07d}"
        body, headers = self.signed(compact(payload))
        return body, headers, None

    def check(self, status, body):
        problem = super().check(status, body)
        if problem:
            return problem
        answer = json.loads(body)["call_inbound"]
        if answer.get("metadata", {}).get("contact_found") is not True:
            return "answered without the GHL contact (the lookup failed open)"
        return None


class Tool(Scenario):
    """Retell custom function check_availability for a day the fake calendar has slots on."""

    def __init__(self, options):
        super().__init__(options)
        self.name = options.get("tool", "check_availability")
        self.path = f"/api/functions/{self.name}"
        self.payload = fixture("retell_custom_function")
        self.payload["name"] = self.name
        self.payload["args"] = options["args"]

    def build(self, index):
        payload = copy.deepcopy(self.payload)
        payload["call"]["call_id"] = f"call_bench_{self.run_tag}_tool_{index}"
        body, headers = self.signed(compact(payload))
        return body, headers, None

    def check(self, status, body):
        problem = super().check(status, body)
        if problem:
            return problem
        answer = json.loads(body)
        if "error" in answer:
            return f"tool error {answer['error']}: {answer.get('message', '')}"[:160]
        if not answer.get("slots"):
            return "no slots offered"
        return None


class McpToolCall(Scenario):
    """MCP `tools/call` (JSON-RPC over Streamable HTTP, stateless) with a bearer token."""

    def __init__(self, options):
        super().__init__(options)
        self.path = options.get("mcp_path", "/api/mcp")
        self.headers = {
            "Authorization": f"Bearer {options['mcp_token']}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": options.get("mcp_protocol_version", "2025-06-18"),
        }
        self.params = {"name": options.get("tool", "check_availability"), "arguments": options["args"]}

    def build(self, index):
        message = {"jsonrpc": "2.0", "id": index, "method": "tools/call", "params": self.params}
        return compact(message).encode(), dict(self.headers), None

    def check(self, status, body):
        problem = super().check(status, body)
        if problem:
            return problem
        answer = json.loads(body)
        if "error" in answer:
            return f"JSON-RPC error {answer['error'].get('code')}: {answer['error'].get('message')}"[:160]
        if answer.get("result", {}).get("isError"):
            return f"tool error: {json.dumps(answer['result'].get('structuredContent'))[:140]}"
        return None


SCENARIOS = {
    "baseline": Baseline,
    "ingest": Ingest,
    "baseline_body": BaselineWithBody,
    "store_only": StoreOnly,
    "inbound": Inbound,
    "tool": Tool,
    "mcp": McpToolCall,
}


# --- HTTP over a plain socket --------------------------------------------------------------------


def request_bytes(host, port, path, body, headers):
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "User-Agent: retellghl-bench",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


GHL_TIMING = re.compile(rb"^server-timing:.*?\bghl;dur=([0-9.]+)", re.IGNORECASE | re.MULTILINE)


def exchange(host, port, raw, timeout):
    """(status, body, ghl ms) of one request on its own connection; raises OSError/ValueError on failure.

    `ghl ms` is the time the server says it spent waiting on GHL (its `Server-Timing: ghl;dur=`
    header, on the live-call endpoints), or None when it did not say.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            data = sock.recv(262144)
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {response[:80]!r}")
    status = int(head[9:12])
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    timing = GHL_TIMING.search(head)
    return status, body, float(timing.group(1)) if timing else None


def dechunk(data):
    out, position = [], 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2 : line_end + 2 + size])
        position = line_end + 2 + size + 2


# --- Running a load ------------------------------------------------------------------------------


class Collector:
    def __init__(self, t0):
        self.t0 = t0
        self.lock = threading.Lock()
        # [scheduled s, started s, latency ms, status, error or None, tag, answered epoch, GHL ms or None]
        self.records = []

    def add(self, record):
        with self.lock:
            self.records.append(record)


def one_request(spec, scenario, index, scheduled, collector):
    body, headers, tag = scenario.build(index)
    raw = request_bytes(spec["host"], spec["port"], scenario.path, body, headers)
    started = time.perf_counter()
    ghl_ms = None
    try:
        status, answer, ghl_ms = exchange(spec["host"], spec["port"], raw, spec["timeout"])
        error = scenario.check(status, answer)
    except (OSError, ValueError) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"[:160]
    finished = time.perf_counter()
    base = scheduled if scheduled is not None else started
    collector.add(
        [
            round(base - collector.t0, 6),
            round(started - collector.t0, 6),
            round((finished - base) * 1000, 3),
            status,
            error,
            tag,
            time.time(),
            ghl_ms,
        ]
    )


def closed_loop(spec, scenario, first_index, count_limit, deadline, collector):
    indexes = itertools.count(first_index)
    last = first_index + count_limit

    def client():
        while time.perf_counter() < deadline:
            index = next(indexes)
            if index >= last:
                return
            one_request(spec, scenario, index, None, collector)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(spec["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.perf_counter(), 0) + spec["timeout"] + 5)


def open_loop(spec, scenario, first_index, count_limit, deadline, collector):
    """Requests at a fixed rate; a pool of threads sends each as soon as it is due."""
    interval = 1.0 / spec["rate"]
    due = queue.Queue()
    pool = [
        threading.Thread(target=lambda: _open_worker(spec, scenario, due, collector), daemon=True)
        for _ in range(spec.get("threads", 64))
    ]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    for offset in range(count_limit):
        scheduled = start + offset * interval
        if scheduled >= deadline:
            break
        pause = scheduled - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        due.put((first_index + offset, scheduled))
    for _ in pool:
        due.put(None)
    for thread in pool:
        thread.join(timeout=max(deadline - time.perf_counter(), 0) + spec["timeout"] + 5)


def _open_worker(spec, scenario, due, collector):
    while True:
        item = due.get()
        if item is None:
            return
        one_request(spec, scenario, item[0], item[1], collector)


def run(spec):
    spec = {"host": "127.0.0.1", "timeout": 10.0, "max_requests": 100_000, "first_index": 0, **spec}
    scenario = SCENARIOS[spec["scenario"]](spec.get("options", {}))
    drive = open_loop if spec["mode"] == "open" else closed_loop
    t0 = time.perf_counter()
    collector = Collector(t0)
    # `first_index` keeps request ids (call ids, caller numbers) unique across the runs of one scenario.
    drive(spec, scenario, spec["first_index"], spec["max_requests"], t0 + spec["duration"], collector)
    return {
        "records": sorted(collector.records, key=lambda record: record[0]),
        "wall_seconds": time.perf_counter() - t0,
    }


def main():
    spec = json.load(sys.stdin)
    json.dump(run(spec), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
