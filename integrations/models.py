"""Configuration that operators edit in the admin: GHL locations and Retell agents.

Routing rules, tool definitions and outbound campaigns live here too, added by their own features.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
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
from integrations.tools.registry import handler_choices as tool_handler_choices


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


# --- Outbound calls from GHL workflows ------------------------------------------------------------

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
# Retell reads `{{name}}` placeholders; keep variable names to what a prompt can spell.
_VARIABLE_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
SECRET_PREFIX = "whs_"


def default_call_days():
    return [0, 1, 2, 3, 4]


def validate_e164(value):
    from integrations.phones import InvalidPhoneNumber, to_e164

    try:
        normalised = to_e164(value)
    except InvalidPhoneNumber as exc:
        raise ValidationError(str(exc)) from exc
    if normalised != value:
        raise ValidationError(f"Write the number in E.164, e.g. {normalised}")


def validate_call_days(value):
    if not isinstance(value, list) or not value or any(day not in range(7) for day in value):
        raise ValidationError("Pick at least one day (0 = Monday … 6 = Sunday).")


def validate_variable_mapping(value):
    import re

    if not isinstance(value, dict):
        raise ValidationError('A JSON object: {"<payload path>": "<variable name>"}.')
    for path, name in value.items():
        if not isinstance(path, str) or not path.strip():
            raise ValidationError(f"{path!r} is not a payload path (e.g. email or location.name).")
        if not isinstance(name, str) or not re.match(_VARIABLE_NAME_RE, name):
            raise ValidationError(
                f"{name!r} is not a variable name: letters, digits and _, starting with a letter or _."
            )


class OutboundCampaign(models.Model):
    """A GHL workflow "Webhook" action target: who calls (agent, from number), when, and with what context.

    GHL's workflow webhook is unsigned, so the caller proves itself with this campaign's secret. Only a
    SHA-256 of the secret is stored: it is a random 256-bit token, so a fast hash is enough (a slow
    password hash would only let anyone burn our CPU by posting wrong secrets).
    """

    slug = models.SlugField(
        max_length=64, unique=True, help_text="Part of the webhook URL: /api/webhooks/ghl/outbound/<slug>"
    )
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True, help_text="Disabled campaigns answer 409 and dial nobody.")
    location = models.ForeignKey(
        GhlLocation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="outbound_campaigns",
        help_text="GHL location whose contacts this campaign calls. Empty: the default location.",
    )
    agent = models.ForeignKey(
        Agent,
        on_delete=models.PROTECT,
        related_name="outbound_campaigns",
        help_text="Retell agent that places the calls (sent as override_agent_id).",
    )
    agent_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Agent version to dial with. Empty: the agent's pinned version, else latest.",
    )
    from_number = models.CharField(
        max_length=32,
        validators=[validate_e164],
        help_text="Retell number the calls come from, in E.164 (+14155550100).",
    )
    secret_hash = models.CharField(max_length=64, editable=False)
    secret_hint = models.CharField(
        max_length=16, editable=False, help_text="The first characters of the secret, to tell secrets apart."
    )

    # Calling window: active when both times are set. Outside it, requests wait for the next opening.
    call_days = models.JSONField(
        default=default_call_days, blank=True, validators=[validate_call_days], help_text="0 = Monday."
    )
    call_start = models.TimeField(null=True, blank=True, help_text="Window opens (local time).")
    call_end = models.TimeField(null=True, blank=True, help_text="Window closes (local time).")
    call_timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA timezone of the window and of the daily limit. Empty: the location's timezone.",
    )

    variable_mapping = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_variable_mapping],
        help_text='Extra dynamic variables: {"<payload path>": "<variable name>"}, dots for nesting, e.g. '
        '{"email": "email", "location.name": "business_name"}. Always sent: contact_id, first_name, '
        "customer_name, and every customData key when the box below is ticked.",
    )
    include_custom_data = models.BooleanField(
        default=True, help_text="Send every key of the payload's customData as a dynamic variable."
    )
    max_calls_per_contact_per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="At most this many calls to one contact per local day. Empty: no limit.",
    )
    redelivery_window_minutes = models.PositiveIntegerField(
        default=90,
        help_text="A second identical request (same contact, workflow and customData) within this many "
        "minutes is a re-delivery and dials nobody. GHL retries for about 70 minutes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.slug})"

    def clean(self):
        super().clean()
        if (self.call_start is None) != (self.call_end is None):
            raise ValidationError("Set both ends of the calling window, or neither.")
        if self.call_start is not None and self.call_start >= self.call_end:
            raise ValidationError({"call_end": "The window must close after it opens (same day)."})
        if self.call_start is not None and not self.call_days:
            raise ValidationError({"call_days": "Pick at least one day for the calling window."})
        if self.redelivery_window_minutes is not None and self.redelivery_window_minutes < 1:
            raise ValidationError({"redelivery_window_minutes": "At least one minute."})

    # --- secret ---------------------------------------------------------------------------

    def set_new_secret(self):
        """Generate, store (hashed) and return a new secret. The caller shows it once; it is never kept."""
        import secrets

        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        self.secret_hash = _sha256(secret)
        self.secret_hint = secret[: len(SECRET_PREFIX) + 4]
        return secret

    def check_secret(self, presented):
        import hmac

        if not presented or not self.secret_hash:
            return False
        return hmac.compare_digest(_sha256(presented), self.secret_hash)

    # --- derived configuration ------------------------------------------------------------

    @cached_property
    def effective_location(self):
        """The campaign's location, else the agent's, else the default one (None when none is set up)."""
        if self.location_id:
            return self.location
        try:
            return self.agent.effective_location
        except NotConfigured:
            return None

    @property
    def timezone_name(self):
        if self.call_timezone:
            return self.call_timezone
        location = self.effective_location
        return location.timezone if location else "UTC"

    @property
    def calling_window(self):
        """The window as a CallingWindow, or None when calls may go out at any time."""
        if self.call_start is None or self.call_end is None:
            return None
        from integrations.outbound.calling_window import CallingWindow

        return CallingWindow(
            days=self.call_days or [], start=self.call_start, end=self.call_end, timezone=self.timezone_name
        )

    @property
    def effective_agent_version(self):
        return self.agent_version if self.agent_version is not None else self.agent.retell_agent_version


def _sha256(text):
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OutboundCallRequest(models.Model):
    """One accepted GHL webhook delivery for a campaign, and what became of it (the delivery log).

    Written before anything is dialled. `fingerprint` identifies "the same request" (campaign, contact,
    workflow, customData); the partial unique constraint allows one open request per fingerprint, so two
    concurrent deliveries of one request can never both dial.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled (waiting for the calling window)"
        QUEUED = "queued", "Queued (to dial now, or to retry after a Retell error)"
        DIALING = "dialing", "Dialing"
        PLACED = "placed", "Call placed"
        FAILED = "failed", "Failed"
        LIMITED = "limited", "Refused: daily limit reached"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.SCHEDULED, Status.QUEUED, Status.DIALING)
    # Requests that count against the per-contact daily limit.
    COUNTED_STATUSES = (Status.SCHEDULED, Status.QUEUED, Status.DIALING, Status.PLACED)

    campaign = models.ForeignKey(OutboundCampaign, on_delete=models.PROTECT, related_name="requests")
    fingerprint = models.CharField(max_length=64)
    idempotency_key = models.CharField(
        max_length=100, unique=True, help_text="Sent to Retell: a retried attempt can never dial twice."
    )
    ghl_contact_id = models.CharField(max_length=64, blank=True, db_index=True)
    ghl_workflow_id = models.CharField(max_length=64, blank=True)
    to_number = models.CharField(max_length=32, db_index=True)
    payload = models.JSONField(help_text="The GHL webhook body, as received.")
    dynamic_variables = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="When the next attempt is due.")
    attempts = models.PositiveIntegerField(default=0, help_text="create-phone-call requests sent to Retell.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    retell_status = models.PositiveIntegerField(
        null=True, blank=True, help_text="HTTP status of the last error."
    )
    retell_call_id = models.CharField(max_length=128, blank=True, db_index=True)
    call = models.ForeignKey(
        "calls.Call", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_requests"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "outbound call request"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "fingerprint"],
                condition=models.Q(status__in=["scheduled", "queued", "dialing"]),
                name="outbound_one_open_request_per_fingerprint",
            )
        ]
        indexes = [
            models.Index(
                fields=["campaign", "fingerprint", "-created_at"], name="outbound_fingerprint_recent"
            ),
            models.Index(fields=["campaign", "to_number", "created_at"], name="outbound_number_day"),
            models.Index(fields=["campaign", "ghl_contact_id", "created_at"], name="outbound_contact_day"),
        ]

    def __str__(self):
        who = self.ghl_contact_id or self.to_number
        return f"{self.campaign.slug} → {who} [{self.status}]"

    @property
    def is_open(self):
        return self.status in self.OPEN_STATUSES


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

    # Unique: it names the rule in call metadata, decisions and configuration files.
    name = models.CharField(max_length=200, unique=True)
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


TOOL_NAME_RE = r"^[A-Za-z0-9_-]{1,64}$"  # Retell's (and MCP's) rule for function names


class ToolDefinitionQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(enabled=True)

    def custom_functions(self):
        """Enabled definitions served to Retell at /api/functions/<name>."""
        return self.usable().filter(expose_as_custom_function=True)

    def mcp_tools(self):
        """Enabled definitions listed by the MCP tool server."""
        return self.usable().filter(expose_over_mcp=True)

    def for_agent(self, retell_agent_id):
        """Tools the agent may call: those open to every agent, and those naming it."""
        return self.filter(
            models.Q(agents__isnull=True) | models.Q(agents__retell_agent_id=retell_agent_id)
        ).distinct()


class ToolDefinition(models.Model):
    """A public tool name bound to a built-in handler and its fixed configuration.

    Several definitions may share a handler (e.g. `book_cleaning` and `book_consult` on two calendars).
    The same definition serves Retell custom functions and the MCP server.
    """

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(TOOL_NAME_RE, "Letters, digits, _ and - only, at most 64 characters.")],
        help_text="Public name the LLM calls, e.g. check_availability. Also the URL: /api/functions/<name>.",
    )
    handler = models.CharField(max_length=64, choices=tool_handler_choices)
    description = models.TextField(
        blank=True, help_text="What the tool does and when to use it, for the LLM. Empty: the handler's own."
    )
    argument_schema = models.JSONField(
        null=True,
        blank=True,
        help_text="JSON Schema of the arguments (type: object). Empty: the handler's default schema.",
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text='Fixed settings for the handler, e.g. {"calendar_id": "...", "slots_to_offer": 3}.',
    )
    location = models.ForeignKey(
        GhlLocation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tools",
        help_text="GHL location the tool acts on. Empty: the calling agent's location, else the default.",
    )
    agents = models.ManyToManyField(
        Agent, blank=True, related_name="tools", help_text="Agents that may call it. Empty: every agent."
    )
    expose_as_custom_function = models.BooleanField(
        default=True, help_text="Served at /api/functions/<name>."
    )
    expose_over_mcp = models.BooleanField(default=False, help_text="Listed by the MCP tool server.")
    speak_during_execution = models.BooleanField(
        default=True, help_text='Retell: the agent says something like "One moment" while the tool runs.'
    )
    execution_message = models.CharField(
        max_length=500, blank=True, help_text="Retell: what to say while the tool runs (a prompt)."
    )
    speak_after_execution = models.BooleanField(
        default=True, help_text="Retell: the agent speaks again once the result is in."
    )
    timeout_ms = models.PositiveIntegerField(
        default=20_000,
        validators=[MinValueValidator(1_000), MaxValueValidator(600_000)],
        help_text="Retell: how long it waits for our answer.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ToolDefinitionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "tool definition"

    def __str__(self):
        return self.name

    @property
    def handler_spec(self):
        """The registered handler (integrations.tools.registry.Handler), or None if it no longer exists."""
        from integrations.tools.registry import get_handler

        return get_handler(self.handler)

    @property
    def effective_description(self):
        spec = self.handler_spec
        return self.description.strip() or (spec.description if spec else "")

    @property
    def effective_schema(self):
        """The argument schema the LLM sees and requests are validated against."""
        if self.argument_schema:
            return self.argument_schema
        spec = self.handler_spec
        return spec.default_schema(self.config) if spec else {"type": "object", "properties": {}}

    def clean(self):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        errors = {}
        spec = self.handler_spec
        if spec is None:
            errors["handler"] = f"Unknown handler {self.handler!r}."
        config = self.config if self.config is not None else {}
        if not isinstance(config, dict):
            errors["config"] = "Configuration must be a JSON object."
        elif spec is not None:
            problems = sorted(
                Draft202012Validator(spec.config).iter_errors(config),
                key=lambda e: [str(part) for part in e.path],
            )
            if problems:
                errors["config"] = [_schema_problem(problem) for problem in problems]
            elif config.get("timezone"):
                try:
                    validate_timezone(config["timezone"])
                except ValidationError as exc:
                    errors["config"] = exc.messages
        if self.argument_schema is not None and self.argument_schema != {}:
            schema = self.argument_schema
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                errors["argument_schema"] = f"Not a valid JSON Schema: {exc.message}"
            else:
                # Retell (and MCP) take function parameters as an object schema listing its properties.
                if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
                    errors["argument_schema"] = 'Must be {"type": "object", "properties": {...}}.'
        if errors:
            raise ValidationError(errors)


# --- MCP tool server ------------------------------------------------------------------------------

MCP_TOKEN_PREFIX = "mcp_"


class McpToken(models.Model):
    """A bearer token for the MCP tool server (`/api/mcp`): one client, one GHL location, some tools.

    Only a SHA-256 of the token is stored, as for outbound campaign secrets: it is a random 256-bit
    value, so a fast hash is enough and a slow one would let anyone burn our CPU with wrong tokens.
    """

    name = models.CharField(max_length=200, help_text='Who uses it, e.g. "Retell: front desk agent".')
    location = models.ForeignKey(
        GhlLocation,
        on_delete=models.PROTECT,
        related_name="mcp_tokens",
        help_text="GHL location the tools act on for this token.",
    )
    tools = models.ManyToManyField(
        ToolDefinition,
        blank=True,
        related_name="mcp_tokens",
        help_text="Only these tools. Empty: every enabled tool exposed over MCP. Tools pinned to another "
        "location are never served to this token.",
    )
    enabled = models.BooleanField(default=True, help_text="Disabled tokens are refused (401).")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(
        max_length=16, editable=False, help_text="The first characters of the token, to tell tokens apart."
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP token"

    def __str__(self):
        return f"{self.name} ({self.token_hint}…)"

    @staticmethod
    def hash_of(presented):
        """The stored hash a presented secret would have, or None when it cannot be one of ours."""
        if (
            not isinstance(presented, str)
            or not presented.startswith(MCP_TOKEN_PREFIX)
            or len(presented) > 256
        ):
            return None
        return _sha256(presented)

    def set_new_token(self):
        """Generate, store (hashed) and return a new token. The caller shows it once; it is never kept."""
        import secrets

        token = MCP_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = _sha256(token)
        self.token_hint = token[: len(MCP_TOKEN_PREFIX) + 4]
        return token

    def record_use(self, now):
        """Note when the token was last used, writing at most once a minute (not on every request)."""
        from datetime import timedelta

        if self.last_used_at is not None and now - self.last_used_at < timedelta(minutes=1):
            return
        McpToken.objects.filter(pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


def _schema_problem(error):
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
