"""Retell request signatures: `X-Retell-Signature: v=<epoch ms>,d=<hex HMAC-SHA256>` (REFERENCE.md §1).

Retell signs the raw body text followed by the timestamp with the account's API key; there is no
separate webhook secret. We hash the bytes exactly as received: parsing and re-serialising the JSON
changes non-ASCII transcripts (escapes, spacing) and breaks the signature.
"""

import functools
import hashlib
import hmac
import re
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.views.decorators.csrf import csrf_exempt

from retellghl.api import json_error

SIGNATURE_HEADER = "X-Retell-Signature"

# Same shape the official SDK accepts. At most 15 digits: epoch ms has 13 until the year 2286, and a
# bound keeps int() away from absurdly long input.
_SIGNATURE_RE = re.compile(r"v=([0-9]{1,15}),d=([0-9a-f]{64})")

_MESSAGES = {
    "missing_signature": f"{SIGNATURE_HEADER} header is missing.",
    "malformed_signature": f"{SIGNATURE_HEADER} must look like v=<epoch ms>,d=<64 lowercase hex>.",
    "stale_signature": "Signature timestamp is outside the accepted window.",
    "invalid_signature": "Signature does not match the request body.",
}


class InvalidSignature(Exception):
    """`code` is a stable machine code (one of `_MESSAGES`); `message` is for humans."""

    def __init__(self, code, message=None):
        self.code = code
        self.message = message or _MESSAGES[code]
        super().__init__(self.message)


def _digest(body_text, timestamp_ms, api_key):
    return hmac.new(
        api_key.encode("utf-8"), (body_text + str(timestamp_ms)).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def sign_retell_body(raw_body: bytes | str, api_key: str, timestamp_ms: int | None = None) -> str:
    """The `X-Retell-Signature` value Retell would send for `raw_body` (for our simulator and tests)."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    body_text = raw_body.decode("utf-8") if isinstance(raw_body, bytes | bytearray) else raw_body
    return f"v={int(timestamp_ms)},d={_digest(body_text, int(timestamp_ms), api_key)}"


def verify_retell_signature(
    raw_body: bytes,
    header: str | None,
    *,
    api_key: str,
    now_ms: int | None = None,
    tolerance_ms: int | None = None,
) -> None:
    """Return None when `header` signs `raw_body`, else raise InvalidSignature."""
    if header is None or not header.strip():
        raise InvalidSignature("missing_signature")
    match = _SIGNATURE_RE.fullmatch(header.strip())
    if not match:
        raise InvalidSignature("malformed_signature")
    timestamp_ms, their_digest = int(match.group(1)), match.group(2)

    if now_ms is None:
        now_ms = int(time.time() * 1000)
    if tolerance_ms is None:
        tolerance_ms = settings.RETELL_SIGNATURE_TOLERANCE_MS
    skew_ms = now_ms - timestamp_ms
    if abs(skew_ms) > tolerance_ms:
        # Both directions: a timestamp far in the future is as suspicious as a replayed old one.
        raise InvalidSignature(
            "stale_signature",
            f"Signature timestamp is {abs(skew_ms) // 1000} s {'old' if skew_ms > 0 else 'in the future'}"
            f" (tolerance {tolerance_ms // 1000} s).",
        )

    try:
        body_text = bytes(raw_body).decode("utf-8")
    except UnicodeDecodeError:
        # Retell signs text: bytes that are not UTF-8 cannot have come from it.
        raise InvalidSignature("invalid_signature") from None
    if not hmac.compare_digest(_digest(body_text, timestamp_ms, api_key), their_digest):
        raise InvalidSignature("invalid_signature")


def retell_signed(view):
    """Guard a Retell-facing view: configured key, bounded body, valid signature; else a JSON 4xx/503.

    CSRF-exempt because Retell authenticates with the signature, not a cookie.
    """

    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        api_key = settings.RETELL_API_KEY
        if not api_key:
            return json_error(
                503, "not_configured", "RETELL_API_KEY is not set: Retell requests cannot be verified."
            )

        limit = settings.RETELL_MAX_BODY_BYTES
        too_large = functools.partial(
            json_error, 413, "payload_too_large", f"Request body exceeds {limit} bytes."
        )
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:  # refuse before reading anything into memory
            return too_large()
        try:
            body = request.body
        except RequestDataTooBig:  # DATA_UPLOAD_MAX_MEMORY_SIZE set lower than our own bound
            return too_large()
        if len(body) > limit:
            return too_large()

        try:
            verify_retell_signature(body, request.headers.get(SIGNATURE_HEADER), api_key=api_key)
        except InvalidSignature as exc:
            return json_error(401, exc.code, exc.message)
        return view(request, *args, **kwargs)

    return wrapped
