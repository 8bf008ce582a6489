import json

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from integrations.models import Agent, GhlLocation


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
        return "from environment" if obj.has_token else "missing"


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
