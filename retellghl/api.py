"""JSON error answers shared by every endpoint: a 4xx with `{"error": code, "message": text}`."""

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
