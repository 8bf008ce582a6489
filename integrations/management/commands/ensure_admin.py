import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an 'admin' superuser with a random password when none exists (DEBUG runs only)."

    def handle(self, *args, **options):
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists: log in at /admin/.")
            return
        if not settings.DEBUG:
            self.stdout.write("No superuser: create one with `manage.py createsuperuser`.")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        # Printed once, to the operator's own terminal, for a local run only.
        self.stdout.write(self.style.SUCCESS(f"Created superuser 'admin' with password: {password}"))
