"""System checks for production (`manage.py check --deploy`)."""

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def field_encryption_key_check(app_configs, **kwargs):
    """Stored GHL tokens are encrypted with FIELD_ENCRYPTION_KEY, else with a key derived from
    SECRET_KEY: then rotating SECRET_KEY silently makes every stored token unreadable."""
    if not settings.FIELD_ENCRYPTION_KEY:
        return [
            Warning(
                "FIELD_ENCRYPTION_KEY is not set: stored GHL tokens are encrypted with a key derived from "
                "SECRET_KEY, so changing SECRET_KEY makes them unreadable.",
                hint="Set FIELD_ENCRYPTION_KEY to a new Fernet key: python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'",
                id="retellghl.W001",
            )
        ]
    try:
        Fernet(settings.FIELD_ENCRYPTION_KEY.encode())
    except ValueError:
        return [
            Warning(
                "FIELD_ENCRYPTION_KEY is not a Fernet key (urlsafe base64 of 32 bytes).",
                id="retellghl.W002",
            )
        ]
    return []
