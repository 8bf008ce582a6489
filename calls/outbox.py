"""The GHL outbox: claiming, running and retrying GhlSyncTask rows.

Mechanics only; what each kind of task does in GHL lives in `calls.pipeline`. A task is claimed with
a conditional UPDATE (only one worker can move it from pending to running), retried with exponential
backoff on retryable errors (a 429 waits at least what GHL asked), failed at once on permanent ones,
and re-run when new data arrives while it is running (`rerun_requested`).
"""

import logging
import random
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, F, PositiveIntegerField, Q, Value, When
from django.utils import timezone

from calls.models import Call, GhlSyncTask
from integrations.errors import NotConfigured, PermanentError, RetryableError

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
STALE_CLAIM = timedelta(minutes=10)  # a worker that held a task this long died


def backoff_delay(attempts, retry_after=None):
    """30 s, 60 s, 120 s … capped at 1 h, with ±20% jitter; never sooner than the vendor asked."""
    delay = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    delay *= random.uniform(0.8, 1.2)
    return timedelta(seconds=max(delay, retry_after or 0))


def enqueue(task_ids):
    """Run these tasks on the django-q2 cluster once the current transaction commits."""
    from retellghl.queue import enqueue as enqueue_task

    def send():
        for task_id in task_ids:
            # save=False: the task row records the outcome (see pipeline.enqueue_event_processing).
            enqueue_task("calls.outbox.run_task", task_id, group="ghl-sync", save=False)

    if task_ids:
        transaction.on_commit(send)


def claim(task_id, *, now):
    """Atomically move a due pending task to running. True if this worker won it."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return bool(
        GhlSyncTask.objects.filter(due, pk=task_id, status=GhlSyncTask.Status.PENDING).update(
            status=GhlSyncTask.Status.RUNNING,
            claimed_at=now,
            attempts=F("attempts") + 1,
            rerun_requested=False,
        )
    )


def run_task(task_id, *, now=None):
    """Claim and execute one task; record the outcome. Safe to call from any number of workers."""
    from calls.pipeline import perform_task  # the kinds of side effects; imported late (cycle)

    now = now or timezone.now()
    if not claim(task_id, now=now):
        return None
    task = GhlSyncTask.objects.select_related("call__agent__location", "call__location").get(pk=task_id)
    try:
        result = perform_task(task)
    except (RetryableError, PermanentError, NotConfigured, ValueError) as exc:
        _record_failure(task, exc, now=now)
    except Exception as exc:  # a bug must not leave the task stuck in "running"
        log.exception("sync task %s crashed", task.pk)
        _record_failure(task, exc, now=now)
    else:
        _record_success(task, result or {}, now=now)
    refresh_call_sync_status(task.call_id)
    return GhlSyncTask.objects.get(pk=task_id)


def _record_success(task, result, *, now):
    # If new data arrived while we ran (rerun_requested), go round again instead of finishing.
    done = GhlSyncTask.objects.filter(pk=task.pk, status=GhlSyncTask.Status.RUNNING)
    done.update(
        status=Case(
            When(rerun_requested=True, then=Value(GhlSyncTask.Status.PENDING)),
            default=Value(GhlSyncTask.Status.DONE),
        ),
        attempts=Case(
            When(rerun_requested=True, then=Value(0)),
            default=F("attempts"),
            output_field=PositiveIntegerField(),
        ),
        next_attempt_at=None,
        claimed_at=None,
        last_error="",
        ghl_id=result.get("ghl_id", task.ghl_id),
        payload=task.payload,
        completed_at=now,
    )
    if GhlSyncTask.objects.filter(pk=task.pk, status=GhlSyncTask.Status.PENDING).exists():
        enqueue([task.pk])


def worth_retrying(exc):
    """Retryable errors, and 2xx answers GHL gave that we could not read.

    After an unreadable 2xx, GHL has most likely done what we asked (written the note). Failing for
    good would leave an operator to "Retry selected", which starts the attempts afresh and so writes
    the note again; a retry instead looks for the note before writing one (`perform_note`).
    """
    if isinstance(exc, RetryableError):
        return True
    status = getattr(exc, "status", None)
    return isinstance(exc, PermanentError) and status is not None and 200 <= status < 300


def _record_failure(task, exc, *, now):
    retryable = worth_retrying(exc)
    message = str(exc)[:2000] or type(exc).__name__
    if retryable and task.attempts < task.max_attempts:
        status = GhlSyncTask.Status.PENDING
        next_attempt = now + backoff_delay(task.attempts, getattr(exc, "retry_after", None))
    else:
        status, next_attempt = GhlSyncTask.Status.FAILED, None
        if retryable:
            message = f"gave up after {task.attempts} attempts: {message}"
    log.warning("sync task %s (%s) %s: %s", task.pk, task.kind, status, message)
    GhlSyncTask.objects.filter(pk=task.pk, status=GhlSyncTask.Status.RUNNING).update(
        status=status,
        next_attempt_at=next_attempt,
        claimed_at=None,
        last_error=message,
        payload=task.payload,  # keeps ids of what was already created (e.g. the note) for the retry
        ghl_id=task.ghl_id,
    )


def run_due_tasks(*, now=None, limit=500):
    """The sweeper (scheduled every minute): run tasks whose backoff has passed, revive dead claims,
    and process call events whose queue hand-off was lost."""
    from calls.pipeline import process_stalled_events  # imported late (cycle)

    now = now or timezone.now()
    process_stalled_events(now=now)
    GhlSyncTask.objects.filter(status=GhlSyncTask.Status.RUNNING, claimed_at__lt=now - STALE_CLAIM).update(
        status=GhlSyncTask.Status.PENDING, claimed_at=None, next_attempt_at=now
    )
    due = GhlSyncTask.objects.filter(status=GhlSyncTask.Status.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    ran = 0
    for task_id in due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit]:
        if run_task(task_id, now=now) is not None:
            ran += 1
    return ran


def request_run(task, *, now):
    """New data for a task: make it pending again, or flag the running one to go round once more."""
    idle = [GhlSyncTask.Status.DONE, GhlSyncTask.Status.FAILED, GhlSyncTask.Status.PENDING]
    updated = GhlSyncTask.objects.filter(pk=task.pk, status__in=idle).update(
        status=GhlSyncTask.Status.PENDING, attempts=0, next_attempt_at=now, last_error=""
    )
    if not updated:
        GhlSyncTask.objects.filter(pk=task.pk, status=GhlSyncTask.Status.RUNNING).update(rerun_requested=True)
    return bool(updated)


def retry_tasks(queryset, *, now):
    """Operator action: put tasks back in the queue now. Returns how many were re-queued."""
    ids = list(queryset.exclude(status=GhlSyncTask.Status.RUNNING).values_list("pk", flat=True))
    GhlSyncTask.objects.filter(pk__in=ids).update(
        status=GhlSyncTask.Status.PENDING, attempts=0, next_attempt_at=now, claimed_at=None
    )
    for call_id in set(GhlSyncTask.objects.filter(pk__in=ids).values_list("call_id", flat=True)):
        refresh_call_sync_status(call_id)
    enqueue(ids)
    return len(ids)


def refresh_call_sync_status(call_pk):
    """Derive Call.ghl_sync_status from its tasks: failed > pending > no contact > synced.

    Two workers finishing a call's tasks at once both refresh it: each locks the call row before
    reading the tasks, so the last writer has read every finished task (without the lock, a read from
    before the other task finished could be written last, leaving a synced call "pending" for good).
    """
    if call_pk is None:
        return
    with transaction.atomic():
        if Call.objects.select_for_update().filter(pk=call_pk).exists():
            _refresh_call_sync_status(call_pk)


def _refresh_call_sync_status(call_pk):
    tasks = list(GhlSyncTask.objects.filter(call_id=call_pk).values_list("status", "payload", "last_error"))
    if not tasks:
        return
    statuses = {status for status, _, _ in tasks}
    failed = [error for status, _, error in tasks if status == GhlSyncTask.Status.FAILED]
    if failed:
        status = Call.SyncStatus.FAILED
    elif statuses & {GhlSyncTask.Status.PENDING, GhlSyncTask.Status.RUNNING}:
        status = Call.SyncStatus.PENDING
    elif any((payload or {}).get("skipped") == "no_contact" for _, payload, _ in tasks):
        status = Call.SyncStatus.NO_CONTACT
    else:
        status = Call.SyncStatus.SYNCED
    updates = {"ghl_sync_status": status}
    if status != Call.SyncStatus.NO_CONTACT:
        updates["ghl_sync_error"] = failed[0] if failed else ""
    Call.objects.filter(pk=call_pk).update(**updates)
