"""The GHL outbox: claiming, running and retrying GhlSyncTask rows.

This module holds the queue mechanics shared by every side effect; what each kind of task does in GHL
is defined by the post-call pipeline.
"""

from calls.models import GhlSyncTask


def retry_tasks(queryset, *, now):
    """Put tasks back in the queue now (operator action). Returns how many were re-queued."""
    return queryset.update(status=GhlSyncTask.Status.PENDING, next_attempt_at=now, claimed_at=None)
