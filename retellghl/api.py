"""JSON error answers shared by every endpoint: a 4xx with `{"error": code, "message": text}`."""

import functools

from django.http import JsonResponse
from rest_framework.views import exception_handler


def json_error(status, error, message, **extra):
    """`error` is a stable machine code ("invalid_signature"); `message` says what is wrong."""
    return JsonResponse({"error": error, "message": message, **extra}, status=status)


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
