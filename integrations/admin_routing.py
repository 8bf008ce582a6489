"""Admin for inbound routing: numbers we own, routing rules, and the routing tester.

The tester runs `integrations.routing.route_inbound` (the webhook's own service, with a real GHL lookup)
without recording a decision, and shows the matched rule, the contact and the exact JSON answer.
"""

import json
import zoneinfo
from datetime import datetime

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from integrations import routing
from integrations.models import GhlLocation, PhoneNumber, RoutingRule, validate_timezone
from integrations.phones import InvalidPhoneNumber, to_e164


class LinesField(forms.CharField):
    """A list of short strings edited as text: one per line (commas also separate)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]

    def has_changed(self, initial, data):
        return self.to_python(initial or []) != self.to_python(data)


class RoutingRuleForm(forms.ModelForm):
    dialled_numbers = LinesField(required=False, help_text="Only calls to these numbers (one per line).")
    caller_numbers = LinesField(required=False, help_text="Caller is one of these, e.g. a block list.")
    caller_prefixes = LinesField(required=False, help_text="Caller starts with one of these, e.g. +1900.")
    tags_any = LinesField(required=False, label="Tags (any)", help_text="Contact has at least one, e.g. vip.")
    tags_all = LinesField(required=False, label="Tags (all)", help_text="Contact has every one.")
    days = forms.TypedMultipleChoiceField(
        choices=RoutingRule.Weekday.choices,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Days the window starts on. None ticked: every day.",
    )

    class Meta:
        model = RoutingRule
        fields = [
            *["name", "priority", "enabled", "description", "location", "dialled_numbers", "channel"],
            *["caller_numbers", "caller_prefixes", "contact_status", "tags_any", "tags_all"],
            *["custom_field_id", "custom_field_value", "days", "start_time", "end_time", "timezone"],
            *["action", "agent", "agent_version", "dynamic_variables", "metadata"],
        ]


def describe_conditions(rule):
    """A one-line human summary of a rule's conditions for the changelist."""
    parts = []
    if rule.location_id:
        parts.append(f"location {rule.location.name}")
    if rule.channel != RoutingRule.Channel.ANY:
        parts.append(rule.get_channel_display().lower())
    if rule.dialled_numbers:
        parts.append(f"to {', '.join(rule.dialled_numbers)}")
    if rule.caller_numbers:
        parts.append(f"caller in {len(rule.caller_numbers)} number(s)")
    if rule.caller_prefixes:
        parts.append(f"caller starts {' / '.join(rule.caller_prefixes)}")
    if rule.contact_status != RoutingRule.ContactStatus.ANY:
        parts.append(f"contact {rule.get_contact_status_display().lower()}")
    if rule.tags_any:
        parts.append(f"any tag {', '.join(rule.tags_any)}")
    if rule.tags_all:
        parts.append(f"all tags {', '.join(rule.tags_all)}")
    if rule.custom_field_id:
        parts.append(f"{rule.custom_field_id} = {rule.custom_field_value!r}")
    if rule.has_time_window:
        labels = dict(RoutingRule.Weekday.choices)
        days = ",".join(labels[day] for day in rule.days) if rule.days else "every day"
        hours = f" {rule.start_time:%H:%M}–{rule.end_time:%H:%M}" if rule.start_time else ""
        parts.append(f"{days}{hours} {rule.timezone or '(location time)'}")
    return " · ".join(parts) or "always (catch-all)"


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["number", "label", "location", "default_agent", "updated_at"]
    list_filter = ["location", "default_agent"]
    search_fields = ["number", "label"]
    list_select_related = ["location", "default_agent"]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    form = RoutingRuleForm
    change_list_template = "admin/integrations/routingrule/change_list.html"
    list_display = ["name", "priority", "enabled", "conditions", "outcome", "updated_at"]
    list_display_links = ["name"]
    list_editable = ["priority", "enabled"]
    list_filter = ["enabled", "action", "channel", "contact_status", "location", "agent"]
    search_fields = ["name", "description", "custom_field_id", "agent__name", "agent__retell_agent_id"]
    list_select_related = ["location", "agent"]
    ordering = ["priority", "id"]
    actions = ["enable_selected", "disable_selected"]
    fieldsets = [
        (None, {"fields": ["name", "priority", "enabled", "description"]}),
        ("Scope", {"fields": ["location", "dialled_numbers", "channel"]}),
        ("Caller", {"fields": ["caller_numbers", "caller_prefixes"]}),
        (
            "GHL contact",
            {
                "fields": ["contact_status", "tags_any", "tags_all", "custom_field_id", "custom_field_value"],
                "description": "Rules with contact conditions are skipped when the GHL lookup fails.",
            },
        ),
        ("Time window", {"fields": ["days", "start_time", "end_time", "timezone"]}),
        ("Action", {"fields": ["action", "agent", "agent_version", "dynamic_variables", "metadata"]}),
    ]

    @admin.display(description="Conditions")
    def conditions(self, obj):
        return describe_conditions(obj)

    @admin.display(description="Action")
    def outcome(self, obj):
        if obj.is_reject:
            return "reject"
        route = f"→ {obj.agent.name}" if obj.agent_id else "default route"
        extra = f" + {len(obj.dynamic_variables)} variable(s)" if obj.dynamic_variables else ""
        return route + extra

    @admin.action(description="Enable selected rules")
    def enable_selected(self, request, queryset):
        # updated_at by hand: update() skips auto_now, and live routing notices changes by it.
        count = queryset.update(enabled=True, updated_at=timezone.now())
        self.message_user(request, f"{count} rule(s) enabled.")

    @admin.action(description="Disable selected rules")
    def disable_selected(self, request, queryset):
        count = queryset.update(enabled=False, updated_at=timezone.now())
        self.message_user(request, f"{count} rule(s) disabled.")

    def get_urls(self):
        tester = path(
            "test/", self.admin_site.admin_view(self.routing_tester), name="integrations_routingrule_test"
        )
        return [tester, *super().get_urls()]

    def routing_tester(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RoutingTesterForm(request.GET or None)
        result = when = None
        if form.is_valid():
            data = form.cleaned_data
            when = form.when()
            result = routing.route_inbound(
                event=data["event"],
                from_number=data["from_number"],
                to_number=data["to_number"],
                agent_id=data["agent_id"],
                now=when,
                record=False,
                use_cache=not data["fresh"],
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Test inbound routing",
            "form": form,
            "result": result,
            "when": when,
            "answer_json": json.dumps(result.answer, indent=2, ensure_ascii=False) if result else "",
            "numbers": PhoneNumber.objects.select_related("location"),
        }
        return TemplateResponse(request, "admin/integrations/routingrule/test_routing.html", context)


def _default_tester_timezone():
    location = GhlLocation.objects.filter(location_id=settings.GHL_LOCATION_ID).first()
    return location.timezone if location else timezone.get_default_timezone_name()


class RoutingTesterForm(forms.Form):
    from_number = forms.CharField(label="Caller number", max_length=64)
    to_number = forms.CharField(
        label="Dialled number", max_length=64, widget=forms.TextInput(attrs={"list": "routing-numbers"})
    )
    event = forms.ChoiceField(
        label="Channel",
        choices=[("call_inbound", "Phone call (call_inbound)"), ("chat_inbound", "SMS (chat_inbound)")],
        initial="call_inbound",
    )
    date = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Empty: today"
    )
    time = forms.TimeField(
        required=False, widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"), help_text="Empty: now"
    )
    timezone = forms.CharField(
        max_length=64, validators=[validate_timezone], help_text="IANA, e.g. America/New_York"
    )
    agent_id = forms.CharField(
        label="Number's Retell agent id",
        required=False,
        max_length=128,
        help_text="Optional: what Retell sends as agent_id (locates numbers without a row of their own).",
    )
    fresh = forms.BooleanField(label="Skip the contact cache", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].initial = _default_tester_timezone()

    def clean_from_number(self):
        # As Retell would send it: anything non-empty. A withheld caller routes as "no contact".
        return self.cleaned_data["from_number"].strip()

    def clean_to_number(self):
        try:
            return to_e164(self.cleaned_data["to_number"])
        except InvalidPhoneNumber as exc:
            raise ValidationError(str(exc)) from exc

    def when(self):
        """The moment to test, read in the chosen time zone (missing parts: the current ones there)."""
        zone = zoneinfo.ZoneInfo(self.cleaned_data["timezone"])
        current = timezone.now().astimezone(zone)
        date = self.cleaned_data.get("date") or current.date()
        clock = self.cleaned_data.get("time") or current.time().replace(tzinfo=None)
        return datetime.combine(date, clock, tzinfo=zone)
