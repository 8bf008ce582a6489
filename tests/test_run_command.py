"""The README's run command (`scripts/run`) really serves /healthz and /admin/ on the embedded SQLite.

Runs the script itself in a child process group (its own port and database file, no GHL token so the
sandbox is on), waits until it answers, and stops the whole group. Once per CI run: only in the SQLite
pass, since the script never uses the test database anyway.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="runs once per CI run: in the SQLite pass"
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url):
    """(status, headers, body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_the_run_command_serves_healthz_and_the_admin_on_sqlite(tmp_path):
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PORT": str(port),
        "WEB_WORKERS": "1",
        # Its own SQLite file: the default one in the project folder may be a developer's.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        ["bash", "scripts/run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240  # a fresh machine installs the project first
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.5)
        assert health is not None, (tmp_path / "run.log").read_text()[-3000:]

        status, _, body = health
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok"
        assert report["database"]["vendor"] == "sqlite"

        status, headers, _ = get(f"http://127.0.0.1:{port}/admin/")
        assert status == 302 and "/admin/login/" in headers["Location"]
        status, _, body = get(f"http://127.0.0.1:{port}/admin/login/")
        assert status == 200 and b"retellghl" in body

        output = (tmp_path / "run.log").read_text()
        assert "GHL sandbox" in output or "product tour" in output  # no token: the sandbox is on
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()
