import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from calls.admin import HasErrorFilter, ReadOnlyAdmin, pretty_json
from integrations import admin_routing  # noqa: F401  (registers the inbound routing admin)
from integrations.models import (
    WEEKDAYS,
    Agent,
    GhlLocation,
    McpToken,
    OutboundCallRequest,
    OutboundCampaign,
    ToolDefinition,
    default_call_days,
)


class PrettyJSONFormField(forms.JSONField):
    """Edits JSON indented, one key per line, instead of Django's single line."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


PRETTY_JSON = {
    models.JSONField: {"form_class": PrettyJSONFormField, "widget": forms.Textarea(attrs={"rows": 5})}
}


class GhlLocationForm(forms.ModelForm):
    # Write-only: the stored token is never rendered back. Empty input keeps the current token.
    new_token = forms.CharField(
        label="Token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Private Integration Token (pit-...). Stored encrypted; empty keeps the current one.",
    )
    clear_token = forms.BooleanField(required=False, help_text="Remove the stored token.")

    class Meta:
        model = GhlLocation
        fields = ["name", "location_id", "timezone", "default_calendar_id"]

    def save(self, commit=True):
        location = super().save(commit=False)
        if self.cleaned_data.get("clear_token"):
            location.token = ""
        elif self.cleaned_data.get("new_token"):
            location.token = self.cleaned_data["new_token"]
        if commit:
            location.save()
        return location


@admin.register(GhlLocation)
class GhlLocationAdmin(admin.ModelAdmin):
    form = GhlLocationForm
    list_display = ["name", "location_id", "timezone", "default_calendar_id", "agent_count", "token_status"]
    search_fields = ["name", "location_id", "default_calendar_id"]
    list_filter = ["timezone"]
    fields = ["name", "location_id", "timezone", "default_calendar_id", "new_token", "clear_token"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(agent_count=Count("agents"))

    @admin.display(description="Agents", ordering="agent_count")
    def agent_count(self, obj):
        url = reverse("admin:integrations_agent_changelist") + f"?location__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.agent_count)

    @admin.display(description="Token")
    def token_status(self, obj):
        if obj.token:
            return "stored (encrypted)"
        if obj.location_id == settings.GHL_LOCATION_ID and settings.GHL_API_TOKEN:
            return "from environment"
        return "not needed (GHL sandbox)" if settings.GHL_SANDBOX else "missing"


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "retell_agent_id",
        "role",
        "location",
        "is_active",
        "after_call",
        "create_unknown_contacts",
        "calls_link",
    ]
    list_filter = ["role", "is_active", "location", "create_unknown_contacts", "sync_transcript_note"]
    search_fields = ["name", "retell_agent_id", "workflow_id", "location__name", "location__location_id"]
    list_select_related = ["location"]
    formfield_overrides = PRETTY_JSON
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="After each call")
    def after_call(self, obj):
        """What the GHL sync does for this agent's calls, in a few words."""
        parts = []
        if obj.sync_transcript_note or obj.sync_summary_note:
            parts.append("note")
        if obj.post_call_tags or obj.tag_call_outcome:
            parts.append("tags")
        if obj.workflow_id:
            parts.append(f"workflow {obj.workflow_id}")
        if obj.analysis_custom_fields:
            parts.append(f"{len(obj.analysis_custom_fields)} custom field(s)")
        events = ", ".join(obj.events_to_process or []) or "no events"
        return f"{' + '.join(parts) or 'nothing'} (on {events})"

    @admin.display(description="Calls")
    def calls_link(self, obj):
        return format_html('<a href="{}?agent={}">calls ↗</a>', reverse("ui-call-list"), obj.pk)

    fieldsets = [
        (
            None,
            {"fields": ["name", "retell_agent_id", "retell_agent_version", "role", "location", "is_active"]},
        ),
        (
            "After each call (GHL sync)",
            {
                "fields": [
                    "events_to_process",
                    "sync_transcript_note",
                    "sync_summary_note",
                    "note_template",
                    "post_call_tags",
                    "tag_call_outcome",
                    "workflow_id",
                    "analysis_custom_fields",
                    "create_unknown_contacts",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]


# --- Outbound calls from GHL workflows ------------------------------------------------------------


class OutboundCampaignForm(forms.ModelForm):
    call_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Calling days",
        help_text="Used only when the window's opening and closing times are set.",
    )

    class Meta:
        model = OutboundCampaign
        fields = [
            "name",
            "slug",
            "enabled",
            "location",
            "agent",
            "agent_version",
            "from_number",
            "call_days",
            "call_start",
            "call_end",
            "call_timezone",
            "include_custom_data",
            "variable_mapping",
            "max_calls_per_contact_per_day",
            "redelivery_window_minutes",
        ]

    def clean_call_days(self):
        days = sorted(set(self.cleaned_data.get("call_days") or []))
        if not days and (self.data.get("call_start") or self.data.get("call_end")):
            raise forms.ValidationError("Pick at least one day for the calling window.")
        return days or default_call_days()


@admin.register(OutboundCampaign)
class OutboundCampaignAdmin(admin.ModelAdmin):
    form = OutboundCampaignForm
    list_display = [
        "name",
        "slug",
        "enabled",
        "agent",
        "location",
        "from_number",
        "calling_window_display",
        "max_calls_per_contact_per_day",
        "secret_hint",
    ]
    list_filter = ["enabled", "agent", "location"]
    search_fields = ["name", "slug", "from_number", "agent__name", "agent__retell_agent_id"]
    list_select_related = ["agent", "location"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["webhook_url", "secret_hint"]
    actions = ["rotate_secret"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "enabled", "webhook_url", "secret_hint"]}),
        ("Who calls", {"fields": ["location", "agent", "agent_version", "from_number"]}),
        ("When", {"fields": ["call_days", "call_start", "call_end", "call_timezone"]}),
        (
            "What the agent knows",
            {"fields": ["include_custom_data", "variable_mapping"]},
        ),
        ("Limits", {"fields": ["max_calls_per_contact_per_day", "redelivery_window_minutes"]}),
    ]

    @admin.display(description="Webhook URL")
    def webhook_url(self, obj):
        from integrations.outbound.views import webhook_url

        return webhook_url(obj) if obj.pk else "(after saving)"

    @admin.display(description="Calling window")
    def calling_window_display(self, obj):
        return str(obj.calling_window) if obj.calling_window else "any time"

    def save_model(self, request, obj, form, change):
        secret = None if change and obj.secret_hash else obj.set_new_secret()
        super().save_model(request, obj, form, change)
        if secret:
            self._show_secret_once(request, obj, secret)

    @admin.action(description="Rotate secret (the old one stops working)")
    def rotate_secret(self, request, queryset):
        for campaign in queryset:
            secret = campaign.set_new_secret()
            campaign.save(update_fields=["secret_hash", "secret_hint", "updated_at"])
            self._show_secret_once(request, campaign, secret)

    def _show_secret_once(self, request, campaign, secret):
        # The only time the secret exists in clear outside GHL: we keep just its hash.
        from integrations.outbound.views import SECRET_HEADER, webhook_url

        self.message_user(
            request,
            f"Secret for {campaign.slug} (shown only now, copy it into GHL): {secret}  ·  "
            f"Webhook URL: {webhook_url(campaign)}  ·  send the secret as the {SECRET_HEADER} header, "
            f"or append ?token=<secret> to the URL.",
            level=messages.WARNING,
        )


@admin.register(OutboundCallRequest)
class OutboundCallRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "campaign",
        "ghl_contact_id",
        "to_number",
        "status",
        "scheduled_for",
        "attempts",
        "retell_call_id",
        "last_error",
    ]
    list_filter = ["status", "campaign", HasErrorFilter]
    search_fields = ["ghl_contact_id", "to_number", "retell_call_id", "ghl_workflow_id", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["campaign"]
    actions = ["retry_selected"]
    exclude = ["payload", "dynamic_variables"]
    readonly_fields = ["payload_json", "dynamic_variables_json"]

    @admin.display(description="GHL payload (as received)")
    def payload_json(self, obj):
        return pretty_json(obj.payload)

    @admin.display(description="Dynamic variables sent to Retell")
    def dynamic_variables_json(self, obj):
        return pretty_json(obj.dynamic_variables)

    @admin.action(description="Retry selected (failed, or stuck dialing)")
    def retry_selected(self, request, queryset):
        from integrations.outbound.services import outbound_requests_retry

        count = outbound_requests_retry(queryset)
        self.message_user(request, f"{count} outbound request(s) queued for a new attempt.")


@admin.register(ToolDefinition)
class ToolDefinitionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "handler",
        "location",
        "enabled",
        "expose_as_custom_function",
        "expose_over_mcp",
        "agent_count",
        "updated_at",
    ]
    list_filter = ["enabled", "handler", "expose_as_custom_function", "expose_over_mcp", "location"]
    search_fields = ["name", "description", "handler"]
    list_select_related = ["location"]
    filter_horizontal = ["agents"]
    readonly_fields = ["handler_defaults", "retell_json", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "handler", "enabled", "description", "location", "agents"]}),
        ("Arguments and configuration", {"fields": ["config", "argument_schema", "handler_defaults"]}),
        ("Exposure", {"fields": ["expose_as_custom_function", "expose_over_mcp"]}),
        (
            "Retell custom function",
            {
                "fields": [
                    "speak_during_execution",
                    "execution_message",
                    "speak_after_execution",
                    "timeout_ms",
                    "retell_json",
                ]
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(agents_count=Count("agents"))

    @admin.display(description="Agents", ordering="agents_count")
    def agent_count(self, obj):
        return obj.agents_count or "all"

    @admin.display(description="Handler defaults")
    def handler_defaults(self, obj):
        spec = obj.handler_spec if obj.pk else None
        if spec is None:
            return "Save to see the handler's default description, argument schema and configuration keys."
        return pretty_json(
            {
                "description": spec.description,
                "argument_schema": spec.default_schema(obj.config or {}),
                "config_schema": spec.config,
            }
        )

    @admin.display(description="Retell custom-function JSON")
    def retell_json(self, obj):
        if not obj.pk:
            return "-"
        from integrations.tools.retell_export import retell_custom_function

        return pretty_json(retell_custom_function(obj))


# --- MCP tool server -----------------------------------------------------------------------------


class McpTokenForm(forms.ModelForm):
    class Meta:
        model = McpToken
        fields = ["name", "location", "enabled", "tools"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only tools the server can serve; the model's help text says what an empty choice means.
        self.fields["tools"].queryset = ToolDefinition.objects.mcp_tools().select_related("location")

    def clean(self):
        cleaned = super().clean()
        location, tools = cleaned.get("location"), cleaned.get("tools")
        if location is not None and tools:
            elsewhere = sorted(tool.name for tool in tools if tool.location_id not in (None, location.pk))
            if elsewhere:
                self.add_error(
                    "tools",
                    f"{', '.join(elsewhere)} act(s) on another GHL location, so this token could never "
                    "use them. Pick the token's location or other tools.",
                )
        return cleaned


@admin.register(McpToken)
class McpTokenAdmin(admin.ModelAdmin):
    form = McpTokenForm
    list_display = ["name", "location", "enabled", "token_hint", "tool_scope", "last_used_at", "created_at"]
    list_filter = ["enabled", "location"]
    search_fields = ["name", "token_hint", "location__name", "location__location_id"]
    list_select_related = ["location"]
    filter_horizontal = ["tools"]
    readonly_fields = ["token_hint", "retell_entry", "last_used_at", "created_at", "updated_at"]
    fields = [
        "name",
        "location",
        "enabled",
        "tools",
        "token_hint",
        "retell_entry",
        "last_used_at",
        "created_at",
        "updated_at",
    ]
    actions = ["rotate_token"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tools_count=Count("tools"))

    @admin.display(description="Tools", ordering="tools_count")
    def tool_scope(self, obj):
        return obj.tools_count or "all MCP tools"

    @admin.display(description="Retell agent: mcps entry")
    def retell_entry(self, obj):
        if not obj.pk:
            return "(after saving)"
        from integrations.mcp.retell_export import retell_mcps_entry

        return pretty_json(retell_mcps_entry(obj))

    def save_model(self, request, obj, form, change):
        secret = None if change and obj.token_hash else obj.set_new_token()
        super().save_model(request, obj, form, change)
        if secret:
            self._show_token_once(request, obj, secret)

    @admin.action(description="Rotate token (the old one stops working)")
    def rotate_token(self, request, queryset):
        for token in queryset:
            secret = token.set_new_token()
            token.save(update_fields=["token_hash", "token_hint", "updated_at"])
            self._show_token_once(request, token, secret)

    def _show_token_once(self, request, token, secret):
        # The only time the token exists in clear on our side: we keep just its hash.
        import json

        from integrations.mcp.retell_export import retell_mcps_entry

        entry = json.dumps(retell_mcps_entry(token, secret), ensure_ascii=False)
        self.message_user(
            request,
            f"Token for {token.name} (shown only now, copy it): {secret}  ·  Retell LLM mcps entry: {entry}",
            level=messages.WARNING,
        )


# The GHL sandbox's tables (integrations/sandbox/admin.py).
from integrations.sandbox import admin as sandbox_admin  # noqa: E402,F401
