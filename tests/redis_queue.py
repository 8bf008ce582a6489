"""Run queued django-q2 tasks through the real broker in-process: what a qcluster worker does.

Used by the Redis-backed tests: tasks go through Redis (enqueue, dequeue, signed package, ack)
and execute in django-q2's own `worker` function, without forking a cluster.
"""

from multiprocessing import Queue, Value

from django_q.brokers import get_broker
from django_q.monitor import save_task
from django_q.signing import SignedPackage
from django_q.worker import worker


def drain(max_rounds=20):
    """Pull every queued task from the broker, run it, save and acknowledge it. Returns the results."""
    broker = get_broker()
    results = []
    for _ in range(max_rounds):
        batch = broker.dequeue()
        if not batch:
            break
        task_queue, result_queue = Queue(), Queue()
        for ack_id, package in batch:
            task = SignedPackage.loads(package)
            task["ack_id"] = ack_id
            task_queue.put(task)
        task_queue.put("STOP")
        worker(task_queue, result_queue, Value("f", -1))
        for _ in batch:
            result = result_queue.get(timeout=10)
            save_task(result, broker)
            broker.acknowledge(result["ack_id"])
            results.append(result)
    return results
