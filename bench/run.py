"""Benchmark retellghl in its production setup and write bench/RESULTS.md.

    .venv/bin/python bench/run.py                  # everything, about 4 minutes on 2 cores
    .venv/bin/python bench/run.py --help           # options (workers, GHL latency, rates, durations)

Starts, all on 127.0.0.1 and all torn down at the end (also on Ctrl-C and on errors):
- a fake GHL (bench/fake_ghl.py) answering with a fixed latency (--ghl-latency-ms);
- a private Redis server as django-q2 broker and Django cache, when `redis-server` is installed
  (--redis-url to use another, --no-redis for the database broker and the per-process cache);
- a fresh PostgreSQL database (--db-name), migrated and seeded (bench/seed.py), dropped at the end;
- gunicorn with --workers (DEBUG off, a generated SECRET_KEY, the bench-only baseline view on);
- the django-q2 cluster (`manage.py qcluster`).
Then it drives load from a separate process (bench/loadgen.py) and reports throughput and latency
per scenario, each as a ratio to the baseline (an empty view behind the same middleware, same run).
See bench/README.md for what each figure means.
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS_BEGIN = "<!-- bench:results:begin (written by bench/run.py; edit outside these markers) -->"
RESULTS_END = "<!-- bench:results:end -->"
LOCATION_ID = "loc_bench"
TOOL_TIMEZONE = "America/Los_Angeles"  # the seeded location's


class BenchError(Exception):
    pass


# --- Child processes -----------------------------------------------------------------------------


class Processes:
    """The processes this run started, each in its own process group, stopped in reverse order."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.running = {}  # name → Popen

    def start(self, name, argv, env=None):
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log_file = log
        self.running[name] = process
        return process

    def check_alive(self, name):
        process = self.running[name]
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}; see {self.log_dir / name}.log")

    def stop(self, name, grace=15.0):
        process = self.running.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        else:
            _signal_group(process, signal.SIGKILL)  # a child may have outlived its parent
        process.log_file.close()

    def stop_all(self):
        for name in reversed(list(self.running)):
            try:
                self.stop(name)
            except Exception as exc:  # keep stopping the others
                print(f"  could not stop {name}: {exc}", file=sys.stderr)


def _signal_group(process, sig):
    try:
        os.killpg(process.pid, sig)  # the group this run created for this child (start_new_session)
    except ProcessLookupError:
        pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what, probe, timeout, processes=None, name=None):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if processes is not None and name is not None:
            processes.check_alive(name)
        try:
            if probe():
                return
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(0.2)
    raise BenchError(f"{what} not ready after {timeout:.0f} s ({last_error})")


def http_json(url, method="GET", timeout=10):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"null")


# --- PostgreSQL and Redis ------------------------------------------------------------------------


def admin_connection(server_url):
    import psycopg

    return psycopg.connect(f"{server_url.rstrip('/')}/postgres", autocommit=True, connect_timeout=5)


def create_database(server_url, name):
    from psycopg import sql

    with admin_connection(server_url) as connection:
        (users,) = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
        ).fetchone()
        if users:
            raise BenchError(
                f"database {name} has {users} open connection(s): another bench run? Use --db-name."
            )
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return connection.execute("SHOW server_version").fetchone()[0]


def drop_database(server_url, name):
    from psycopg import sql

    with admin_connection(server_url) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def redis_ping(url):
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return client.ping() and client.info("server")["redis_version"]
    finally:
        client.close()


# --- CPU accounting ------------------------------------------------------------------------------
#
# Wall-clock figures depend on everything else running on the machine; CPU time per request does much
# less. Each run snapshots the CPU time of our process groups, of the PostgreSQL backends serving the
# bench database and of the whole machine, so the report can say what a request costs and how busy
# the machine was with other work meanwhile.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid):
    """(process group, CPU seconds) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _machine_busy():
    """(busy, total) CPU seconds of the whole machine since boot."""
    try:
        values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


class CpuMeter:
    def __init__(self, bench):
        self.bench = bench

    def snapshot(self):
        groups = {process.pid: name for name, process in self.bench.processes.running.items()}
        by_pid = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(entry.name)
                if stat and stat[0] in groups:
                    by_pid[entry.name] = (groups[stat[0]], stat[1])
        for pid in self.bench.database_backends():
            stat = _proc_stat(pid)
            if stat:
                by_pid[str(pid)] = ("postgres", stat[1])
        return {
            "by_pid": by_pid,
            "machine": _machine_busy(),
            "children": _children_cpu(),
            "at": time.monotonic(),
        }

    @staticmethod
    def delta(before, after):
        """CPU seconds per component between two snapshots, plus the machine's busy share."""
        used = {}
        for pid, (name, seconds) in after["by_pid"].items():
            previous = before["by_pid"].get(pid)
            used[name] = used.get(name, 0.0) + seconds - (previous[1] if previous else 0.0)
        used["loadgen"] = after["children"] - before["children"]
        busy = after["machine"][0] - before["machine"][0]
        total = after["machine"][1] - before["machine"][1]
        ours = sum(used.values())
        return {
            "cpu_seconds": used,
            "machine_busy": busy / total if total else None,
            "others_busy": max(busy - ours, 0.0) / total if total else None,
        }


def _children_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- Measuring -----------------------------------------------------------------------------------


def percentile(values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    if not values:
        return None
    rank = max(int(round(fraction * len(values) + 0.4999)) - 1, 0)
    return values[min(rank, len(values) - 1)]


def summarise(result, mode, rate=None):
    records = result["records"]
    latencies = sorted(record[2] for record in records)
    errors = [record[4] for record in records if record[4]]
    if records:
        begin = min(record[1] for record in records)
        end = max(record[1] + record[2] / 1000 for record in records)
        span = max(end - begin, 1e-9)
    else:
        span = 0
    samples = {}
    for error in errors:
        samples[error] = samples.get(error, 0) + 1
    lags = sorted((record[1] - record[0]) * 1000 for record in records)
    return {
        "mode": mode,
        "rate": rate,
        "requests": len(records),
        "errors": len(errors),
        "error_samples": sorted(samples.items(), key=lambda item: -item[1])[:5],
        "rps": len(records) / span if span else 0.0,
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": latencies[-1] if latencies else None,
        "send_lag_p99": percentile(lags, 0.99) if mode == "open" else None,
        "seconds": span,
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.log_dir = Path(tempfile.mkdtemp(prefix="retellghl-bench-"))
        self.processes = Processes(self.log_dir)
        self.results = {}  # scenario key → summary
        self.notes = []  # remarks for RESULTS.md
        self.versions = {}
        self.run_tag = datetime.now(UTC).strftime("%H%M%S") + secrets.token_hex(2)
        self.web_port = free_port()
        self.ghl_port = free_port()
        self.redis_url = ""
        self.database_created = False

    # --- setup ---------------------------------------------------------------------------------

    def env(self):
        args = self.args
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "retellghl.settings",
            "DEBUG": "false",
            "SECRET_KEY": self.secret_key,
            "SECURE_SSL_REDIRECT": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "DATABASE_URL": f"{args.pg_url.rstrip('/')}/{args.db_name}",
            "REDIS_URL": self.redis_url,
            "GHL_BASE_URL": f"http://127.0.0.1:{self.ghl_port}",
            "GHL_API_TOKEN": "pit-bench-token",
            "GHL_LOCATION_ID": LOCATION_ID,
            "GHL_SANDBOX": "false",
            "RETELL_API_KEY": self.retell_key,
            "Q_WORKERS": str(args.q_workers),
            "Q_SYNC": "false",
            "BENCH_BASELINE_VIEW": "true",
            "FIELD_ENCRYPTION_KEY": "",
            "PYTHONUNBUFFERED": "1",
        }

    def setup(self):
        args = self.args
        self.secret_key = secrets.token_urlsafe(50)
        self.retell_key = "key_bench_" + secrets.token_hex(12)
        print(f"==> logs in {self.log_dir}")

        self.processes.start(
            "fake_ghl",
            [
                sys.executable,
                "-m",
                "bench.fake_ghl",
                "--port",
                str(self.ghl_port),
                "--latency-ms",
                str(args.ghl_latency_ms),
            ],
        )
        wait_until("fake GHL", lambda: self.ghl_stats() is not None, 15, self.processes, "fake_ghl")

        if args.no_redis:
            self.notes.append(
                "Redis off (--no-redis): django-q2 uses the database broker, cache is per process."
            )
        elif args.redis_url:
            self.redis_url = args.redis_url
            self.versions["Redis"] = redis_ping(self.redis_url)
        elif shutil.which("redis-server"):
            port = free_port()
            self.processes.start(
                "redis",
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            wait_until("redis", lambda: redis_ping(self.redis_url), 10, self.processes, "redis")
            self.versions["Redis"] = redis_ping(self.redis_url)
        else:
            self.notes.append(
                "redis-server not found: django-q2 uses the database broker, cache is per process."
            )

        print(f"==> database {args.db_name}")
        self.versions["PostgreSQL"] = create_database(args.pg_url, args.db_name)
        self.database_created = True
        env = self.env()
        for argv in (
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            [sys.executable, "-m", "bench.seed"],
        ):
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise BenchError(f"{' '.join(argv[1:])} failed:\n{done.stdout}\n{done.stderr}")

        print(f"==> gunicorn on 127.0.0.1:{self.web_port}, {args.workers} workers × {args.threads} threads")
        gunicorn = [
            sys.executable,
            "-m",
            "gunicorn",
            "retellghl.wsgi",
            "--bind",
            f"127.0.0.1:{self.web_port}",
            "--workers",
            str(args.workers),
            "--backlog",
            "2048",
        ]
        if args.threads > 1:
            gunicorn += ["--threads", str(args.threads)]
        self.processes.start("gunicorn", gunicorn, env=env)
        wait_until(
            "gunicorn",
            lambda: http_json(f"http://127.0.0.1:{self.web_port}/healthz")[0] == 200,
            60,
            self.processes,
            "gunicorn",
        )
        self.start_cluster()

    def serve(self, seconds):
        spec = {"port": self.web_port, "options": {"api_key": self.retell_key, "args": self.tool_args()}}
        print(f"==> serving for {seconds:g} s (Ctrl-C stops). Load it with bench/loadgen.py, e.g.:")
        example = {**spec, "scenario": "inbound", "mode": "closed", "concurrency": 4, "duration": 10}
        print(f"    echo '{json.dumps(example)}' | .venv/bin/python -m bench.loadgen > /dev/null")
        pids = {name: process.pid for name, process in self.processes.running.items()}
        print(f"    process groups: {pids}; fake GHL on {self.ghl_port}", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.processes.check_alive("gunicorn")
            time.sleep(1)

    def start_cluster(self):
        self.processes.start("qcluster", [sys.executable, "manage.py", "qcluster"], env=self.env())
        time.sleep(1.0)
        self.processes.check_alive("qcluster")

    def stop_cluster(self):
        self.processes.stop("qcluster", grace=30)

    def teardown(self):
        self.processes.stop_all()
        if self.database_created and not self.args.keep_db:
            try:
                drop_database(self.args.pg_url, self.args.db_name)
            except Exception as exc:
                print(f"  could not drop database {self.args.db_name}: {exc}", file=sys.stderr)

    # --- helpers -------------------------------------------------------------------------------

    def database_backends(self):
        try:
            with admin_connection(self.args.pg_url) as connection:
                rows = connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.args.db_name]
                ).fetchall()
            return [row[0] for row in rows]
        except Exception:
            return []

    def ghl_stats(self):
        return http_json(f"http://127.0.0.1:{self.ghl_port}/__bench/stats")[1]

    def load(
        self, scenario, mode, *, options=None, rate=None, duration=None, max_requests=None, first_index=0
    ):
        """Run the load generator once (in its own process) and return its raw records."""
        args = self.args
        duration = duration or self.default_duration(mode)
        spec = {
            "port": self.web_port,
            "scenario": scenario,
            "mode": mode,
            "concurrency": args.concurrency or 2 * args.workers * args.threads,
            "rate": rate,
            "duration": duration,
            "max_requests": max_requests or args.max_requests,
            "first_index": first_index,
            "timeout": 10.0,
            "options": {"api_key": self.retell_key, "run_tag": self.run_tag, **(options or {})},
        }
        self.processes.check_alive("gunicorn")
        done = subprocess.run(
            [sys.executable, "-m", "bench.loadgen"],
            cwd=ROOT,
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=duration + 120,
        )
        if done.returncode != 0:
            raise BenchError(f"load generator failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    def measure(self, key, label, scenario, mode, *, warmup=None, **kwargs):
        """Warm up (unmeasured), then one measured run with CPU accounting; stores the summary."""
        warmup = self.args.warmup if warmup is None else warmup
        what = f"{kwargs['rate']:g} req/s for" if mode == "open" else "closed loop,"
        duration = kwargs.get("duration") or self.default_duration(mode)
        print(f"--> {label}: {what} up to {duration:g} s", flush=True)
        if warmup:
            # Same requests, not measured: imports, connection pools, caches, PostgreSQL's plans.
            warm = self.load(
                scenario, "closed", options=kwargs.get("options"), duration=30, max_requests=warmup
            )
            failed = [record[4] for record in warm["records"] if record[4]]
            if failed:
                raise BenchError(f"{label}: warm-up requests failed, e.g. {failed[0]}")
        meter = CpuMeter(self)
        ghl_before, before = self.ghl_stats()["counts"], meter.snapshot()
        result = self.load(scenario, mode, first_index=warmup, **kwargs)
        usage, ghl_after = meter.delta(before, meter.snapshot()), self.ghl_stats()["counts"]
        summary = summarise(result, mode, kwargs.get("rate"))
        summary["label"] = label
        summary.update(usage)
        # GHL requests the fake saw during the measured run (notes come from the task workers).
        summary["ghl_requests"] = {
            name: count - ghl_before.get(name, 0)
            for name, count in ghl_after.items()
            if count - ghl_before.get(name, 0)
        }
        served = max(summary["requests"], 1)
        summary["cpu_ms"] = {name: seconds * 1000 / served for name, seconds in usage["cpu_seconds"].items()}
        self.results[key] = summary
        print(
            f"    {summary['requests']} requests, {summary['rps']:.1f} req/s, p50 {summary['p50']:.1f} ms,"
            f" p99 {summary['p99']:.1f} ms, errors {summary['errors']}"
            + (f" ({summary['error_samples'][0][0]})" if summary["errors"] else ""),
            flush=True,
        )
        cpu = summary["cpu_ms"]
        print(
            f"    CPU ms/request: web {cpu.get('gunicorn', 0):.2f}, database {cpu.get('postgres', 0):.2f},"
            f" task workers {cpu.get('qcluster', 0):.2f}, load generator {cpu.get('loadgen', 0):.2f};"
            f" machine busy {summary['machine_busy'] or 0:.0%},"
            f" other processes {summary['others_busy'] or 0:.0%}",
            flush=True,
        )
        return summary, result

    def default_duration(self, mode):
        return self.args.rate_duration if mode == "open" else self.args.duration

    def tool_args(self):
        # Tomorrow where the calendar is: the fake calendar has afternoon slots every day.
        import zoneinfo

        tomorrow = datetime.now(zoneinfo.ZoneInfo(TOOL_TIMEZONE)).date() + timedelta(days=1)
        return {"date": tomorrow.isoformat(), "time_of_day": "afternoon"}

    # --- scenarios -----------------------------------------------------------------------------

    def run_scenarios(self):
        args = self.args
        wanted = set(args.only or SCENARIO_NAMES)

        if "e2e" in wanted:
            self.scenario_e2e()
        if "routing" in wanted:
            self.scenario_routing()
        if "tool" in wanted:
            self.scenario_tool()
        if "mcp" in wanted:
            self.scenario_mcp()
        # Last: the baseline and ingestion back to back with the task workers stopped (ingestion
        # measures the web tier; its backlog would otherwise load the CPU under every later scenario).
        if "ingest" in wanted or "baseline" in wanted:
            self.scenario_baseline_and_ingest(with_ingest="ingest" in wanted)

    def scenario_routing(self):
        args = self.args
        cached = {"unique_callers": False}
        self.measure("routing_cached", "Inbound routing, cached contact", "inbound", "closed", options=cached)
        self.measure(
            "routing_cached_rate",
            f"Inbound routing, cached contact, {args.routing_rate:g} req/s",
            "inbound",
            "open",
            options=cached,
            rate=args.routing_rate,
        )
        uncached = {"unique_callers": True, "first_number": 2_000_000}
        self.measure(
            "routing_uncached", "Inbound routing, uncached contact", "inbound", "closed", options=uncached
        )

    def scenario_tool(self):
        args = self.args
        options = {"tool": "check_availability", "args": self.tool_args()}
        self.measure("tool", "Custom function check_availability", "tool", "closed", options=options)
        summary, result = self.measure(
            "tool_rate",
            f"Custom function check_availability, {args.tool_rate:g} req/s",
            "tool",
            "open",
            options=options,
            rate=args.tool_rate,
        )
        self.add_overhead(summary, result)

    def add_overhead(self, summary, result):
        """Our share of a tool call's latency: per request, its latency minus the time the server spent
        waiting on GHL, as the server reported it (`Server-Timing: ghl;dur=`), then p50/p99 of that.

        Per request, because the fake GHL's own answer times vary (its thread start, its JSON): a fixed
        subtraction of `--ghl-latency-ms` would charge that jitter, not ours, to our overhead. The fixed
        subtraction is kept alongside for comparison.
        """
        calls = sum(count for name, count in summary["ghl_requests"].items() if not name.startswith("notes."))
        summary["ghl_per_request"] = calls / summary["requests"] if summary["requests"] else 0
        fixed = summary["ghl_per_request"] * self.args.ghl_latency_ms
        summary["fixed_overhead_p50"] = summary["p50"] - fixed
        summary["fixed_overhead_p99"] = summary["p99"] - fixed
        ok = [record for record in result["records"] if not record[4]]
        measured = [record for record in ok if record[7] is not None]
        if ok and len(measured) == len(ok):
            overheads = sorted(record[2] - record[7] for record in measured)
            ghl = sorted(record[7] for record in measured)
            summary["ghl_ms_p50"] = percentile(ghl, 0.50)
            summary["overhead_p50"] = percentile(overheads, 0.50)
            summary["overhead_p99"] = percentile(overheads, 0.99)
        else:  # a server without Server-Timing: fall back to the fixed subtraction
            summary["overhead_p50"] = summary["fixed_overhead_p50"]
            summary["overhead_p99"] = summary["fixed_overhead_p99"]

    def scenario_mcp(self):
        if not (ROOT / "integrations" / "mcp").is_dir():
            self.results["mcp"] = {
                "label": "MCP tools/call",
                "skipped": "integrations/mcp is not on this branch",
            }
            print("--> MCP tools/call: not measured (integrations/mcp is not on this branch)")
            return
        options = {"tool": "check_availability", "args": self.tool_args(), "mcp_token": self.mcp_token()}
        self.measure("mcp", "MCP tools/call check_availability", "mcp", "closed", options=options)
        summary, result = self.measure(
            "mcp_rate",
            f"MCP tools/call check_availability, {self.args.tool_rate:g} req/s",
            "mcp",
            "open",
            options=options,
            rate=self.args.tool_rate,
        )
        self.add_overhead(summary, result)

    def mcp_token(self):
        done = subprocess.run(
            [sys.executable, "-m", "bench.seed", "mcp-token"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"could not create an MCP token:\n{done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    def scenario_e2e(self):
        """call_ended at a steady rate with the workers running: accepted → note POST at the fake GHL."""
        args = self.args
        summary, result = self.measure(
            "e2e_ingest",
            f"Webhook ingestion, {args.e2e_rate:g} req/s (workers running)",
            "ingest",
            "open",
            options={"run_tag": self.run_tag + "e"},
            rate=args.e2e_rate,
            duration=args.e2e_duration,
            warmup=0,
        )
        accepted = {record[5]: record[6] for record in result["records"] if not record[4]}
        arrivals = self.wait_for_notes(accepted, args.drain_timeout)
        delays = sorted(
            (arrivals[call_id] - accepted[call_id]) * 1000 for call_id in accepted if call_id in arrivals
        )
        missing = len(accepted) - len(delays)
        self.results["e2e"] = {
            "label": "End to end: call_ended accepted → GHL note POST arrives",
            "mode": "open",
            "rate": args.e2e_rate,
            "requests": len(accepted),
            "errors": missing + summary["errors"],
            "error_samples": [(f"no note within {args.drain_timeout:g} s", missing)] if missing else [],
            "rps": None,
            "p50": percentile(delays, 0.50),
            "p95": percentile(delays, 0.95),
            "p99": percentile(delays, 0.99),
            "max": delays[-1] if delays else None,
            "duplicate_notes": len(self.ghl_stats()["duplicate_notes"]),
        }
        e2e = self.results["e2e"]
        print(f"    e2e p50 {e2e['p50']:.0f} ms, p99 {e2e['p99']:.0f} ms, missing notes {missing}")

    def wait_for_notes(self, accepted, timeout):
        deadline = time.monotonic() + timeout
        while True:
            arrivals = self.ghl_stats()["note_arrivals"]
            if all(call_id in arrivals for call_id in accepted) or time.monotonic() > deadline:
                return arrivals
            self.processes.check_alive("qcluster")
            time.sleep(0.5)

    def scenario_baseline_and_ingest(self, with_ingest):
        args = self.args
        if not args.ingest_with_workers:
            self.stop_cluster()
        try:
            self.measure("baseline", "Baseline: empty Django view", "baseline", "closed")
            self.measure(
                "baseline_rate",
                f"Baseline: empty Django view, {args.routing_rate:g} req/s",
                "baseline",
                "open",
                rate=args.routing_rate,
            )
            if with_ingest:
                # Two floors for ingestion, same signed body: receiving it, and verifying + storing it.
                body = {"run_tag": self.run_tag + "f"}
                self.measure("baseline_body", "Floor: same body to the empty view", "baseline_body", "closed")
                self.measure(
                    "store_only",
                    "Floor: verify signature + store body as one row",
                    "store_only",
                    "closed",
                    options=body,
                )
                label = "Webhook ingestion, call_ended 50 turns" + (
                    "" if args.ingest_with_workers else " (workers stopped)"
                )
                _, result = self.measure(
                    "ingest", label, "ingest", "closed", options={"run_tag": self.run_tag + "i"}
                )
        finally:
            if not args.ingest_with_workers:
                self.start_cluster()
        if with_ingest:
            self.measure_drain(result)

    def measure_drain(self, result):
        """How fast the workers turn the ingested backlog into GHL notes (the pipeline's throughput)."""
        accepted = {record[5]: record[6] for record in result["records"] if not record[4]}
        started = time.time()
        print(
            f"--> draining {len(accepted)} calls through the task workers (≤ {self.args.drain_timeout:g} s)"
        )
        arrivals = self.wait_for_notes(accepted, self.args.drain_timeout)
        done = [arrivals[call_id] for call_id in accepted if call_id in arrivals]
        seconds = (max(done) - started) if done else 0
        self.results["drain"] = {
            "label": "Post-call pipeline: backlog → GHL notes",
            "calls": len(accepted),
            "notes": len(done),
            "seconds": seconds,
            "notes_per_second": len(done) / seconds if seconds else 0,
            "duplicate_notes": len(self.ghl_stats()["duplicate_notes"]),
        }
        drain = self.results["drain"]
        print(
            f"    {drain['notes']}/{drain['calls']} notes in {seconds:.1f} s"
            f" ({drain['notes_per_second']:.1f}/s)"
        )

    def database_report(self):
        done = subprocess.run(
            [sys.executable, "-m", "bench.seed", "report"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            self.results["database"] = json.loads(done.stdout.strip().splitlines()[-1])


SCENARIO_NAMES = ["e2e", "routing", "tool", "mcp", "baseline", "ingest"]


# --- Report --------------------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": memory}


def fmt(value, digits=1, suffix=""):
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def ratio(value, reference, digits=2):
    if value is None or not reference:
        return "–"
    return f"{value / reference:.{digits}f}×"


def verdict(ok):
    return "**PASS**" if ok else "**FAIL**"


def targets(results, args):
    """[(target, measured, pass?)] for the issue's targets, judged on this run's numbers."""
    rows = []
    base, ingest = results.get("baseline"), results.get("ingest")
    if base and ingest and "skipped" not in ingest:
        share = ingest["rps"] / base["rps"] if base["rps"] else 0
        floors = [
            f"{name} {results[key]['rps'] / base['rps']:.0%}"
            for key, name in (("baseline_body", "same body to the empty view"), ("store_only", "store only"))
            if results.get(key) and base["rps"]
        ]
        rows.append(
            (
                "Ingestion ≥ 50% of the baseline's req/s",
                f"{ingest['rps']:.0f} / {base['rps']:.0f} req/s = {share:.0%}"
                + (f" (floors: {', '.join(floors)})" if floors else ""),
                share >= 0.5 and ingest["errors"] == 0,
            )
        )
    cached = results.get("routing_cached_rate")
    if cached:
        rows.append(
            (
                f"Inbound routing, cached contact: p99 ≤ 25 ms at {args.routing_rate:g} req/s",
                f"p99 {cached['p99']:.1f} ms ({cached['errors']} errors)",
                cached["p99"] <= 25 and cached["errors"] == 0 and args.routing_rate >= 100,
            )
        )
    for key, name in (("tool_rate", "custom function"), ("mcp_rate", "MCP tools/call")):
        tool = results.get(key)
        if tool and "overhead_p99" in tool:
            rows.append(
                (
                    f"Tool calls ({name}): our overhead ≤ 10 ms p99 beyond the GHL latency",
                    f"p99 of (latency − the server's GHL time) = {tool['overhead_p99']:.1f} ms"
                    f" (p99 {tool['p99']:.1f} ms − {tool['ghl_per_request']:.2f} × {args.ghl_latency_ms:g} ms"
                    f" = {tool['fixed_overhead_p99']:.1f} ms)",
                    tool["overhead_p99"] <= 10 and tool["errors"] == 0,
                )
            )
    measured = [summary for summary in results.values() if isinstance(summary, dict) and "errors" in summary]
    total_errors = sum(summary["errors"] for summary in measured)
    rows.append(("No errors at any of these loads", f"{total_errors} errors", total_errors == 0))
    return rows


def cpu_per_request(summary):
    """Server CPU ms per request: the web workers plus the PostgreSQL backends they used."""
    cpu = summary.get("cpu_ms") or {}
    return cpu.get("gunicorn", 0.0) + cpu.get("postgres", 0.0)


THROUGHPUT_ROWS = (
    "baseline",
    "baseline_body",
    "store_only",
    "ingest",
    "routing_cached",
    "routing_uncached",
    "tool",
    "mcp",
)
RATE_ROWS = ("baseline_rate", "routing_cached_rate", "tool_rate", "mcp_rate", "e2e_ingest", "e2e")


def render(bench, started, finished):
    args, results = bench.args, bench.results
    info = machine()
    import django

    base, base_rate = results.get("baseline") or {}, results.get("baseline_rate") or {}
    base_cpu = cpu_per_request(base) if base else None
    lines = [
        f"## Run of {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory']} RAM; load average at start "
        f"{bench.load_at_start}. The load generator, the fake GHL, PostgreSQL and Redis share these CPUs.",
        f"- Software: Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {bench.versions.get('PostgreSQL', '?')}, "
        + (f"Redis {bench.versions['Redis']}" if "Redis" in bench.versions else "no Redis")
        + f", gunicorn {_version('gunicorn')}, django-q2 {_version('django-q2')}; commit {bench.commit}.",
        f"- Options: `{' '.join(bench.argv) or '(defaults)'}` → {args.workers} gunicorn workers × "
        f"{args.threads} thread(s), {args.q_workers} django-q2 workers, fake GHL latency "
        f"{args.ghl_latency_ms:g} ms, closed loop with {args.concurrency or 2 * args.workers * args.threads} "
        f"clients for up to {args.duration:g} s, fixed-rate runs for {args.rate_duration:g} s.",
        f"- Took {(finished - started).total_seconds():.0f} s.",
    ]
    lines += [f"- Note: {note}" for note in bench.notes]
    lines += [
        "",
        "### Throughput (closed loop) and latency",
        "",
        "| Scenario | Requests | req/s | × baseline | p50 ms | p95 ms | p99 ms | p99 × baseline "
        "| Server CPU ms/req | × baseline | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in THROUGHPUT_ROWS:
        summary = results.get(key)
        if not summary:
            continue
        if "skipped" in summary:
            lines.append(f"| {summary['label']} | not measured: {summary['skipped']} |" + " |" * 9)
            continue
        cpu = cpu_per_request(summary)
        lines.append(
            f"| {summary['label']} | {summary['requests']} | {fmt(summary['rps'])} | "
            f"{ratio(summary['rps'], base.get('rps'))} | {fmt(summary['p50'])} | {fmt(summary['p95'])} | "
            f"{fmt(summary['p99'])} | {ratio(summary['p99'], base.get('p99'))} | {fmt(cpu, 2)} | "
            f"{ratio(cpu, base_cpu, 1)} | {summary['errors']} |"
        )
    lines += [
        "",
        "### Fixed rate (open loop): latency from each request's scheduled send time",
        "",
        "| Scenario | Requests | p50 ms | p95 ms | p99 ms | max ms "
        f"| p99 × baseline at {args.routing_rate:g}/s | GHL calls/request "
        "| Our overhead p50 / p99 ms | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in RATE_ROWS:
        summary = results.get(key)
        if not summary or "skipped" in summary:
            continue
        overhead = (
            f"{summary['overhead_p50']:.1f} / {summary['overhead_p99']:.1f}"
            if "overhead_p99" in summary
            else "–"
        )
        lines.append(
            f"| {summary['label']} | {summary['requests']} | {fmt(summary['p50'])} | {fmt(summary['p95'])} | "
            f"{fmt(summary['p99'])} | {fmt(summary['max'])} | "
            f"{ratio(summary['p99'], base_rate.get('p99'))} | "
            f"{fmt(summary.get('ghl_per_request'), 2)} | {overhead} | {summary['errors']} |"
        )
    drain = results.get("drain")
    if drain:
        lines += [
            "",
            f"Post-call pipeline ({args.q_workers} django-q2 workers, "
            f"GHL latency {args.ghl_latency_ms:g} ms): "
            f"the {drain['calls']} ingested calls became {drain['notes']} GHL notes in "
            f"{drain['seconds']:.1f} s after the workers started = "
            f"**{drain['notes_per_second']:.1f} notes/s** "
            f"({ratio(drain['notes_per_second'], base.get('rps'), 3)} the baseline's req/s); "
            f"duplicate notes: {drain['duplicate_notes']}.",
        ]
    if results.get("e2e"):
        lines.append(
            f"End to end at {args.e2e_rate:g} calls/s: duplicate notes {results['e2e']['duplicate_notes']}."
        )
    lines += [
        "",
        "### CPU per request and machine load during each run",
        "",
        "CPU milliseconds per request (Linux process accounting), and how busy the whole machine was.",
        '"Other processes" is CPU used by neither this benchmark nor its servers (anything else running).',
        "",
        "| Run | Web (gunicorn) | PostgreSQL | Task workers | Redis | Fake GHL | Load generator "
        "| Machine busy | Other processes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in THROUGHPUT_ROWS + RATE_ROWS:
        summary = results.get(key)
        if not summary or "cpu_ms" not in summary:
            continue
        cpu = summary["cpu_ms"]
        lines.append(
            f"| {summary['label']} | {fmt(cpu.get('gunicorn'), 2)} | {fmt(cpu.get('postgres'), 2)} | "
            f"{fmt(cpu.get('qcluster'), 2)} | {fmt(cpu.get('redis'), 2)} | {fmt(cpu.get('fake_ghl'), 2)} | "
            f"{fmt(cpu.get('loadgen'), 2)} | {fmt((summary['machine_busy'] or 0) * 100, 0, '%')} | "
            f"{fmt((summary['others_busy'] or 0) * 100, 0, '%')} |"
        )
    lines += ["", "### Targets (2-core machine)", "", "| Target | Measured | Result |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {verdict(ok)} |" for name, measured, ok in targets(results, args)]
    errors = [
        (summary["label"], sample, count)
        for summary in results.values()
        if isinstance(summary, dict) and summary.get("error_samples")
        for sample, count in summary["error_samples"]
    ]
    if errors:
        lines += ["", "Errors seen:", ""]
        lines += [f"- {label}: {count} × `{sample}`" for label, sample, count in errors]
    database = results.get("database")
    if database:
        lines += [
            "",
            "Server-side check after the run (rows in the bench database): " + _database_line(database),
        ]
    return "\n".join(lines) + "\n"


def _database_line(report):
    return "; ".join(f"{name}: {json.dumps(value, sort_keys=True)}" for name, value in report.items()) + "."


def _version(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def write_results(path, block):
    text = path.read_text() if path.exists() else ""
    generated = f"{RESULTS_BEGIN}\n{block}{RESULTS_END}"
    if RESULTS_BEGIN in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_BEGIN, 1)
        _, tail = rest.split(RESULTS_END, 1)
        text = head + generated + tail
    else:
        text = (
            (text or "# Benchmark results\n\nSee bench/README.md for what the figures mean.\n\n")
            + generated
            + "\n"
        )
    path.write_text(text)


# --- Entry point ---------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per gunicorn worker (default 1: sync)"
    )
    parser.add_argument("--q-workers", type=int, default=2, help="django-q2 workers (default 2)")
    parser.add_argument("--ghl-latency-ms", type=float, default=50.0, help="fake GHL latency (default 50)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="closed-loop clients (default 2 × workers × threads)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per closed-loop run (default 10)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=20000, help="requests per run at most (default 20000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="unmeasured requests before each run (default 20)"
    )
    parser.add_argument(
        "--routing-rate", type=float, default=100.0, help="fixed rate for routing and baseline (100)"
    )
    parser.add_argument(
        "--tool-rate", type=float, default=10.0, help="fixed rate for tool calls (default 10)"
    )
    parser.add_argument(
        "--rate-duration", type=float, default=20.0, help="seconds per fixed-rate run (default 20)"
    )
    parser.add_argument("--e2e-rate", type=float, default=5.0, help="call_ended/s for end to end (default 5)")
    parser.add_argument(
        "--e2e-duration", type=float, default=20.0, help="seconds of end-to-end load (default 20)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=300.0, help="max wait for notes, s (default 300)"
    )
    parser.add_argument(
        "--ingest-with-workers", action="store_true", help="keep the task workers running during ingestion"
    )
    parser.add_argument("--no-redis", action="store_true", help="database broker and per-process cache")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of a private redis-server")
    parser.add_argument(
        "--pg-url", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL"
    )
    parser.add_argument(
        "--db-name", default="wt_bench", help="database to create and drop (default wt_bench)"
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--only", nargs="+", choices=SCENARIO_NAMES, help="run only these scenarios")
    parser.add_argument(
        "--results", default=str(ROOT / "bench" / "RESULTS.md"), help="file to write ('-': none)"
    )
    parser.add_argument(
        "--serve",
        type=float,
        default=0,
        metavar="SECONDS",
        help="only start the setup and keep it up this long (for profiling with py-spy); no load",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on trouble)"
    )
    parser.add_argument("--json", default="", help="also write the raw summaries to this JSON file")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    bench = Bench(args)
    bench.argv = argv
    bench.load_at_start = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    bench.commit = _commit()
    started = datetime.now(UTC)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    try:
        bench.setup()
        if args.serve:
            bench.serve(args.serve)
            return 0
        bench.run_scenarios()
        bench.database_report()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("==> stopping processes" + ("" if args.keep_db else f", dropping {args.db_name}"))
        bench.teardown()
    block = render(bench, started, datetime.now(UTC))
    print("\n" + block)
    if args.results != "-":
        write_results(Path(args.results), block)
        print(f"==> wrote {args.results}")
    if args.json:
        Path(args.json).write_text(json.dumps(bench.results, indent=2, default=str))
    trouble = any(
        isinstance(summary, dict)
        and (summary.get("errors") or summary.get("notes", 0) < summary.get("calls", 0))
        for summary in bench.results.values()
    )
    if args.keep_logs or trouble:
        print(f"==> process logs kept in {bench.log_dir}")
    else:
        shutil.rmtree(bench.log_dir, ignore_errors=True)
    return 0


def _commit():
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
