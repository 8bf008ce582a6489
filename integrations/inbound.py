"""POST /api/webhooks/inbound: Retell's inbound call/SMS webhook (REFERENCE.md §3).

Verify the signature → parse → `routing.route_inbound` → answer. Retell waits for this answer while the
caller hears ringing, so the routing service keeps to a latency budget and fails open.
"""

import logging
import time

from django.http import JsonResponse

from integrations import routing
from integrations.ghl import reports_ghl_time
from integrations.phones import InvalidPhoneNumber
from integrations.signatures import retell_signed
from retellghl.api import InvalidJson, allow_methods, json_error, parse_json_body

logger = logging.getLogger(__name__)


@allow_methods("POST")
@retell_signed
@reports_ghl_time
def inbound_webhook(request):
    started = time.monotonic()
    try:
        payload = parse_json_body(request.body)
    except InvalidJson as exc:
        return json_error(400, "invalid_json", str(exc))
    if not isinstance(payload, dict):
        return json_error(400, "invalid_payload", "Body must be a JSON object.")

    event = payload.get("event")
    if event not in routing.INBOUND_EVENTS:
        return json_error(
            400, "unknown_event", f"Expected event call_inbound or chat_inbound, got {str(event)[:64]!r}."
        )
    details = payload.get(event)
    if not isinstance(details, dict):
        return json_error(400, "invalid_payload", f"Body has no {event!r} object.")
    for key in ("from_number", "to_number"):
        if not isinstance(details.get(key), str) or not details[key].strip():
            return json_error(400, "missing_number", f"{event}.{key} is missing.")
    agent_id = details.get("agent_id") if isinstance(details.get("agent_id"), str) else ""

    try:
        outcome = routing.route_inbound(
            event=event,
            from_number=details["from_number"],
            to_number=details["to_number"],
            agent_id=agent_id,
            started=started,
        )
    except InvalidPhoneNumber as exc:
        return json_error(400, "invalid_number", f"{event}.to_number: {exc}")
    except Exception:
        # A bug or a database outage must not keep the caller ringing through Retell's retries: an
        # empty answer means "no override", so Retell connects the number's own agent.
        logger.exception("inbound routing failed; answering without overrides")
        return JsonResponse({event: {}})
    return JsonResponse(outcome.answer)
