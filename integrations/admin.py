from django import forms
from django.conf import settings
from django.contrib import admin

from integrations.models import Agent, GhlLocation


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
        if obj.location_id == settings.GHL_LOCATION_ID and settings.GHL_API_TOKEN:
            return "from environment"
        return "not needed (GHL sandbox)" if settings.GHL_SANDBOX else "missing"


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


# The GHL sandbox's tables (integrations/sandbox/admin.py).
from integrations.sandbox import admin as sandbox_admin  # noqa: E402,F401
