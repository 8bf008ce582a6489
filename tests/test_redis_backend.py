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
