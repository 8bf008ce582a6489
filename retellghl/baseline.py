"""Reference views for `bench/`, routed only with BENCH_BASELINE_VIEW=1 (never in production or tests).

They run in the same WSGI server behind the same middleware stack as every real endpoint, so
bench/run.py can report each endpoint as a ratio to what the framework and the database cost anyway:

- POST /bench/baseline: reads the body and answers 204. With a tiny body it is the framework's own
  per-request floor; fed the 50-turn call_ended body it is the floor of merely receiving that body.
- POST /bench/store: verifies the Retell signature and stores the body as one CallEvent row, nothing
  else: the least that "store what Retell sends before acknowledging it" can cost. Webhook ingestion
  does this plus parsing and merging the call, so this is its ceiling on the same machine.

CSRF-exempt like the Retell endpoints they are compared with.
"""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from calls.models import CallEvent
from integrations.signatures import retell_signed


@csrf_exempt
def baseline(request):
    request.body  # noqa: B018 (receive the body, as every real endpoint does)
    return HttpResponse(status=204)


@csrf_exempt
@retell_signed
def store_only(request):
    CallEvent.objects.create(
        raw_body=request.body.decode("utf-8"), event="bench_store", status=CallEvent.Status.IGNORED
    )
    return HttpResponse(status=204)
