"""Backfill of GHL call notes: write the notes that webhooks never triggered, or that failed.

Not a second implementation of the note: each selected call gets (or reuses) the same outbox NOTE
task the live pipeline uses (`pipeline.ensure_call_tasks`), and the task runs the same performer
(`pipeline.perform_note`, one note builder). The task remembers the GHL note it wrote, so a
backfilled note equals a live one, a re-run updates it or does nothing, and an interrupted run
resumes where it stopped (finished tasks are no longer selected).

`--sync` runs the tasks in this process; otherwise they go to the django-q2 workers and we wait for
them by polling the task rows.
"""

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from calls import outbox
from calls.models import Call, GhlSyncTask
from calls.notes import build_note_body
from calls.pipeline import (
    FINAL_STATUSES,
    agent_wants_note,
    ensure_call_tasks,
    note_events,
    shared_ghl_clients,
)
from integrations.errors import NotConfigured
from integrations.models import Agent, GhlLocation
from retellghl.cli import Progress, format_seconds

NOTE = GhlSyncTask.Kind.NOTE
FINISHED = (GhlSyncTask.Status.DONE, GhlSyncTask.Status.FAILED)
CHUNK = 200


class SelectionError(ValueError):
    """An option names something that does not exist (an unknown agent or location)."""


@dataclass
class NoteSelection:
    since: datetime | None = None
    until: datetime | None = None
    agent_ids: list = field(default_factory=list)  # Retell agent ids of configured agents
    location_ids: list = field(default_factory=list)  # GHL location ids
    call_ids: list = field(default_factory=list)
    include_synced: bool = False  # also calls whose note was written: rewrite (update) it
    limit: int | None = None


@dataclass
class PlannedNote:
    """One call the backfill will write a note for (light: transcripts are loaded only to run)."""

    call_pk: int
    call_id: str
    agent: Agent
    attach_agent: bool  # the call predates its agent's configuration: link them first
    task_id: int | None
    ghl_id: str  # the note GHL already holds, "" if none


@dataclass
class Plan:
    notes: list
    not_eligible: int  # matched the filters, but its agent writes no note for what the call has seen


@dataclass
class Summary:
    selected: int = 0
    not_eligible: int = 0
    written: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_no_contact: int = 0
    rate_limited: int = 0  # 429 answers absorbed by the outbox's backoff
    failed: list = field(default_factory=list)  # [(call_id, reason)]
    unfinished: list = field(default_factory=list)  # [(call_id, state)] still queued when we stopped
    interrupted: bool = False
    dry_run: bool = False

    @property
    def ok(self):
        return not self.failed and not self.unfinished and not self.interrupted

    def line(self):
        calls = f"{self.selected} call{'' if self.selected == 1 else 's'}"
        if self.dry_run:
            return (
                f"Backfill GHL notes (dry run): {calls}: would write {self.written}, "
                f"would update {self.updated}, unchanged {self.unchanged}; nothing was sent to GHL."
            )
        text = (
            f"Backfill GHL notes: {calls}: {self.written} written, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped_no_contact} skipped (no contact), "
            f"{len(self.failed)} failed"
        )
        if self.unfinished:
            text += f", {len(self.unfinished)} unfinished"
        if self.rate_limited:
            text += f"; {self.rate_limited} rate-limited (429) attempts retried"
        return text + ("; interrupted" if self.interrupted else "") + "."


# --- Selection -----------------------------------------------------------------------------------


def plan_notes(selection):
    """The calls whose note is missing or failed (or, with include_synced, all), oldest first."""
    agents = {agent.retell_agent_id: agent for agent in Agent.objects.select_related("location")}
    for agent_id in selection.agent_ids:
        if agent_id not in agents:
            raise SelectionError(f'unknown agent "{agent_id}" (configure it first: admin or import_config)')
    known_locations = set(GhlLocation.objects.values_list("location_id", flat=True))
    for location_id in selection.location_ids:
        if location_id not in known_locations:
            raise SelectionError(f'unknown location "{location_id}"')

    note_task = GhlSyncTask.objects.filter(call=OuterRef("pk"), kind=NOTE)
    written = note_task.filter(status=GhlSyncTask.Status.DONE).exclude(ghl_id="")
    calls = (
        Call.objects.filter(Q(agent__isnull=False) | Q(retell_agent_id__in=list(agents)))
        .filter(Q(status__in=FINAL_STATUSES) | Q(ended_at__isnull=False))
        .annotate(
            at=Coalesce("started_at", "created_at"),
            has_analysis=Q(call_analysis__isnull=False),
            note_task_id=Subquery(note_task.values("pk")[:1]),
            note_ghl_id=Subquery(note_task.values("ghl_id")[:1]),
        )
    )
    if selection.since:
        calls = calls.filter(at__gte=selection.since)
    if selection.until:
        calls = calls.filter(at__lt=selection.until)
    if selection.agent_ids:
        ids = selection.agent_ids
        calls = calls.filter(
            Q(agent__retell_agent_id__in=ids) | Q(agent__isnull=True, retell_agent_id__in=ids)
        )
    if selection.location_ids:
        calls = calls.filter(_location_filter(selection.location_ids, agents))
    if selection.call_ids:
        calls = calls.filter(call_id__in=selection.call_ids)
    if not selection.include_synced:
        calls = calls.exclude(Exists(written))

    agents_by_pk = {agent.pk: agent for agent in agents.values()}
    rows = calls.order_by(F("at").asc(), "pk").values(
        "pk", "call_id", "agent_id", "retell_agent_id", "status", "ended_at", "has_analysis",
        "note_task_id", "note_ghl_id",
    )  # fmt: skip
    notes, not_eligible = [], 0
    for row in rows.iterator(chunk_size=2000):
        agent = agents_by_pk.get(row["agent_id"]) or agents.get(row["retell_agent_id"])
        seen = note_events(status=row["status"], ended_at=row["ended_at"], analysed=row["has_analysis"])
        if not agent_wants_note(agent, seen):
            not_eligible += 1
            continue
        notes.append(
            PlannedNote(
                call_pk=row["pk"],
                call_id=row["call_id"],
                agent=agent,
                attach_agent=row["agent_id"] is None,
                task_id=row["note_task_id"],
                ghl_id=row["note_ghl_id"] or "",
            )
        )
        if selection.limit and len(notes) >= selection.limit:
            break
    return Plan(notes=notes, not_eligible=not_eligible)


def _location_filter(location_ids, agents):
    """Calls synced to these locations: the call's own, else its agent's, else the default one."""
    where = Q(location__location_id__in=location_ids) | Q(
        location__isnull=True, agent__location__location_id__in=location_ids
    )
    unlinked = [a for a in agents.values() if a.location and a.location.location_id in location_ids]
    where |= Q(
        location__isnull=True, agent__isnull=True, retell_agent_id__in=[a.retell_agent_id for a in unlinked]
    )
    if _default_location_id() in location_ids:
        without_location = [a.retell_agent_id for a in agents.values() if a.location_id is None]
        where |= Q(location__isnull=True, agent__isnull=False, agent__location__isnull=True)
        where |= Q(location__isnull=True, agent__isnull=True, retell_agent_id__in=without_location)
    return where


def _default_location_id():
    """GhlLocation.objects.default()'s id, without creating it (selection must not write)."""
    if settings.GHL_LOCATION_ID:
        return settings.GHL_LOCATION_ID
    only = list(GhlLocation.objects.values_list("location_id", flat=True)[:2])
    return only[0] if len(only) == 1 else None


# --- Running -------------------------------------------------------------------------------------


class NoteBackfill:
    """Runs a plan: dry run, inline (`sync`), or through the worker pool (default), with progress."""

    def __init__(
        self,
        plan,
        *,
        out,
        dry_run=False,
        sync=False,
        timeout=600.0,
        verbosity=1,
        poll_interval=1.0,
        now=timezone.now,
        sleep=time.sleep,
        tty=None,
    ):
        self.plan = plan
        self.out = out
        self.dry_run = dry_run
        self.sync = sync
        self.timeout = timeout  # give up waiting when no note has finished for this long
        self.verbosity = verbosity
        self.poll_interval = poll_interval
        self.now = now
        self.sleep = sleep
        self.tty = tty
        self.summary = Summary(selected=len(plan.notes), not_eligible=plan.not_eligible, dry_run=dry_run)
        self.call_ids = {}  # task id -> call id
        self.had_note = {}  # task id -> whether GHL held the call's note when planned
        self.waiting = set()  # task ids not finished yet
        self.seen_429 = set()  # (task id, attempt) pairs that hit a 429
        self.running_task = None  # the task this process is performing (released on Ctrl-C)
        self.progress = None

    def run(self):
        if self.dry_run:
            self._dry_run()
            return self.summary
        self.progress = Progress(
            self.out,
            "Backfill GHL notes",
            total=len(self.plan.notes),
            tty=self.tty,
            clock=lambda: self.now().timestamp(),  # one clock for waits and rates (tests pass a fake)
        )
        try:
            with shared_ghl_clients():
                if self.sync:
                    self._run_inline()
                else:
                    self._queue_all()
                self._wait_for_the_rest()
        except KeyboardInterrupt:
            self._release_running_task()
            self.summary.interrupted = True
        self.progress.finish()
        for task_id in sorted(self.waiting):
            task = GhlSyncTask.objects.get(pk=task_id)
            state = task.status + (f": {task.last_error}" if task.last_error else "")
            self.summary.unfinished.append((self.call_ids[task_id], state))
        return self.summary

    # --- dry run ---

    def _dry_run(self):
        for chunk in _chunks(self.plan.notes):
            calls = _load_calls(chunk)
            for item in chunk:
                call = calls[item.call_pk]
                if item.attach_agent:  # in memory only: a dry run writes nothing
                    call.agent, call.location = item.agent, call.location or item.agent.location
                needs_body = self.verbosity >= 2 or item.ghl_id
                body = build_note_body(call) if needs_body else ""
                if not item.ghl_id:
                    self.summary.written += 1
                    verb = "would write a note"
                elif _same_body(item, body):
                    self.summary.unchanged += 1
                    verb = f"note {item.ghl_id} is up to date"
                else:
                    self.summary.updated += 1
                    verb = f"would update note {item.ghl_id}"
                if self.verbosity >= 2:
                    self.out.write(f"--- {call.call_id} ({item.agent.name}): {verb}\n{body}")

    # --- inline ---

    def _run_inline(self):
        for chunk in _chunks(self.plan.notes):
            calls = _load_calls(chunk)
            for item in chunk:
                task_id = self._ensure_task(calls[item.call_pk], item, enqueue=False)
                if task_id is not None:
                    self._run(task_id)

    def _run(self, task_id):
        self.running_task = task_id
        task = outbox.run_task(task_id, now=self.now())
        self.running_task = None
        if task is not None:
            self._observe(task)

    def _release_running_task(self):
        # Ctrl-C while performing: put the task back so a re-run picks it up at once (its note id,
        # or the "create started" mark, is already stored, so the re-run cannot duplicate the note).
        if self.running_task is not None:
            GhlSyncTask.objects.filter(pk=self.running_task, status=GhlSyncTask.Status.RUNNING).update(
                status=GhlSyncTask.Status.PENDING, claimed_at=None, next_attempt_at=self.now()
            )

    # --- through the workers ---

    def _queue_all(self):
        for chunk in _chunks(self.plan.notes):
            calls = _load_calls(chunk)
            for item in chunk:
                self._ensure_task(calls[item.call_pk], item, enqueue=True)
        self._poll()

    # --- shared ---

    def _ensure_task(self, call, item, *, enqueue):
        if item.attach_agent:
            _attach_agent(call, item.agent)
        # A note is about to be written: "no contact" / "skipped" from an earlier attempt no longer hold.
        sticky = [Call.SyncStatus.NO_CONTACT, Call.SyncStatus.SKIPPED]
        Call.objects.filter(pk=call.pk, ghl_sync_status__in=sticky).update(
            ghl_sync_status=Call.SyncStatus.PENDING, ghl_sync_error=""
        )
        try:
            [task] = ensure_call_tasks(call, [NOTE], now=self.now(), enqueue=enqueue)
        except NotConfigured as exc:  # e.g. no default GHL location
            self._fail(call.call_id, str(exc))
            self.progress.advance()
            return None
        self.call_ids[task.pk] = call.call_id
        self.had_note[task.pk] = bool(item.ghl_id)
        self.waiting.add(task.pk)
        return task.pk

    def _observe(self, task):
        """Account for a task's current state; True when it has finished."""
        if task.status == GhlSyncTask.Status.PENDING and "HTTP 429" in task.last_error:
            self.seen_429.add((task.pk, task.attempts))
            self.summary.rate_limited = len(self.seen_429)
        if task.status not in FINISHED or task.pk not in self.waiting:
            return False
        self.waiting.discard(task.pk)
        call_id = self.call_ids[task.pk]
        if task.status == GhlSyncTask.Status.FAILED:
            self._fail(call_id, task.last_error)
        elif task.payload.get("skipped") == "no_contact":
            self.summary.skipped_no_contact += 1
            self._say(f"{call_id}: skipped, no GHL contact")
        elif not self.had_note[task.pk] or task.payload.get("last_action") in ("created", "adopted"):
            # The call had no note when this run began and has one now: written, whoever ran the
            # task last (a concurrent run or a worker may have re-run it after us, "unchanged").
            self.summary.written += 1
            self._say(f"{call_id}: wrote note {task.ghl_id}")
        elif task.payload.get("last_action") == "updated":
            self.summary.updated += 1
            self._say(f"{call_id}: updated note {task.ghl_id}")
        else:
            self.summary.unchanged += 1
            self._say(f"{call_id}: note {task.ghl_id} already up to date")
        self.progress.advance()
        return True

    def _fail(self, call_id, reason):
        self.summary.failed.append((call_id, reason))  # listed with the summary
        self._say(f"{call_id}: failed: {reason}")

    def _say(self, text, level=2):
        if self.verbosity >= level:
            self.progress.log(text)

    def _poll(self):
        """Read the state of the tasks we wait for; True if any finished."""
        finished = False
        ids = sorted(self.waiting)
        for start in range(0, len(ids), 1000):
            for task in GhlSyncTask.objects.filter(pk__in=ids[start : start + 1000]):
                finished |= self._observe(task)
        return finished

    def _wait_for_the_rest(self):
        """Wait until every task finished or nothing finished for `timeout` seconds.

        Inline, due retries (after a 429 or a 5xx) run here, and tasks a crashed run left claimed
        are taken back once their claim is stale; otherwise the workers and the sweeper do both.
        """
        last_progress = self.now()
        while self.waiting:
            if self._poll() or (self.sync and self._run_due()):
                last_progress = self.now()
                self.progress.set_status("")
                continue
            idle = (self.now() - last_progress).total_seconds()
            if idle >= self.timeout:
                return
            pause = self._pause()
            self.progress.set_status(self._waiting_status(idle, pause))
            self.sleep(min(pause, max(self.timeout - idle, 0.01)))

    def _run_due(self):
        now = self.now()
        tasks = GhlSyncTask.objects.filter(pk__in=self.waiting)
        tasks.filter(status=GhlSyncTask.Status.RUNNING, claimed_at__lt=now - outbox.STALE_CLAIM).update(
            status=GhlSyncTask.Status.PENDING, claimed_at=None, next_attempt_at=now
        )
        due = tasks.filter(status=GhlSyncTask.Status.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
        ran = False
        for task_id in due.order_by("next_attempt_at", "pk").values_list("pk", flat=True):
            self._run(task_id)
            ran = True
        return ran

    def _pause(self):
        if not self.sync:
            return self.poll_interval
        # Inline: sleep until the earliest retry is due (polling meanwhile for other workers' work).
        next_at = (
            GhlSyncTask.objects.filter(pk__in=self.waiting, status=GhlSyncTask.Status.PENDING)
            .exclude(next_attempt_at=None)
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        if next_at is None:
            return self.poll_interval * 5
        return min(max((next_at - self.now()).total_seconds(), 0.05), self.poll_interval * 5)

    def _waiting_status(self, idle, pause):
        if self.sync:
            return f"{len(self.waiting)} waiting to be retried (GHL rate limit or errors)"
        text = f"waiting for the workers ({len(self.waiting)} queued)"
        if idle >= 60:
            text += f", idle {format_seconds(idle)}: is `manage.py qcluster` running? (or use --sync)"
        return text


def _chunks(items, size=CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_calls(chunk):
    return Call.objects.select_related("agent__location", "location").in_bulk(
        [item.call_pk for item in chunk]
    )


def _attach_agent(call, agent):
    """Link a call to its agent (configured after the call came in), as the webhook merge would have."""
    call.agent = agent
    fields = ["agent"]
    if call.location_id is None and agent.location_id:
        call.location = agent.location
        fields.append("location")
    Call.objects.filter(pk=call.pk, agent__isnull=True).update(
        **{name: getattr(call, name) for name in fields}
    )


def _same_body(item, body):
    task = GhlSyncTask.objects.filter(pk=item.task_id).values_list("payload", flat=True).first() or {}
    return task.get("body_sha256") == hashlib.sha256(body.encode()).hexdigest()
