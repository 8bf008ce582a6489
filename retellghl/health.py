"""GET /healthz: is the database reachable, is the task queue's broker reachable and how deep is it."""

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from retellghl.api import allow_methods


def _check(probe):
    started = time.perf_counter()
    try:
        detail = probe() or {}
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **detail}
    except Exception as exc:  # a health check reports failures, it does not raise them
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _queue():
    from retellghl.queue import broker as queue_broker

    broker = queue_broker()
    if not broker.ping():
        raise ConnectionError("broker did not answer ping")
    return {"broker": "redis" if settings.REDIS_URL else "orm", "queued": broker.queue_size()}


@csrf_exempt  # a load balancer probing with another method gets the JSON 405, not a CSRF page
@allow_methods("GET", "HEAD")
def healthz(request):
    checks = {"database": _check(_database), "queue": _check(_queue)}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
    )
