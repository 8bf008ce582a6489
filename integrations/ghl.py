"""GoHighLevel API v2 client: the only module that does HTTP to GHL.

One `GhlClient` per location (a GHL token is scoped to one sub-account). Every request goes through
`GhlClient._request`, which sets the headers and an explicit (connect, read) timeout, reads the
rate-limit headers and turns failures into the typed errors of `integrations.errors`. The client
never retries: callers (the outbox) decide when to try again, guided by the error type and
`retry_after`.

Rate limits are GHL's, per location, so every process sees the same budget in the headers. What one
client learns from them (the burst window is spent, on a 2xx or a 429) is shared through Django's cache under
`ghl-rate-pause:<location>` (Redis when `REDIS_URL` is set: every web and worker process; otherwise
per process): throttled (background) clients wait it out before their next request, live ones don't.
"""

import contextvars
import functools
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.cache import cache

from integrations.errors import (
    DuplicateContact,
    NotConfigured,
    NotFound,
    PermanentError,
    RateLimited,
    RetryableError,
)
from integrations.phones import to_e164

VENDOR = "GHL"
log = logging.getLogger(__name__)

# GHL versions its API per endpoint group through the `Version` header. A missing or wrong Version
# answers 401, which reads like a bad token, so every call names its group's version explicitly.
CONTACTS_API = "2021-07-28"  # contacts, notes, tags, workflows, opportunities
CALENDARS_API = "2021-04-15"  # free slots, appointments

DEFAULT_RETRY_AFTER = 10.0  # seconds; GHL's burst window is 10 s and its 429 headers are undocumented
# A throttled client sleeps through a pause up to this long; past it, it raises RateLimited without
# sending (the outbox reschedules the task) rather than hold a worker.
MAX_THROTTLE_SLEEP = 15.0
MAX_SLOT_RANGE_MS = 31 * 24 * 3600 * 1000  # free-slots refuses wider ranges
_DATE_KEY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RateLimit:
    """GHL's rate-limit headers from the last response; None when a header was absent."""

    remaining: int | None = None  # requests left in the current burst window
    max: int | None = None  # burst size (100)
    interval_ms: int | None = None  # burst window length (10,000 ms)
    daily_remaining: int | None = None  # requests left today (of 200,000)

    @classmethod
    def from_headers(cls, headers):
        def number(name):
            try:
                return int(headers[name])
            except (KeyError, TypeError, ValueError):
                return None

        return cls(
            remaining=number("X-RateLimit-Remaining"),
            max=number("X-RateLimit-Max"),
            interval_ms=number("X-RateLimit-Interval-Milliseconds"),
            daily_remaining=number("X-RateLimit-Daily-Remaining"),
        )


class GhlStopwatch:
    """Wall time spent in GHL round trips (request sent → answer read) within a `ghl_stopwatch()` block."""

    def __init__(self):
        self.seconds = 0.0
        self.requests = 0

    @property
    def ms(self):
        return round(self.seconds * 1000, 2)


_stopwatch = contextvars.ContextVar("ghl_stopwatch", default=None)


@contextmanager
def ghl_stopwatch():
    """Time the GHL requests made inside the block, e.g. to tell our latency from GHL's on a live call.
    Blocks nest: an inner block's time counts in the outer one too."""
    parent = _stopwatch.get()
    watch = GhlStopwatch()
    token = _stopwatch.set(watch)
    try:
        yield watch
    finally:
        _stopwatch.reset(token)
        if parent is not None:
            parent.seconds += watch.seconds
            parent.requests += watch.requests


def reports_ghl_time(view):
    """Answer with a `Server-Timing: ghl;dur=<ms>` header: how much of the response time was GHL's.

    For the live-call endpoints, so whoever measures them (bench/run.py, a browser's network panel,
    a proxy's logs) can tell our overhead from GHL's latency.
    """

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        with ghl_stopwatch() as watch:
            response = view(request, *args, **kwargs)
        response["Server-Timing"] = f'ghl;dur={watch.ms:.2f};desc="GHL, {watch.requests} request(s)"'
        return response

    return wrapped


def ghl_session(base_url):
    """A requests session for GHL. With GHL_SANDBOX on, requests to `base_url` never reach the network:
    the in-process GHL sandbox answers them (the client's code path stays exactly the same)."""
    session = requests.Session()
    if settings.GHL_SANDBOX:
        from integrations.sandbox.adapter import SandboxAdapter

        session.mount(base_url.rstrip("/") + "/", SandboxAdapter(base_url))
    return session


class GhlClient:
    """GHL API v2 for one location.

    Live-call paths (a caller is waiting) pass `read_timeout=settings.GHL_LIVE_READ_TIMEOUT`.
    Background jobs pass `throttle=True` so the client waits out a spent burst window (seen by any
    process, see the module docstring) instead of collecting 429s; `sleep` and `clock` (wall-clock
    seconds, comparable across processes) are injectable for tests.
    """

    def __init__(
        self,
        *,
        token,
        location_id,
        base_url=None,
        connect_timeout=None,
        read_timeout=None,
        throttle=False,
        session=None,
        sleep=time.sleep,
        clock=time.time,
    ):
        if not token:
            raise NotConfigured(f"GHL token is not configured for location {location_id or '(none)'}")
        if not location_id:
            raise NotConfigured("GHL location id is not configured")
        self._token = token
        self.location_id = location_id
        self.base_url = (base_url or settings.GHL_BASE_URL).rstrip("/")
        self.timeout = (
            connect_timeout if connect_timeout is not None else settings.GHL_CONNECT_TIMEOUT,
            read_timeout if read_timeout is not None else settings.GHL_READ_TIMEOUT,
        )
        self.throttle = throttle
        # A shared session is safe: the token travels in per-request headers, not session headers.
        self.session = session or ghl_session(self.base_url)
        self.rate_limit = RateLimit()
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0  # what this client saw itself, in case the cache is unavailable

    def __repr__(self):
        return f"<GhlClient location={self.location_id}>"

    # --- Contacts (Version 2021-07-28) -----------------------------------------------------------

    def find_contact_by_phone(self, phone):
        """The contact with this phone, or None.

        Uses the duplicate search rather than POST /contacts/search, whose index lags writes.
        """
        params = {"locationId": self.location_id, "number": to_e164(phone)}
        data = self._request("GET", "/contacts/search/duplicate", version=CONTACTS_API, params=params)
        return data.get("contact") or None

    def get_contact(self, contact_id):
        data = self._request("GET", f"/contacts/{_id(contact_id)}", version=CONTACTS_API)
        return _field(data, "contact")

    def create_contact(self, fields):
        """Create a contact; raises DuplicateContact (with `.contact_id`) when GHL already has one."""
        body = _contact_body(fields, locationId=self.location_id)
        data = self._request("POST", "/contacts/", version=CONTACTS_API, json=body)
        return _field(data, "contact")

    def upsert_contact(self, fields):
        """Create or update by GHL's duplicate rules (email first, then phone); returns (contact, created)."""
        body = _contact_body(fields, locationId=self.location_id)
        data = self._request("POST", "/contacts/upsert", version=CONTACTS_API, json=body)
        return _field(data, "contact"), bool(data.get("new"))

    def update_contact(self, contact_id, fields):
        """Update a contact. `tags` here REPLACES all the contact's tags: use add_tags/remove_tags.

        GHL rejects `locationId` on this endpoint ("property locationId should not exist"), so it is
        dropped even when the caller passes it.
        """
        body = _contact_body(fields)
        data = self._request("PUT", f"/contacts/{_id(contact_id)}", version=CONTACTS_API, json=body)
        return _field(data, "contact")

    def add_tags(self, contact_id, tags):
        """Add tags, keeping the existing ones; returns GHL's list of tags."""
        path = f"/contacts/{_id(contact_id)}/tags"
        data = self._request("POST", path, version=CONTACTS_API, json={"tags": list(tags)})
        return data.get("tags", [])

    def remove_tags(self, contact_id, tags):
        path = f"/contacts/{_id(contact_id)}/tags"
        data = self._request("DELETE", path, version=CONTACTS_API, json={"tags": list(tags)})
        return data.get("tags", [])

    def get_contact_appointments(self, contact_id):
        # A contacts endpoint, so the contacts Version (GHL's spec lists only 2021-07-28 for it).
        data = self._request("GET", f"/contacts/{_id(contact_id)}/appointments", version=CONTACTS_API)
        return data.get("events") or data.get("appointments") or []

    def add_to_workflow(self, contact_id, workflow_id, event_start_time=None):
        path = f"/contacts/{_id(contact_id)}/workflow/{_id(workflow_id)}"
        body = _without_none({"eventStartTime": _iso(event_start_time)})
        self._request("POST", path, version=CONTACTS_API, json=body)

    # --- Notes (Version 2021-07-28; no locationId) -----------------------------------------------

    def add_note(self, contact_id, body, user_id=None):
        path = f"/contacts/{_id(contact_id)}/notes"
        payload = _without_none({"body": body, "userId": user_id})
        return _field(self._request("POST", path, version=CONTACTS_API, json=payload), "note")

    def update_note(self, contact_id, note_id, body, user_id=None):
        path = f"/contacts/{_id(contact_id)}/notes/{_id(note_id)}"
        payload = _without_none({"body": body, "userId": user_id})
        return _field(self._request("PUT", path, version=CONTACTS_API, json=payload), "note")

    def list_notes(self, contact_id):
        data = self._request("GET", f"/contacts/{_id(contact_id)}/notes", version=CONTACTS_API)
        return data.get("notes", [])

    # --- Calendars (Version 2021-04-15) ----------------------------------------------------------

    def get_free_slots(self, calendar_id, *, start, end, timezone, user_id=None):
        """Free slots by date: {"2026-12-08": ["2026-12-08T09:00:00-08:00", ...], ...}.

        `start`/`end` are aware datetimes or epoch milliseconds (GHL answers 422 to ISO dates).
        Slot strings are returned untouched: reuse one as `start_time` when booking.
        """
        start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
        if end_ms < start_ms:
            raise ValueError("free slots: end is before start")
        if end_ms - start_ms > MAX_SLOT_RANGE_MS:
            raise ValueError("free slots: GHL allows at most 31 days per request")
        params = _without_none(
            {"startDate": start_ms, "endDate": end_ms, "timezone": timezone, "userId": user_id}
        )
        data = self._request(
            "GET", f"/calendars/{_id(calendar_id)}/free-slots", version=CALENDARS_API, params=params
        )
        # Date keys sit beside bookkeeping keys such as "traceId": keep only the dates.
        return {
            day: list(value.get("slots", []))
            for day, value in sorted(data.items())
            if _DATE_KEY.fullmatch(day) and isinstance(value, dict)
        }

    def create_appointment(
        self,
        *,
        calendar_id,
        contact_id,
        start_time,
        end_time=None,
        title=None,
        appointment_status=None,
        assigned_user_id=None,
        to_notify=None,
    ):
        """Book an appointment; returns GHL's (flat) appointment object.

        None fields are omitted: GHL rejects unknown or null properties. Some calendar types
        require `assigned_user_id`.
        """
        body = _without_none(
            {
                "calendarId": calendar_id,
                "locationId": self.location_id,
                "contactId": contact_id,
                "startTime": _iso(start_time),
                "endTime": _iso(end_time),
                "title": title,
                "appointmentStatus": appointment_status,
                "assignedUserId": assigned_user_id,
                "toNotify": to_notify,
            }
        )
        return self._request("POST", "/calendars/events/appointments", version=CALENDARS_API, json=body)

    def update_appointment(self, appointment_id, fields):
        path = f"/calendars/events/appointments/{_id(appointment_id)}"
        return self._request("PUT", path, version=CALENDARS_API, json=dict(fields))

    def cancel_appointment(self, appointment_id):
        return self.update_appointment(appointment_id, {"appointmentStatus": "cancelled"})

    # --- Opportunities (Version 2021-07-28) ------------------------------------------------------

    def upsert_opportunity(
        self, *, pipeline_id, contact_id, name, status="open", pipeline_stage_id=None, monetary_value=None
    ):
        body = _without_none(
            {
                "pipelineId": pipeline_id,
                "locationId": self.location_id,
                "contactId": contact_id,
                "name": name,
                "status": status,
                "pipelineStageId": pipeline_stage_id,
                "monetaryValue": monetary_value,
            }
        )
        data = self._request("POST", "/opportunities/upsert", version=CONTACTS_API, json=body)
        return _field(data, "opportunity")

    # --- The one HTTP seam -----------------------------------------------------------------------

    def _request(self, method, path, *, version, params=None, json=None, expected=(200, 201)):
        """Send one request and return its parsed JSON body, or raise a typed VendorError."""
        if self.throttle:
            self._wait_for_burst_window()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json", "Version": version}
        started = time.perf_counter()
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=params,
                json=json,  # requests sets Content-Type: application/json
                headers=headers,
                timeout=self.timeout,
                # A redirect is never a valid API answer; following one could also carry the token away.
                allow_redirects=False,
            )
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # Retryable, but a read timeout on a POST may mean GHL did act: callers creating
            # things should look before they create again.
            raise RetryableError(self._redact(f"{method} {path}: {exc}"), vendor=VENDOR) from exc
        except requests.RequestException as exc:
            raise PermanentError(self._redact(f"{method} {path}: {exc}"), vendor=VENDOR) from exc
        finally:
            watch = _stopwatch.get()
            if watch is not None:
                watch.seconds += time.perf_counter() - started
                watch.requests += 1

        self.rate_limit = RateLimit.from_headers(response.headers)
        remaining = self.rate_limit.remaining
        if remaining is not None and remaining <= settings.GHL_BACKGROUND_RESERVE:
            # GHL does not say when the burst window started: pause a whole interval from now.
            self._pause_background((self.rate_limit.interval_ms or DEFAULT_RETRY_AFTER * 1000) / 1000)
        body = _parse_body(response)
        if response.status_code not in expected:
            raise self._error(method, path, response, body)
        if body is None:
            return {}
        if not isinstance(body, dict):  # every v2 endpoint we use answers a JSON object
            raise PermanentError(
                f"{method} {path}: answer is not a JSON object",
                vendor=VENDOR,
                status=response.status_code,
                body=body,
            )
        return body

    def _error(self, method, path, response, body):
        status = response.status_code
        message = self._redact(f"{method} {path}: {_ghl_message(body) or response.reason or 'error'}")
        kwargs = {"vendor": VENDOR, "status": status, "body": body}
        if status == 429:
            return RateLimited(message, retry_after=self._retry_after(response.headers), **kwargs)
        if status >= 500:
            return RetryableError(message, **kwargs)
        if status == 404:
            return NotFound(message, **kwargs)
        duplicate_of = (body.get("meta") or {}).get("contactId") if isinstance(body, dict) else None
        if status == 400 and duplicate_of:
            return DuplicateContact(message, contact_id=duplicate_of, **kwargs)
        return PermanentError(message, **kwargs)  # other 4xx, and any unexpected status

    def _retry_after(self, headers):
        """Seconds to wait after a 429: Retry-After if sent, else the burst window, else a default."""
        value = headers.get("Retry-After")
        if value:
            try:
                return max(float(value), 0.0)
            except ValueError:
                try:
                    return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
                except (TypeError, ValueError):
                    pass
        if self.rate_limit.remaining == 0 and self.rate_limit.interval_ms:
            return self.rate_limit.interval_ms / 1000
        return DEFAULT_RETRY_AFTER

    @property
    def _pause_key(self):
        return f"ghl-rate-pause:{self.location_id}"

    def _pause_background(self, seconds):
        """Tell every throttled client of this location (in any process sharing the cache) to wait."""
        until = self._clock() + seconds
        self._paused_until = max(self._paused_until, until)
        try:
            cache.set(self._pause_key, until, timeout=int(seconds) + 1)
        except Exception:  # noqa: BLE001 - the cache is an optimisation: GHL's 429s remain the backstop
            log.warning("could not share a GHL rate-limit pause for %s", self.location_id, exc_info=True)

    def _wait_for_burst_window(self):
        """Sleep until a pause any client reported is over; raise RateLimited if that is too long."""
        try:
            shared = cache.get(self._pause_key) or 0.0
        except Exception:  # noqa: BLE001
            log.warning("could not read the GHL rate-limit pause for %s", self.location_id, exc_info=True)
            shared = 0.0
        wait = max(self._paused_until, shared) - self._clock()
        if wait > MAX_THROTTLE_SLEEP:
            raise RateLimited(
                f"GHL rate limit for {self.location_id} spent: paused for {wait:.0f} s",
                vendor=VENDOR,
                retry_after=wait,
            )
        if wait > 0:
            self._sleep(wait)

    def _redact(self, text):
        return text.replace(self._token, "[token]")


def _parse_body(response):
    """Parsed JSON, None when empty, or the (truncated) text when it is not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _ghl_message(body):
    """GHL errors are {statusCode, message}; on 422 `message` is a list of strings."""
    if not isinstance(body, dict):
        return body if isinstance(body, str) else None
    message = body.get("message") or body.get("error")
    if isinstance(message, list):
        return "; ".join(str(part) for part in message)
    return str(message) if message else None


def _field(data, key):
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise PermanentError(f"answer has no {key!r} object", vendor=VENDOR, body=data)
    return data[key]


def _contact_body(fields, **extra):
    # Phones go out in E.164 only: a formatted number makes GHL create a duplicate contact.
    body = {key: value for key, value in fields.items() if key != "locationId"}
    if body.get("phone"):
        body["phone"] = to_e164(body["phone"])
    return body | extra


def _without_none(mapping):
    return {key: value for key, value in mapping.items() if value is not None}


def _id(value):
    """An id as one URL path segment (ids may come from an LLM's tool call: never trust them)."""
    text = str(value or "").strip()
    if not text:
        raise ValueError("empty GHL id")
    return quote(text, safe="")


def _epoch_ms(value):
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("naive datetime: pass an aware datetime or epoch milliseconds")
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an aware datetime or epoch milliseconds, got {type(value).__name__}")


def _iso(value):
    return value.isoformat() if isinstance(value, datetime) else value
