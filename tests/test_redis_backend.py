"""The scale-out configuration: Redis as django-q2 broker and as Django's cache.

Runs only when REDIS_URL is set (scripts/test does so in its Redis pass).
"""

import pytest
from django.conf import settings
from django.core.cache import cache

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL not set: Redis pass only"),
]


def test_cache_is_redis():
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    cache.set("retellghl:probe", {"n": 1}, 5)
    assert cache.get("retellghl:probe") == {"n": 1}


@pytest.mark.django_db(transaction=True)  # the worker closes connections between tasks, as in production
def test_queue_runs_tasks_through_redis():
    from django_q.brokers import get_broker
    from django_q.models import Task
    from django_q.tasks import async_task

    from tests.redis_queue import drain

    broker = get_broker()
    assert type(broker).__name__ == "Redis"
    broker.purge_queue()
    task_id = async_task("math.hypot", 3, 4)
    assert broker.queue_size() == 1
    results = drain()
    assert [r["id"] for r in results] == [task_id]
    assert Task.objects.get(id=task_id).result == 5.0
    assert broker.queue_size() == 0


@pytest.mark.django_db
def test_healthz_reports_the_redis_broker(client):
    body = client.get("/healthz").json()
    assert body["queue"]["ok"] is True and body["queue"]["broker"] == "redis"


@pytest.mark.django_db(transaction=True)
def test_post_call_pipeline_runs_through_the_redis_broker(client, agent):
    import responses
    from django_q.brokers import get_broker
    from django_q.models import Task

    from calls.models import GhlSyncTask
    from tests.conftest import fixture_bytes, post_signed
    from tests.ghl_fake import FakeGhl
    from tests.redis_queue import drain

    get_broker().purge_queue()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ghl = FakeGhl(rsps)
        assert (
            post_signed(client, "/api/webhooks/retell", fixture_bytes("retell_call_ended")).status_code == 204
        )
        results = drain()
        assert [result["func"] for result in results] == [
            "calls.pipeline.process_call_event",
            "calls.outbox.run_task",
        ]
        assert all(result["success"] for result in results)
        assert len(ghl.notes_for("c_Dana7Lee01")) == 1
    assert GhlSyncTask.objects.get().status == "done"
    # Our rows record the outcome; django-q2 stores no copy of successful pipeline tasks (each one
    # would make its save-limit pruning load every stored success).
    assert not Task.objects.exists()


def test_enqueueing_reuses_one_redis_connection_per_process():
    """django-q2 alone opens a Redis connection per task; ours keeps one per process."""
    from retellghl.queue import broker, enqueue

    connections = broker().connection
    broker().purge_queue()
    enqueue("math.hypot", 3, 4)  # opens this process's pooled connection, if not open yet
    before = connections.info("stats")["total_connections_received"]
    for _ in range(20):
        enqueue("math.hypot", 3, 4)
    after = connections.info("stats")["total_connections_received"]
    assert after - before <= 1  # the INFO call's own connection may be counted
    assert broker().queue_size() == 21
    broker().purge_queue()


def test_a_spent_ghl_window_seen_by_another_process_pauses_this_ones_background_client():
    """GHL's burst budget is per location: a worker process that sees it spent tells all the others."""
    import os
    import subprocess
    import sys

    import responses

    from integrations.errors import RateLimited
    from integrations.ghl import GhlClient

    base, location = "https://ghl.test", "loc_SharedBudget"
    other_process = f"""
import django, responses
django.setup()
from integrations.ghl import GhlClient
with responses.RequestsMock() as ghl:
    spent = {{"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "60000"}}
    ghl.get("{base}/contacts/c_1", json={{"contact": {{"id": "c_1"}}}}, headers=spent)
    GhlClient(token="pit-x", location_id="{location}", base_url="{base}").get_contact("c_1")
"""
    cache.delete(f"ghl-rate-pause:{location}")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "retellghl.settings_test", "REDIS_URL": settings.REDIS_URL}
    subprocess.run([sys.executable, "-c", other_process], env=env, check=True, timeout=60)

    with responses.RequestsMock() as ghl, pytest.raises(RateLimited) as raised:  # no request may leave
        GhlClient(token="pit-x", location_id=location, base_url=base, throttle=True).get_contact("c_1")
    assert 50 < raised.value.retry_after <= 60 and not ghl.calls
    cache.delete(f"ghl-rate-pause:{location}")
