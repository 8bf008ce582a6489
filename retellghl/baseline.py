"""POST /bench/baseline: a view that does nothing, routed only for `bench/` (BENCH_BASELINE_VIEW=1).

It runs in the same WSGI server behind the same middleware stack as every real endpoint, so its cost
is the framework's own per-request floor on the machine; bench/run.py reports each endpoint as a ratio
to it. CSRF-exempt like the Retell endpoints it is compared with. Off by default: never routed in
production or in the test suite.
"""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def baseline(request):
    return HttpResponse(status=204)
