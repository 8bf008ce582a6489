import json
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox.seed import DANA_PHONE, DEMO_LINE, RECEPTION_AGENT_ID, SANDBOX_TIMEZONE
from integrations.simulator import CallSimulator, ServerUnreachable


class Command(BaseCommand):
    help = (
        "Play one realistic Retell call against a running server over HTTP, signed as Retell signs: "
        "inbound webhook, call_started, check_availability and book_appointment, transcript_updated, "
        "call_ended, call_analyzed. Defaults fit the seeded GHL sandbox (Dana Lee, a VIP, calls the demo "
        "line). Exits non-zero when a request fails."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The server (default: %(default)s)."
        )
        parser.add_argument(
            "--from", dest="from_number", default=DANA_PHONE, help="Caller's number (default: %(default)s)."
        )
        parser.add_argument(
            "--to", dest="to_number", default=DEMO_LINE, help="Dialled number (default: %(default)s)."
        )
        parser.add_argument(
            "--agent",
            default=RECEPTION_AGENT_ID,
            help="The agent Retell has on the number (default: %(default)s). The server's routing still "
            "decides who answers: the number's default agent, or a rule's.",
        )
        parser.add_argument(
            "--api-key",
            help="Key to sign with: the server's RETELL_API_KEY (default: this environment's, else the "
            "sandbox demo key).",
        )
        parser.add_argument(
            "--duplicates",
            type=int,
            default=1,
            metavar="N",
            help="Send every call event and function call N times, as Retell's retries do.",
        )
        parser.add_argument(
            "--out-of-order",
            action="store_true",
            help="Deliver the webhooks last and reversed: call_analyzed, call_ended, ..., call_started.",
        )
        parser.add_argument(
            "--no-booking", action="store_true", help="Check availability only; the caller books nothing."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON document instead of lines.")
        parser.add_argument("--timeout", type=float, default=20.0, help="Seconds to wait for each answer.")

    def handle(self, *args, **options):
        if options["duplicates"] < 1:
            raise CommandError("--duplicates must be at least 1.")
        as_json = options["json"]
        simulator = CallSimulator(
            base_url=options["url"],
            api_key=options["api_key"] or settings.RETELL_API_KEY or settings.SANDBOX_RETELL_API_KEY,
            from_number=options["from_number"],
            to_number=options["to_number"],
            agent_id=options["agent"],
            duplicates=options["duplicates"],
            out_of_order=options["out_of_order"],
            booking=not options["no_booking"],
            timeout=options["timeout"],
            # "Tomorrow" where the demo calendar is, not on this machine's clock.
            today=datetime.now(ZoneInfo(SANDBOX_TIMEZONE)).date(),
            on_step=None if as_json else self._print_step,
        )
        if not as_json:
            self.stdout.write(
                f"Calling {options['to_number']} from {options['from_number']} on {simulator.base_url} "
                f"(agent {options['agent']})"
            )
        try:
            simulation = simulator.run()
        except ServerUnreachable as exc:
            raise CommandError(f"{exc}. Is the server running? Start it with scripts/run.") from None

        if as_json:
            self.stdout.write(json.dumps(simulation.as_dict(), indent=2, ensure_ascii=False))
        else:
            style = self.style.SUCCESS if simulation.ok else self.style.ERROR
            self.stdout.write(style(simulation.summary()))
        if not simulation.ok:
            raise CommandError(f"{len(simulation.failed_steps)} of {len(simulation.steps)} requests failed.")

    def _print_step(self, step):
        status = str(step.status) if step.status is not None else "---"
        line = f"  {step.name:<28} {status:>4} {step.latency_ms:>8.1f} ms  {step.detail}".rstrip()
        self.stdout.write(line if step.ok else self.style.ERROR(f"{line}  FAILED"))
