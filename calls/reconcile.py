"""Reconciliation with Retell: bring into the call log the calls whose webhooks we never received.

Pages through `POST /v3/list-calls` for a time range (and agents), compares each listed call with
the call log, fetches the missing or incomplete ones with get-call and ingests them exactly as their
webhooks would have been (`ingest.ingest_fetched_call` → `upsert_call`, then `process_call_event`).
Idempotent: a call already complete is not fetched again, and an identical object is merged once.
"""

import time
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q

from calls.ingest import STATUS_RANK, InvalidEvent, ingest_fetched_call
from calls.models import Call, CallEvent
from calls.pipeline import FINAL_STATUSES, RECONCILED_EVENT, process_call_event
from integrations.errors import RateLimited, RetryableError, VendorError
from integrations.retell import start_timestamp_range
from retellghl.cli import Progress

NEW, INCOMPLETE, UP_TO_DATE, IN_PROGRESS = "new", "incomplete", "up_to_date", "in_progress"


@dataclass
class ReconcileSummary:
    listed: int = 0
    new: int = 0
    incomplete: int = 0
    up_to_date: int = 0
    in_progress: int = 0  # not finished at Retell yet: its webhooks may still come
    fetched: int = 0
    rate_limited: int = 0  # 429 answers from Retell we waited out
    failed: list = field(default_factory=list)  # [(call_id, reason)]
    interrupted: bool = False
    dry_run: bool = False

    @property
    def ok(self):
        return not self.failed and not self.interrupted

    def line(self):
        counts = f"{self.up_to_date} up to date, {self.in_progress} still in progress"
        if self.dry_run:
            return (
                f"Sync Retell calls (dry run): {self.listed} listed: would fetch {self.new} new and "
                f"{self.incomplete} incomplete, {counts}; nothing was written."
            )
        text = (
            f"Sync Retell calls: {self.listed} listed: {self.fetched} fetched ({self.new} new, "
            f"{self.incomplete} incomplete), {counts}, {len(self.failed)} failed"
        )
        if self.rate_limited:
            text += f"; waited out {self.rate_limited} rate limits (429)"
        return text + ("; interrupted" if self.interrupted else "") + "."


def triage(item, local):
    """(category, why) for one listed call against our row for it (None when we have none)."""
    status = item.get("call_status")
    if status not in FINAL_STATUSES:
        return IN_PROGRESS, status or "no status"
    if local is None:
        return NEW, "not in the call log"
    if STATUS_RANK.get(status, 0) > STATUS_RANK.get(local["status"], -1):
        return INCOMPLETE, f"status {local['status'] or 'unknown'} → {status}"
    if isinstance(item.get("call_analysis"), dict) and item["call_analysis"] and not local["has_analysis"]:
        return INCOMPLETE, "no call analysis"
    # List items omit transcripts, so we cannot tell whether Retell has one: fetch once to know.
    if not local["has_transcript"] and not local["reconciled"]:
        return INCOMPLETE, "no transcript"
    return UP_TO_DATE, ""


class RetellReconciler:
    def __init__(
        self,
        client,
        *,
        since,
        until,
        out,
        agent_ids=(),
        dry_run=False,
        verbosity=1,
        max_attempts=5,
        sleep=time.sleep,
        tty=None,
    ):
        self.client = client
        self.since, self.until = since, until
        self.agent_ids = list(agent_ids)
        self.out = out
        self.dry_run = dry_run
        self.verbosity = verbosity
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.tty = tty
        self.summary = ReconcileSummary(dry_run=dry_run)
        self.to_fetch = []  # [(call_id, why)]
        self.progress = None

    def filter_criteria(self):
        # Retell's range is inclusive at both ends; ours is [since, until).
        lo = int(self.since.timestamp() * 1000)
        hi = int(self.until.timestamp() * 1000) - 1
        criteria = start_timestamp_range(lo, hi)
        if self.agent_ids:
            criteria["agent"] = [{"agent_id": agent_id} for agent_id in self.agent_ids]  # OR-ed by Retell
        return criteria

    def run(self):
        try:
            self._list()
            if not self.dry_run:
                self._fetch()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            if self.progress is not None:
                self.progress.finish()
        return self.summary

    # --- listing ---

    def _list(self):
        self.progress = Progress(self.out, "Listing Retell calls", tty=self.tty)
        criteria, pagination_key = self.filter_criteria(), None
        while True:
            page = self._retrying(
                self.client.list_calls,
                filter_criteria=criteria,
                sort_order="ascending",
                pagination_key=pagination_key,
            )
            self._triage_page(page["items"])
            self.progress.advance(len(page["items"]))
            # Stop also when a page claims more but gives no cursor: asking again would loop forever.
            if not page["has_more"] or not page["pagination_key"]:
                break
            pagination_key = page["pagination_key"]
        self.progress.finish()

    def _triage_page(self, items):
        items = [item for item in items if isinstance(item, dict) and isinstance(item.get("call_id"), str)]
        reconciled = CallEvent.objects.filter(call=OuterRef("pk"), event=RECONCILED_EVENT)
        rows = (
            Call.objects.filter(call_id__in=[item["call_id"] for item in items])
            .annotate(
                has_transcript=ExpressionWrapper(~Q(transcript=""), output_field=BooleanField()),
                has_analysis=ExpressionWrapper(Q(call_analysis__isnull=False), output_field=BooleanField()),
                reconciled=Exists(reconciled),
            )
            .values("call_id", "status", "has_transcript", "has_analysis", "reconciled")
        )
        local = {row["call_id"]: row for row in rows}
        for item in items:
            category, why = triage(item, local.get(item["call_id"]))
            self.summary.listed += 1
            setattr(self.summary, category, getattr(self.summary, category) + 1)
            if category in (NEW, INCOMPLETE):
                self.to_fetch.append((item["call_id"], why))
                if self.verbosity >= 2:
                    verb = "would fetch" if self.dry_run else "to fetch"
                    self.progress.log(f"{item['call_id']}: {verb} ({why})")

    # --- fetching ---

    def _fetch(self):
        if not self.to_fetch:
            return
        self.progress = Progress(self.out, "Fetching Retell calls", total=len(self.to_fetch), tty=self.tty)
        for call_id, _why in self.to_fetch:
            try:
                data = self._retrying(self.client.get_call, call_id)
                if data.get("call_id") != call_id:
                    raise InvalidEvent("wrong_call", f"get-call answered call {data.get('call_id')!r}")
                with transaction.atomic():  # merged and its sync tasks created together, or neither
                    result = ingest_fetched_call(data)
                    if not result.duplicate:
                        process_call_event(result.event.pk)
            except (VendorError, InvalidEvent) as exc:
                self.summary.failed.append((call_id, str(exc)))
                if self.verbosity >= 2:
                    self.progress.log(f"{call_id}: failed: {exc}")
            else:
                self.summary.fetched += 1
                if self.verbosity >= 2:
                    self.progress.log(
                        f"{call_id}: merged ({'analysed' if data.get('call_analysis') else 'ended'})"
                    )
            self.progress.advance()
        self.progress.finish()

    def _retrying(self, method, *args, **kwargs):
        """Call the Retell client, waiting out 429s (as long as Retell asks) and transient errors."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return method(*args, **kwargs)
            except RateLimited as exc:
                self.summary.rate_limited += 1
                if attempt == self.max_attempts:
                    raise
                wait = exc.retry_after
                reason = "Retell rate limit"
            except RetryableError:
                if attempt == self.max_attempts:
                    raise
                wait = min(2**attempt, 30)
                reason = "Retell unavailable"
            self.progress.set_status(f"{reason}: waiting {wait:.0f}s")
            self.sleep(wait)
            self.progress.set_status("")
