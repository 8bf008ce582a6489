from django.core.management.base import BaseCommand, CommandError

from calls.backfill import NoteBackfill, NoteSelection, SelectionError, plan_notes
from retellghl.cli import positive_int, since_option, until_option


class Command(BaseCommand):
    help = (
        "Write the GHL notes of calls whose note is missing or failed, through the same outbox task as "
        "the live pipeline (one note per call, never duplicated). Safe to re-run: it resumes where an "
        "interrupted run stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", type=since_option, help="calls started at/after: 2026-12-01, an ISO time, 7d"
        )
        parser.add_argument(
            "--until", type=until_option, help="calls started before (a date includes that day)"
        )
        parser.add_argument("--agent", action="append", default=[], help="Retell agent id (repeatable)")
        parser.add_argument("--location", action="append", default=[], help="GHL location id (repeatable)")
        parser.add_argument("--call-id", action="append", default=[], help="Retell call id (repeatable)")
        parser.add_argument(
            "--include-synced",
            action="store_true",
            help="also rewrite notes already written (updated in place)",
        )
        parser.add_argument("--limit", type=positive_int, help="at most this many calls")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be written; touch nothing"
        )
        parser.add_argument(
            "--sync", action="store_true", help="run in this process instead of the django-q2 workers"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=600.0,
            help="stop waiting when no note has finished for this many seconds (default 600)",
        )

    def handle(self, *args, **options):
        selection = NoteSelection(
            since=options["since"],
            until=options["until"],
            agent_ids=options["agent"],
            location_ids=options["location"],
            call_ids=options["call_id"],
            include_synced=options["include_synced"],
            limit=options["limit"],
        )
        summary = run_backfill(self, selection, options)
        if not summary.ok:
            raise CommandError(failure_message(summary), returncode=130 if summary.interrupted else 1)


def run_backfill(command, selection, options):
    """Plan, run and report a note backfill (shared with `sync_retell_calls --backfill-notes`)."""
    try:
        plan = plan_notes(selection)
    except SelectionError as exc:
        raise CommandError(str(exc)) from None
    out = command.stdout
    if plan.not_eligible and options["verbosity"] >= 1:
        out.write(f"{plan.not_eligible} matching calls need no note (their agent writes none for them).")
    backfill = NoteBackfill(
        plan,
        out=out,
        dry_run=options["dry_run"],
        sync=options["sync"],
        timeout=options["timeout"],
        verbosity=options["verbosity"],
    )
    summary = backfill.run()
    for call_id, reason in summary.failed:
        out.write(f"  failed   {call_id}: {reason}")
    for call_id, state in summary.unfinished:
        out.write(f"  unfinished {call_id}: {state} (still queued; re-run to resume)")
    if summary.interrupted:
        out.write("Interrupted: re-run the same command to resume; finished notes are not written again.")
    out.write(summary.line())
    return summary


def failure_message(summary):
    if summary.interrupted:
        return "interrupted"
    parts = []
    if summary.failed:
        parts.append(f"{len(summary.failed)} note(s) failed")
    if summary.unfinished:
        parts.append(f"{len(summary.unfinished)} note(s) unfinished")
    return ", ".join(parts)
