"""Configuration that operators edit in the admin: GHL locations and Retell agents.

Routing rules, tool definitions and outbound campaigns live here too, added by their own features.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.functional import cached_property

from integrations.crypto import EncryptedTextField
from integrations.errors import NotConfigured


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

        With GHL_LOCATION_ID unset, a deployment with exactly one location uses that one.
        """
        if settings.GHL_LOCATION_ID:
            location, _ = self.get_or_create(
                location_id=settings.GHL_LOCATION_ID, defaults={"name": "Default location"}
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
        """The stored token, or the environment's for the env-configured location."""
        if self.token:
            return self.token
        if self.location_id == settings.GHL_LOCATION_ID and settings.GHL_API_TOKEN:
            return settings.GHL_API_TOKEN
        return ""

    @property
    def has_token(self):
        return bool(self.api_token)

    def client(self, *, live=False, throttle=False, session=None):
        """A GHL client for this location. `live` uses the short read timeout of live-call paths.

        `session`: a shared requests.Session, so hot paths reuse kept-alive connections to GHL.
        """
        from integrations.ghl import GhlClient

        read_timeout = settings.GHL_LIVE_READ_TIMEOUT if live else settings.GHL_READ_TIMEOUT
        return GhlClient(
            token=self.api_token,
            location_id=self.location_id,
            read_timeout=read_timeout,
            throttle=throttle,
            session=session,
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


class PhoneNumber(models.Model):
    """A number we own (E.164) and which GHL location answers for it.

    Inbound routing looks the caller up in this location and falls back to `default_agent` when no
    routing rule matches. A dialled number without a row here belongs to the location of the number's
    Retell agent, else to the default location.
    """

    number = models.CharField(max_length=32, unique=True, help_text="E.164, e.g. +14155559999")
    label = models.CharField(max_length=200, blank=True, help_text='e.g. "Main line", "Google Ads"')
    location = models.ForeignKey(
        GhlLocation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="phone_numbers",
        help_text="GHL location whose contacts call this number. Empty: the default location.",
    )
    default_agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Agent to route to when no routing rule matches. "
        "Empty: no override, Retell uses the number's own inbound agent.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number"]

    def __str__(self):
        return f"{self.number} ({self.label})" if self.label else self.number

    def clean(self):
        from integrations.phones import InvalidPhoneNumber, to_e164

        try:
            self.number = to_e164(self.number)
        except InvalidPhoneNumber as exc:
            raise ValidationError({"number": str(exc)}) from exc


def validate_string_list(value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Expected a list of strings.")


def validate_string_map(value):
    # Retell rejects the whole inbound answer when one dynamic variable is not a string.
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise ValidationError('Expected an object of strings, e.g. {"vip_tier": "gold"}.')


def validate_json_object(value):
    if not isinstance(value, dict):
        raise ValidationError('Expected a JSON object, e.g. {"segment": "vip"}.')


class RoutingRule(models.Model):
    """One operator rule for inbound calls: conditions (all that are set must hold) and an action.

    Rules are tried by ascending priority; the first match wins. A rule with no condition matches every
    call in its scope, which makes it a catch-all (put it last). The decision itself is made by
    `integrations.routing.decide_route`; this model only stores and validates what operators enter.
    """

    class Channel(models.TextChoices):
        ANY = "any", "Calls and SMS"
        CALL = "call", "Calls only"
        CHAT = "chat", "SMS chats only"

    class ContactStatus(models.TextChoices):
        ANY = "any", "Either"
        FOUND = "found", "Found in GHL"
        NOT_FOUND = "not_found", "Not found in GHL"

    class Action(models.TextChoices):
        ROUTE = "route", "Answer (route / add variables)"
        REJECT = "reject", "Reject the call"

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Mon"
        TUESDAY = 1, "Tue"
        WEDNESDAY = 2, "Wed"
        THURSDAY = 3, "Thu"
        FRIDAY = 4, "Fri"
        SATURDAY = 5, "Sat"
        SUNDAY = 6, "Sun"

    name = models.CharField(max_length=200)
    priority = models.PositiveIntegerField(default=100, help_text="Lower runs first; the first match wins.")
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)

    # Scope
    location = models.ForeignKey(
        GhlLocation,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routing_rules",
        help_text="Only calls to numbers of this location. Empty: every location.",
    )
    dialled_numbers = models.JSONField(
        default=list, blank=True, validators=[validate_string_list], help_text="Only calls to these numbers."
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.ANY)

    # Caller
    caller_numbers = models.JSONField(
        default=list, blank=True, validators=[validate_string_list], help_text="Caller is one of these."
    )
    caller_prefixes = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="Caller's E.164 number starts with one of these, e.g. +1900.",
    )

    # Contact (from the GHL lookup; a rule with contact conditions never matches when GHL failed)
    contact_status = models.CharField(max_length=16, choices=ContactStatus.choices, default=ContactStatus.ANY)
    tags_any = models.JSONField(
        default=list, blank=True, validators=[validate_string_list], help_text="Contact has at least one."
    )
    tags_all = models.JSONField(
        default=list, blank=True, validators=[validate_string_list], help_text="Contact has every one."
    )
    custom_field_id = models.CharField(max_length=64, blank=True, help_text="GHL custom field id.")
    custom_field_value = models.CharField(
        max_length=500, blank=True, help_text="…equals this (case-insensitive; any item of a multi-select)."
    )

    # Time window
    days = models.JSONField(
        default=list, blank=True, help_text="Days of week the window starts on. Empty: every day."
    )
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(
        null=True,
        blank=True,
        help_text="Exclusive. Earlier than the start for overnight windows (18:00–08:00).",
    )
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA timezone of the window. Empty: the location's timezone.",
    )

    # Action
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.ROUTE)
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="routing_rules",
        help_text="Route to this agent. Empty: keep the default route, still adding the variables below.",
    )
    agent_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Agent version to pin. Empty: the agent's own pinned version."
    )
    dynamic_variables = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_string_map],
        help_text='Added to the call, e.g. {"vip_tier": "gold", "greeting": "Hi {{ contact.firstName }}"}. '
        "Templates: contact.<field>, custom.<custom field id>, call.from_number, call.to_number; "
        'a fallback with {{ contact.firstName|default:"there" }}.',
    )
    metadata = models.JSONField(
        default=dict, blank=True, validators=[validate_json_object], help_text="Added to the call's metadata."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        indexes = [models.Index(fields=["enabled", "priority"], name="routingrule_enabled_priority")]

    def __str__(self):
        return self.name

    @property
    def is_reject(self):
        return self.action == self.Action.REJECT

    @property
    def needs_contact(self):
        """Whether a condition reads the GHL contact (such a rule cannot match when GHL failed)."""
        return bool(
            self.contact_status != self.ContactStatus.ANY
            or self.tags_any
            or self.tags_all
            or self.custom_field_id
        )

    @property
    def has_time_window(self):
        return bool(self.days) or self.start_time is not None

    def clean(self):
        from integrations.routing import clean_rule

        clean_rule(self)
