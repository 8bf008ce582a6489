"""`POST /api/functions/<tool_name>`: in-call tools as Retell custom functions (REFERENCE.md §4)."""

import json
import logging

from django.db import DatabaseError
from django.http import JsonResponse

from integrations.signatures import retell_signed
from integrations.tools.service import ToolUnavailable, custom_function_request
from retellghl.api import json_error

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "message": "I'm having trouble with our system right now, so I can't do that yet.",
    "retryable": True,
}


@retell_signed
def custom_function(request, tool_name):
    if request.method != "POST":
        return json_error(405, "method_not_allowed", "Custom functions are called with POST.")
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        return json_error(400, "invalid_json", "Request body is not valid JSON.")
    try:
        result = custom_function_request(tool_name, body)
    except ToolUnavailable as exc:
        return json_error(exc.status, exc.code, exc.message)
    except DatabaseError:
        # Without the database we cannot find the tool or guard against acting twice, so nothing was
        # done. Still an answer the agent can say, in the tools' own shape, rather than a bare 500.
        logger.exception("custom function %s: database unavailable", tool_name)
        return JsonResponse(DATABASE_UNAVAILABLE, json_dumps_params={"ensure_ascii": False})
    # 200 even for tool errors: the body tells the LLM what to say, and a non-2xx would only make
    # Retell retry a request that will fail the same way.
    return JsonResponse(result.payload, json_dumps_params={"ensure_ascii": False})
