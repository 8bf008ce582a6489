"""Configuration that operators edit in the admin: GHL locations and Retell agents.

Routing rules, tool definitions and outbound campaigns live here too, added by their own features.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.functional import cached_property

from integrations.crypto import EncryptedTextField
from integrations.errors import NotConfigured
from integrations.sandbox import SANDBOX_CALENDAR_ID, SANDBOX_LOCATION_ID, SANDBOX_TOKEN

# The GHL sandbox's tables belong to this app; importing them here registers them.
from integrations.sandbox.models import (  # noqa: F401
    SandboxAppointment,
    SandboxCalendar,
    SandboxContact,
    SandboxNote,
    SandboxOpportunity,
    SandboxWorkflowEnrolment,
)


def validate_timezone(value):
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA timezone (e.g. America/New_York)") from exc


def default_agent_events():
    return ["call_ended", "call_analyzed"]


class GhlLocationQuerySet(models.QuerySet):
    def default(self):
        """The deployment's default location: the one named by GHL_LOCATION_ID, created on first use.

        With GHL_LOCATION_ID unset, the GHL sandbox uses its own location, and otherwise a deployment
        with exactly one location uses that one.
        """
        if settings.GHL_LOCATION_ID:
            location, _ = self.get_or_create(
                location_id=settings.GHL_LOCATION_ID, defaults={"name": "Default location"}
            )
            return location
        if settings.GHL_SANDBOX:
            location, _ = self.get_or_create(
                location_id=SANDBOX_LOCATION_ID,
                defaults={
                    "name": "GHL sandbox",
                    "timezone": "America/Los_Angeles",
                    "default_calendar_id": SANDBOX_CALENDAR_ID,
                },
            )
            return location
        only = list(self.all()[:2])
        if len(only) == 1:
            return only[0]
        raise NotConfigured("No default GHL location: set GHL_LOCATION_ID or create exactly one location.")


class GhlLocation(models.Model):
    """A GHL sub-account. One token is scoped to one location."""

    location_id = models.CharField(max_length=64, unique=True, help_text="GHL location (sub-account) id")
    name = models.CharField(max_length=200)
    token = EncryptedTextField(
        blank=True,
        help_text="Private Integration Token (pit-...). Stored encrypted; never shown again. "
        "Leave empty to use GHL_API_TOKEN from the environment for the default location.",
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    default_calendar_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GhlLocationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "GHL location"

    def __str__(self):
        return f"{self.name} ({self.location_id})"

    @property
    def api_token(self):
        """The stored token, or the environment's for the env-configured location.

        In sandbox mode a location without one gets a placeholder: the in-process sandbox accepts any
        bearer token and nothing is sent to GHL.
        """
        if self.token:
            return self.token
        if self.location_id == settings.GHL_LOCATION_ID and settings.GHL_API_TOKEN:
            return settings.GHL_API_TOKEN
        if settings.GHL_SANDBOX:
            return SANDBOX_TOKEN
        return ""

    @property
    def has_token(self):
        return bool(self.api_token)

    def client(self, *, live=False, throttle=False):
        """A GHL client for this location. `live` uses the short read timeout of live-call paths."""
        from integrations.ghl import GhlClient

        read_timeout = settings.GHL_LIVE_READ_TIMEOUT if live else settings.GHL_READ_TIMEOUT
        return GhlClient(
            token=self.api_token, location_id=self.location_id, read_timeout=read_timeout, throttle=throttle
        )


class Agent(models.Model):
    """A Retell agent and what we do with its calls."""

    class Role(models.TextChoices):
        GENERAL = "general", "General"
        RECEPTION = "reception", "Reception"
        SALES = "sales", "Sales"
        SUPPORT = "support", "Support"
        VIP = "vip", "VIP"
        AFTER_HOURS = "after_hours", "After hours"
        OUTBOUND = "outbound", "Outbound"

    retell_agent_id = models.CharField(max_length=128, unique=True)
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.GENERAL)
    location = models.ForeignKey(
        GhlLocation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="agents",
        help_text="GHL location its calls sync to. Empty: the default location.",
    )
    retell_agent_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Version to pin when we route or dial to this agent. Empty: latest."
    )
    is_active = models.BooleanField(default=True)

    # Post-call webhook behaviour, editable without code.
    events_to_process = models.JSONField(
        default=default_agent_events,
        blank=True,
        help_text='Call events that trigger GHL sync, e.g. ["call_ended", "call_analyzed"]. '
        "Every event is stored regardless.",
    )
    sync_transcript_note = models.BooleanField(default=True, help_text="Write the transcript to a GHL note.")
    sync_summary_note = models.BooleanField(
        default=True, help_text="Add the call analysis (summary, sentiment, outcome) to the same note."
    )
    note_template = models.TextField(
        blank=True, help_text="Django template for the note body. Empty: the built-in template."
    )
    post_call_tags = models.JSONField(
        default=list, blank=True, help_text='Tags added after each call, e.g. ["ai-call"].'
    )
    tag_call_outcome = models.BooleanField(
        default=True, help_text="Also tag call-successful / call-failed from the call analysis."
    )
    workflow_id = models.CharField(
        max_length=64, blank=True, help_text="GHL workflow to enrol the contact in after the call."
    )
    analysis_custom_fields = models.JSONField(
        default=dict,
        blank=True,
        help_text='GHL custom field id → analysis value, e.g. {"cf_LastOutcome": "call_summary"}. '
        "Values: call_summary, user_sentiment, call_successful, in_voicemail, or custom:<key>.",
    )
    create_unknown_contacts = models.BooleanField(
        default=False, help_text="Create a GHL contact for callers not found by phone."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.retell_agent_id})"

    @cached_property
    def effective_location(self):
        return self.location or GhlLocation.objects.default()

    def acts_on(self, event):
        return self.is_active and event in (self.events_to_process or [])
