from django.conf import settings
from django.core.management.base import BaseCommand

from integrations.sandbox.seed import seed_sandbox


class Command(BaseCommand):
    help = (
        "Fill the GHL sandbox with demo data: location loc_sandbox, contacts (Dana Lee tagged vip), "
        "calendar cal_sandbox (Mon-Fri 9-17 America/Los_Angeles, 60-minute slots) and two demo agents. "
        "Idempotent; does nothing unless GHL_SANDBOX is on."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="First delete the sandbox location's contacts, notes, appointments and calendar.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even though GHL_SANDBOX is off (e.g. before turning it on).",
        )

    def handle(self, *args, reset=False, force=False, **options):
        if not settings.GHL_SANDBOX and not force:
            # scripts/run calls this on every start: with a real GHL configured, say so and do nothing,
            # so demo agents and a sandbox location never appear in a production database by accident.
            self.stdout.write("GHL sandbox is off (GHL_SANDBOX): nothing seeded.")
            return
        self.stdout.write(self.style.SUCCESS(seed_sandbox(reset=reset).summary()))
