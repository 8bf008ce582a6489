"""What every endpoint shares: JSON error answers (`{"error": code, "message": text}`) and strict parsing
of JSON request bodies into values every database can store."""

import functools
import json
import re

from django.http import JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework.views import exception_handler


def json_error(status, error, message, **extra):
    """`error` is a stable machine code ("invalid_signature"); `message` says what is wrong."""
    return JsonResponse({"error": error, "message": message, **extra}, status=status)


@csrf_exempt
def api_not_found(request, path=""):
    """Anything under /api/ that no endpoint serves: a JSON 404 like every other API error."""
    return json_error(404, "not_found", f"No API endpoint at {request.path[:200]!r}.")


def server_error(request):
    """handler500: an unexpected crash under /api/ still answers our JSON error shape (and never a
    traceback); pages for people keep Django's plain error page. The exception is logged by Django."""
    if request.path.startswith("/api/"):
        return json_error(500, "server_error", "Something went wrong on our side; it has been logged.")
    return defaults.server_error(request)


def json_exception_handler(exc, context):
    """DRF's handler, reshaped to our `{"error", "message"}` body so every endpoint answers alike."""
    response = exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        code = getattr(exc, "default_code", "error")
        response.data = {"error": str(code), "message": str(detail or exc)}
    return response


def allow_methods(*methods):
    """Like Django's require_http_methods, but the 405 answer is JSON like every other error."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                response = json_error(405, "method_not_allowed", f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


# NUL (PostgreSQL text and jsonb cannot hold it) and lone surrogates (no UTF-8 form) can only reach a
# parsed string through \\u escapes: a body without such an escape needs no scrubbing.
_SCRUB_ESCAPES = ("\\u0000", "\\ud", "\\uD")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJson(ValueError):
    """The body is not strict JSON in UTF-8; the message says why, for the 400 answer."""


def parse_json_body(raw):
    """A request body as JSON, strictly: UTF-8, RFC 8259 (no NaN or Infinity, which Python accepts but
    no JSON column stores), nested no deeper than the parser can go. Raises InvalidJson.

    Strings come back storable in any database: NUL and lone surrogates become U+FFFD. The raw body,
    where it is kept, stays as received.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        value = json.loads(text, parse_constant=_refuse_constant)
        if any(escape in text for escape in _SCRUB_ESCAPES):
            value = _storable(value)
    except RecursionError:
        raise InvalidJson("Body is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidJson(f"Body is not valid JSON: {exc}"[:300]) from None
    return value


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _storable(value):
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value
