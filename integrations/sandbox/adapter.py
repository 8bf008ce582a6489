"""The sandbox's wire: a `requests` transport adapter that answers GHL requests in-process.

`GhlClient` mounts `SandboxAdapter` on GHL's base URL when `GHL_SANDBOX` is on (see
`integrations.ghl.ghl_session`). The client then builds and sends its requests exactly as it does
for GHL; instead of opening a connection, the adapter hands the `PreparedRequest` to `serve`, which
does what GHL's gateway does before an endpoint runs (route, bearer token, `Version` header, rate
limit, JSON body), calls the handler in a database savepoint and returns a real
`requests.Response`. Nothing leaves the process: timeouts, proxies and TLS settings are ignored.
"""

import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from io import BytesIO
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from django.db import transaction
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPResponse

from integrations.sandbox.handlers import ROUTES, GhlError, SandboxRequest

log = logging.getLogger(__name__)

_ROUTES = [(method, re.compile(pattern), version, handler) for method, pattern, version, handler in ROUTES]


class RateLimiter:
    """GHL's limits, per token: a burst of `burst_max` requests per `interval_ms`, and a daily cap.

    Kept in process memory, so with several server processes each counts its own requests: the
    sandbox shows the headers and the 429 that GHL sends, it does not police a shared budget.
    """

    burst_max = 100
    interval_ms = 10_000
    daily_max = 200_000

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._windows = {}  # token → (window start, requests in it)
            self._days = {}  # token → (UTC date, requests that day)

    def take(self, key):
        """Count one request; return (allowed, headers)."""
        now, today = self._clock(), datetime.now(UTC).date()
        with self._lock:
            started, used = self._windows.get(key, (now, 0))
            if (now - started) * 1000 >= self.interval_ms:
                started, used = now, 0
            day, used_today = self._days.get(key, (today, 0))
            if day != today:
                day, used_today = today, 0
            allowed = used < self.burst_max and used_today < self.daily_max
            if allowed:
                used, used_today = used + 1, used_today + 1
            self._windows[key] = (started, used)
            self._days[key] = (day, used_today)
        return allowed, {
            "X-RateLimit-Limit-Daily": str(self.daily_max),
            "X-RateLimit-Daily-Remaining": str(self.daily_max - used_today),
            "X-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-RateLimit-Max": str(self.burst_max),
            "X-RateLimit-Remaining": str(self.burst_max - used),
        }


rate_limiter = RateLimiter()


def serve(method, url, headers, body, *, base_path=""):
    """Answer one GHL request: (status, JSON payload, extra response headers)."""
    parts = urlsplit(url)
    path = parts.path[len(base_path) :] if base_path and parts.path.startswith(base_path) else parts.path
    route = _match(method, path)
    if route is None:
        # GHL's gateway (NestJS) answers unknown routes like this.
        return 404, {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"}, {}
    version, handler, path_params = route

    token = _bearer_token(headers.get("Authorization"))
    if not token:
        return 401, _unauthorized("Invalid token: access token is invalid"), {}
    allowed, limit_headers = rate_limiter.take(token)
    if not allowed:
        # GHL's 429 carries the rate-limit headers but no documented Retry-After.
        return 429, {"statusCode": 429, "message": "Too Many Requests"}, limit_headers
    sent_version = headers.get("Version")
    if sent_version != version:
        # GHL answers a missing or wrong Version with 401, which reads like a bad token.
        detail = "missing" if not sent_version else f"{sent_version!r} is not valid for this endpoint"
        return 401, _unauthorized(f"Version header {detail}"), limit_headers  # wording inferred

    try:
        request = SandboxRequest(
            method=method,
            path=path,
            query={name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()},
            body=_json_body(body),
        )
        with transaction.atomic():  # a savepoint: a failed handler leaves the caller's transaction usable
            status, payload = handler(request, **path_params)
    except GhlError as exc:
        return exc.status, exc.payload, limit_headers
    except Exception:
        # A sandbox bug must look like a GHL outage to the caller (a retryable 5xx), not crash it.
        log.exception("GHL sandbox failed on %s %s", method, path)
        return 500, {"statusCode": 500, "message": "Internal server error"}, limit_headers
    log.debug("GHL sandbox %s %s → %s", method, path, status)
    return status, payload, limit_headers


def _match(method, path):
    for route_method, pattern, version, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            return version, handler, {name: unquote(value) for name, value in match.groupdict().items()}
    return None


def _bearer_token(value):
    scheme, _, token = (value or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(message):
    return {"statusCode": 401, "message": message, "error": "Unauthorized"}


def _json_body(body):
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise GhlError(400, "Unexpected token in JSON body") from None  # wording inferred
    if not isinstance(data, dict):
        raise GhlError(400, "The request body must be a JSON object")  # wording inferred
    return data


class SandboxAdapter(BaseAdapter):
    """Serves GHL requests from the sandbox instead of the network."""

    def __init__(self, base_url=""):
        super().__init__()
        self.base_path = urlsplit(base_url).path.rstrip("/")

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        status, payload, extra_headers = serve(
            request.method, request.url, request.headers, request.body, base_path=self.base_path
        )
        content = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **extra_headers}
        response = requests.Response()
        response.status_code = status
        response.reason = HTTPStatus(status).phrase
        response.headers = CaseInsensitiveDict(headers)
        # The body is read from `raw`, as for a network response, so streaming reads work too.
        response.raw = HTTPResponse(
            body=BytesIO(content), headers=headers, status=status, preload_content=False, decode_content=False
        )
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        response.connection = self
        return response

    def close(self):
        pass
