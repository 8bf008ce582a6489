import logging

from django.db import DatabaseError
from django.http import HttpResponse

from calls.ingest import InvalidEvent, ingest_retell_event
from integrations.signatures import retell_signed
from retellghl.api import allow_methods, json_error

log = logging.getLogger(__name__)


@allow_methods("POST")
@retell_signed
def retell_webhook(request):
    """Retell call/chat event webhooks: store verbatim, merge into the call log, answer 204.

    Any 2xx acknowledges, so a duplicate answers 204 too (Retell would otherwise retry it). A
    database failure answers 503: Retell retries, and an event we did not store is never acknowledged.
    """
    try:
        ingest_retell_event(request.body)
    except InvalidEvent as exc:
        return json_error(400, exc.code, exc.message)
    except DatabaseError:
        log.exception("could not store a Retell webhook delivery")
        return json_error(503, "storage_unavailable", "The event could not be stored; retry later.")
    return HttpResponse(status=204)
