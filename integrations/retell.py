"""The only module that talks HTTP to Retell's REST API (REFERENCE.md §5).

Every failure becomes a typed error from `integrations.errors`, so callers decide from the type
alone: `RetryableError` (timeouts, connection failures, 5xx; its subclass `RateLimited` for 429),
`NotFound` (404), `PermanentError` (other 4xx, redirects, a 2xx that is not a JSON object). The
client never retries itself. The API key travels only in the Authorization header; it is never put
in an error message or a log line."""

import json
import logging
import time
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests
from django.conf import settings

from integrations.errors import NotConfigured, NotFound, PermanentError, RateLimited, RetryableError
from integrations.phones import to_e164

logger = logging.getLogger(__name__)

VENDOR = "Retell"
MAX_LIST_LIMIT = 1000
# Retell documents neither its rate limits nor its 429 headers: wait this long when it names no delay.
DEFAULT_RETRY_AFTER = 10.0
_MAX_ERROR_TEXT = 500


def start_timestamp_range(lo_ms, hi_ms):
    """`filter_criteria` selecting calls that started between two epoch-ms instants (inclusive)."""
    return {"start_timestamp": {"type": "range", "op": "bt", "value": [int(lo_ms), int(hi_ms)]}}


def _dynamic_variable_value(value):
    # Retell rejects the whole request when one dynamic variable is not a string.
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _retry_after_seconds(header):
    """Retry-After as seconds (a number or an HTTP date); DEFAULT_RETRY_AFTER when absent/unreadable."""
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return DEFAULT_RETRY_AFTER


class RetellClient:
    def __init__(self, *, api_key=None, base_url=None, connect_timeout=None, read_timeout=None, session=None):
        self._api_key = settings.RETELL_API_KEY if api_key is None else api_key
        if not self._api_key:
            raise NotConfigured("RETELL_API_KEY is not set: cannot call the Retell API.")
        self.base_url = (base_url or settings.RETELL_BASE_URL).rstrip("/")
        self.timeout = (
            settings.RETELL_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
            settings.RETELL_READ_TIMEOUT if read_timeout is None else read_timeout,
        )
        self.session = session or requests.Session()

    def __repr__(self):
        return f"RetellClient(base_url={self.base_url!r})"  # never the key

    # --- calls ------------------------------------------------------------------------------

    def create_phone_call(
        self,
        *,
        from_number,
        to_number,
        override_agent_id=None,
        override_agent_version=None,
        dynamic_variables=None,
        metadata=None,
        idempotency_key=None,
    ):
        """Start an outbound call; returns the call object (`call_status: registered`).

        Pass an `idempotency_key` whenever the caller may retry: a read timeout does not tell whether
        Retell already dialled, and the key (valid 1 h) stops a retry from calling the person twice.
        Raises InvalidPhoneNumber (a ValueError) before any HTTP if a number cannot be made E.164.
        """
        payload = {
            "from_number": to_e164(from_number),
            "to_number": to_e164(to_number),
            "override_agent_id": override_agent_id,
            "override_agent_version": override_agent_version,
            "metadata": metadata,
            "idempotency_key": idempotency_key,
        }
        if dynamic_variables is not None:
            payload["retell_llm_dynamic_variables"] = {
                str(key): _dynamic_variable_value(value) for key, value in dynamic_variables.items()
            }
        payload = {key: value for key, value in payload.items() if value is not None}
        return self._request("POST", "/v2/create-phone-call", payload)

    def get_call(self, call_id):
        """The full call object, transcript included."""
        if not call_id:
            raise ValueError("call_id is required")
        return self._request("GET", f"/v2/get-call/{quote(str(call_id), safe='')}")

    def list_calls(
        self, *, filter_criteria=None, sort_order="descending", limit=MAX_LIST_LIMIT, pagination_key=None
    ):
        """One page: `{"items": [...], "has_more": bool, "pagination_key": str | None}`.

        Items omit transcripts; fetch each call with `get_call` when you need them.
        """
        payload = {
            "filter_criteria": filter_criteria,
            "sort_order": sort_order,
            "limit": max(1, min(int(limit), MAX_LIST_LIMIT)),
            "pagination_key": pagination_key,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        data = self._request("POST", "/v3/list-calls", payload)
        items = data.get("items")
        if not isinstance(items, list):
            raise PermanentError("list-calls answer has no `items` list", vendor=VENDOR, body=data)
        return {
            "items": items,
            "has_more": bool(data.get("has_more")),
            "pagination_key": data.get("pagination_key") or None,
        }

    def iter_calls(self, *, filter_criteria=None, sort_order="descending", limit=MAX_LIST_LIMIT):
        """Every call matching `filter_criteria`, following `pagination_key` page after page."""
        pagination_key = None
        while True:
            page = self.list_calls(
                filter_criteria=filter_criteria,
                sort_order=sort_order,
                limit=limit,
                pagination_key=pagination_key,
            )
            yield from page["items"]
            # Stop also when a page claims more but gives no cursor: asking again would loop forever.
            if not page["has_more"] or not page["pagination_key"]:
                return
            pagination_key = page["pagination_key"]

    # --- transport --------------------------------------------------------------------------

    def _request(self, method, path, payload=None):
        """Send one request; return the decoded JSON object or raise a typed VendorError."""
        where = f"{method} {path}"
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                json=payload,
                headers=headers,
                timeout=self.timeout,
                # A redirect is never a valid API answer; following one could also carry the key away.
                allow_redirects=False,
            )
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # Retryable, but a read timeout on create-phone-call may mean Retell did dial: that is
            # what idempotency_key is for.
            raise RetryableError(self._scrub(f"{where}: {exc}"), vendor=VENDOR) from exc
        except requests.RequestException as exc:
            raise PermanentError(self._scrub(f"{where}: {exc}"), vendor=VENDOR) from exc

        status = response.status_code
        logger.info("Retell %s -> %s in %.0f ms", where, status, (time.monotonic() - started) * 1000)
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError:
                raise PermanentError(
                    f"{where} answered {status} without JSON",
                    vendor=VENDOR,
                    status=status,
                    body=self._scrub(response.text[:_MAX_ERROR_TEXT]),
                ) from None
            if not isinstance(data, dict):
                raise PermanentError(
                    f"{where} answered {status} with a non-object", vendor=VENDOR, status=status
                )
            return data

        body, message = self._error_details(response)
        text = f"{where}: {message}" if message else f"{where} failed"
        if status == 429:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            raise RateLimited(text, vendor=VENDOR, status=status, body=body, retry_after=retry_after)
        if status >= 500:
            raise RetryableError(text, vendor=VENDOR, status=status, body=body)
        if status == 404:
            raise NotFound(text, vendor=VENDOR, status=status, body=body)
        raise PermanentError(text, vendor=VENDOR, status=status, body=body)  # other 4xx, and 3xx

    def _error_details(self, response):
        """(body, message) from Retell's `{"status": "error", "message": ...}`, or from plain text."""
        try:
            body = response.json()
        except ValueError:
            text = self._scrub(response.text[:_MAX_ERROR_TEXT])
            return text, text.strip()
        message = body.get("message") if isinstance(body, dict) else None
        if message is not None and not isinstance(message, str):
            message = json.dumps(message, ensure_ascii=False)
        # An error body is echoed into logs and admin pages: make sure the key cannot ride along.
        return json.loads(self._scrub(json.dumps(body))), self._scrub(message or "")

    def _scrub(self, text):
        return text.replace(self._api_key, "[redacted]")
