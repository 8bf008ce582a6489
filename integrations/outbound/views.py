"""POST /api/webhooks/ghl/outbound/<slug>: a GHL workflow "Webhook" action asks us to call a contact.

GHL does not sign workflow webhooks, so the caller presents the campaign's secret in the
`X-Webhook-Secret` header or the `token` query parameter. Checks run in this order, each answering a
JSON error: body too large (413), unknown campaign (404), wrong or missing secret (401), disabled
campaign (409, told only to a caller that knows the secret), body not a JSON object (400), unusable
payload (422 naming the field).
"""

import logging
import zoneinfo

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from integrations.models import OutboundCallRequest, OutboundCampaign
from integrations.outbound.services import InvalidPayload, outbound_request_accept
from retellghl.api import InvalidJson, json_error, parse_json_body

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Webhook-Secret"
# A GHL contact with its custom fields is a few kB; anything near this bound is not a workflow webhook.
MAX_BODY_BYTES = 1024 * 1024

Status = OutboundCallRequest.Status


@csrf_exempt  # authenticated by the campaign secret, never by a browser session
def ghl_outbound_webhook(request, slug):
    if request.method != "POST":
        return json_error(405, "method_not_allowed", "Use POST.")
    body = _bounded_body(request)
    if body is None:
        return json_error(413, "payload_too_large", f"Request body exceeds {MAX_BODY_BYTES} bytes.")

    try:
        campaign = OutboundCampaign.objects.select_related("agent", "location").filter(slug=slug).first()
    except DatabaseError:
        logger.exception("Outbound webhook for campaign %s: database unavailable", slug)
        return _unavailable()
    if campaign is None:
        return json_error(404, "unknown_campaign", f"No outbound campaign {slug!r}.")
    presented = request.headers.get(SECRET_HEADER) or request.GET.get("token")
    if not presented:
        return json_error(
            401, "missing_secret", f"Send the campaign secret in the {SECRET_HEADER} header or ?token=."
        )
    if not campaign.check_secret(presented):
        return json_error(401, "invalid_secret", "The campaign secret does not match.")
    if not campaign.enabled:
        return json_error(409, "campaign_disabled", f"Campaign {slug!r} is disabled: no call was placed.")

    try:
        payload = parse_json_body(body)
    except InvalidJson as exc:
        return json_error(400, "invalid_json", str(exc))
    if not isinstance(payload, dict):
        return json_error(400, "invalid_payload", "The body must be a JSON object (the GHL contact).")

    try:
        outbound_request, created = outbound_request_accept(campaign=campaign, payload=payload)
    except InvalidPayload as exc:
        return json_error(422, "invalid_payload", exc.message, field=exc.field)
    except DatabaseError:
        # Nothing is acknowledged that was not stored; a retry finds any request that was, and dedupes.
        logger.exception("Outbound request for campaign %s could not be recorded", slug)
        return _unavailable()
    return answer(outbound_request, created=created)


def _unavailable():
    return json_error(503, "unavailable", "The request could not be recorded; try again later.")


def _bounded_body(request):
    """The raw body, or None when it is larger than MAX_BODY_BYTES (refused before reading if declared)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= MAX_BODY_BYTES else None


def answer(outbound_request, *, created):
    """The HTTP answer for a request's state. A re-delivery gets the answer of the request it repeats."""
    status = outbound_request.status
    common = {"request_id": outbound_request.pk, "duplicate": not created}
    if status == Status.PLACED:
        return JsonResponse(
            {"status": "placed", "call_id": outbound_request.retell_call_id, **common},
            status=201 if created else 200,
        )
    if status == Status.SCHEDULED:
        when = _local(outbound_request)
        return JsonResponse(
            {
                "status": "scheduled",
                "scheduled_for": when.isoformat(),
                "message": f"Outside the calling window ({outbound_request.campaign.calling_window}): "
                f"the call will be placed at {when:%Y-%m-%d %H:%M %Z}.",
                **common,
            },
            status=202,
        )
    if status in (Status.QUEUED, Status.DIALING):
        body = {"status": "queued", **common}
        if status == Status.QUEUED and outbound_request.scheduled_for:
            body["retry_at"] = _local(outbound_request).isoformat()
            body["message"] = f"{outbound_request.last_error}; retrying at {body['retry_at']}."
        else:
            body["message"] = "The call is being placed."
        return JsonResponse(body, status=202)
    if status == Status.LIMITED:
        return json_error(409, "daily_limit_reached", outbound_request.last_error, **common)
    if status == Status.CANCELLED:
        return json_error(409, "cancelled", outbound_request.last_error, **common)
    # FAILED: Retell refused the call (or never answered through all retries). 502: the upstream failed.
    return json_error(
        502,
        "retell_error",
        outbound_request.last_error or "Retell did not place the call.",
        retell_status=outbound_request.retell_status,
        **common,
    )


def _local(outbound_request):
    zone = zoneinfo.ZoneInfo(outbound_request.campaign.timezone_name)
    return timezone.localtime(outbound_request.scheduled_for, zone)


def webhook_url(campaign):
    """The URL to paste into the GHL workflow's Webhook action."""
    return settings.PUBLIC_BASE_URL + reverse("ghl-outbound-webhook", args=[campaign.slug])
