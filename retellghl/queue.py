"""Putting work on the django-q2 queue through one broker per process.

`django_q.tasks.async_task` builds a new broker for every task unless it is handed one. With Redis
that is a new client, connection pool and TCP connection per task, never reused and closed only by
the garbage collector: under webhook load about 5% of a request's CPU, and a connection opened and
dropped on Redis for every call event. One broker per process reuses one pooled connection (redis-py
pools are fork-safe: a forked child opens its own).
"""

import os

from django_q.brokers import get_broker
from django_q.tasks import async_task

_brokers = {}  # process id → broker


def broker():
    """This process's broker (the configured one: Redis, or the ORM's table)."""
    pid = os.getpid()
    current = _brokers.get(pid)
    if current is None:
        _brokers.clear()  # a forked child: never use the parent's
        current = _brokers[pid] = get_broker()
    return current


def enqueue(func, *args, **kwargs):
    """`async_task(func, *args, **kwargs)` on this process's broker; returns the task id."""
    return async_task(func, *args, broker=broker(), **kwargs)
