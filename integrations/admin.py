import json

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html

from integrations.models import Agent, GhlLocation, ToolDefinition


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
    list_display = ["name", "location_id", "timezone", "default_calendar_id", "token_status"]
    search_fields = ["name", "location_id"]
    list_filter = ["timezone"]
    fields = ["name", "location_id", "timezone", "default_calendar_id", "new_token", "clear_token"]

    @admin.display(description="Token")
    def token_status(self, obj):
        if obj.token:
            return "stored (encrypted)"
        return "from environment" if obj.has_token else "missing"


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "retell_agent_id", "role", "location", "is_active", "create_unknown_contacts"]
    list_filter = ["role", "is_active", "location", "create_unknown_contacts"]
    search_fields = ["name", "retell_agent_id"]
    list_select_related = ["location"]
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
    ]


def _pretty_json(value):
    return format_html(
        "<pre style='white-space:pre-wrap;max-height:40em;overflow:auto'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False),
    )


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
        return _pretty_json(
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

        return _pretty_json(retell_custom_function(obj))
