"""Forms of the operator UI: the call list filters."""

import zoneinfo
from datetime import datetime, time, timedelta

from django import forms
from django.utils.html import format_html, format_html_join

from calls.models import Call
from integrations.models import Agent, RoutingRule

SENTIMENTS = ["Positive", "Neutral", "Negative", "Unknown"]


class AgentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.name  # only the name is loaded (Agent.__str__ would fetch the id per option)


class RoutingRuleInput(forms.TextInput):
    """Free text (a call keeps the name its rule had then, even if the rule was renamed since),
    suggesting today's rule names from a <datalist>."""

    def __init__(self, attrs=None):
        super().__init__({"placeholder": "Routing rule", "list": "routing-rule-names", **(attrs or {})})

    def render(self, name, value, attrs=None, renderer=None):
        names = RoutingRule.objects.order_by("priority", "name").values_list("name", flat=True)
        options = format_html_join("", '<option value="{}">', ((rule,) for rule in names))
        field = super().render(name, value, attrs, renderer)
        return format_html('{}<datalist id="routing-rule-names">{}</datalist>', field, options)


class CallFilterForm(forms.Form):
    """The call list's filters, read from the query string. Invalid values are reported and ignored."""

    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "Phone, name, call id or words said", "type": "search", "autofocus": True}
        ),
    )
    agent = AgentChoiceField(
        queryset=Agent.objects.only("id", "name").order_by("name"), required=False, empty_label="Any agent"
    )
    direction = forms.ChoiceField(choices=[("", "Any direction"), *Call.Direction.choices], required=False)
    status = forms.ChoiceField(choices=[("", "Any status"), *Call.Status.choices], required=False)
    sentiment = forms.ChoiceField(
        choices=[("", "Any sentiment"), *[(s, s) for s in SENTIMENTS]], required=False
    )
    success = forms.ChoiceField(
        label="Outcome",
        choices=[
            ("", "Any outcome"),
            ("yes", "Successful"),
            ("no", "Unsuccessful"),
            ("unknown", "Not analysed"),
        ],
        required=False,
    )
    sync = forms.ChoiceField(
        label="GHL sync", choices=[("", "Any sync state"), *Call.SyncStatus.choices], required=False
    )
    routing_rule = forms.CharField(required=False, max_length=200, widget=RoutingRuleInput)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "Must be on or after the start date.")
            cleaned.pop("date_from", None)  # an impossible range filters nothing rather than everything
        return cleaned

    def filters(self, tz: zoneinfo.ZoneInfo):
        """The valid filters as the selector takes them; dates are whole days in timezone `tz`."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        filters = {
            "q": data.get("q", ""),
            "agent": data.get("agent"),
            "direction": data.get("direction"),
            "status": data.get("status"),
            "sentiment": data.get("sentiment"),
            "success": data.get("success"),
            "ghl_sync_status": data.get("sync"),
            "routing_rule": (data.get("routing_rule") or "").strip(),
        }
        if data.get("date_from"):
            filters["since"] = datetime.combine(data["date_from"], time.min, tzinfo=tz)
        if data.get("date_to"):
            filters["until"] = datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=tz)
        return filters

    @property
    def active_count(self):
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return sum(1 for name, value in data.items() if name != "q" and value not in (None, ""))
