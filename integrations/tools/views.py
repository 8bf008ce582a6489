"""`POST /api/functions/<tool_name>`: in-call tools as Retell custom functions (REFERENCE.md §4)."""

import logging
import re

from django.db import DatabaseError
from django.http import JsonResponse

from integrations.ghl import reports_ghl_time
from integrations.models import TOOL_NAME_RE
from integrations.signatures import retell_signed
from integrations.tools.service import ToolUnavailable, custom_function_request
from retellghl.api import InvalidJson, json_error, parse_json_body

logger = logging.getLogger(__name__)
TOOL_NAME = re.compile(TOOL_NAME_RE)

DATABASE_UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "message": "I'm having trouble with our system right now, so I can't do that yet.",
    "retryable": True,
}


@retell_signed
@reports_ghl_time
def custom_function(request, tool_name):
    if request.method != "POST":
        return json_error(405, "method_not_allowed", "Custom functions are called with POST.")
    if not TOOL_NAME.fullmatch(tool_name):  # no definition can have this name: not worth a query
        return json_error(404, "unknown_tool", f"No enabled custom function is named {tool_name[:64]!r}.")
    try:
        body = parse_json_body(request.body)
    except InvalidJson as exc:
        return json_error(400, "invalid_json", str(exc))
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
