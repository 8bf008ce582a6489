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

        Pass a long-lived `session` to reuse connections across requests (tokens travel per request).
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


def _schema_problem(error):
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
