from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calls.backfill import NoteSelection
from calls.management.commands.backfill_ghl_notes import failure_message, run_backfill
from calls.reconcile import RetellReconciler
from integrations.errors import NotConfigured, VendorError
from integrations.models import Agent
from integrations.retell import RetellClient
from retellghl.cli import since_option, until_option


class Command(BaseCommand):
    help = (
        "Bring into the call log the Retell calls whose webhooks we missed: list calls in a time range, "
        "fetch the missing or incomplete ones and merge them exactly as their webhooks would have been. "
        "Idempotent: complete calls are not fetched again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", type=since_option, help="calls started at/after (default 24h ago): 2026-12-01, ISO, 7d"
        )
        parser.add_argument("--until", type=until_option, help="calls started before (default now)")
        parser.add_argument("--agent", action="append", default=[], help="Retell agent id (repeatable)")
        parser.add_argument(
            "--dry-run", action="store_true", help="list and compare only; fetch and write nothing"
        )
        parser.add_argument(
            "--backfill-notes",
            action="store_true",
            help="then run backfill_ghl_notes for the same range and agents",
        )
        parser.add_argument(
            "--sync", action="store_true", help="with --backfill-notes: write notes in this process"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=600.0,
            help="with --backfill-notes: stop waiting when no note finished for this long (default 600 s)",
        )

    def handle(self, *args, **options):
        now = timezone.now()
        since = options["since"] or now - timedelta(hours=24)
        until = options["until"] or now
        if since >= until:
            raise CommandError("--since must be before --until")
        try:
            client = RetellClient()
        except NotConfigured as exc:
            raise CommandError(str(exc)) from None

        reconciler = RetellReconciler(
            client,
            since=since,
            until=until,
            agent_ids=options["agent"],
            out=self.stdout,
            dry_run=options["dry_run"],
            verbosity=options["verbosity"],
        )
        try:
            summary = reconciler.run()
        except VendorError as exc:  # listing failed even after retries: nothing to reconcile against
            raise CommandError(f"could not list Retell calls: {exc}") from None
        for call_id, reason in summary.failed:
            self.stdout.write(f"  failed   {call_id}: {reason}")
        self.stdout.write(summary.line())
        if summary.interrupted:
            raise CommandError("interrupted: re-run the same command to resume", returncode=130)

        problems = [f"{len(summary.failed)} call(s) could not be fetched"] if summary.failed else []
        if options["backfill_notes"]:
            notes_problem = self._backfill_notes(since, until, options)
            if notes_problem:
                problems.append(f"note backfill: {notes_problem}")
        if problems:
            raise CommandError("; ".join(problems))

    def _backfill_notes(self, since, until, options):
        """Run the note backfill for the same range; returns what went wrong, or ""."""
        agent_ids = options["agent"]
        if agent_ids:
            configured = Agent.objects.filter(retell_agent_id__in=agent_ids).values_list(
                "retell_agent_id", flat=True
            )
            agent_ids = [agent_id for agent_id in agent_ids if agent_id in set(configured)]
            if not agent_ids:
                self.stdout.write("No configured agent among --agent: no notes to backfill.")
                return ""
        summary = run_backfill(self, NoteSelection(since=since, until=until, agent_ids=agent_ids), options)
        return "" if summary.ok else failure_message(summary)
