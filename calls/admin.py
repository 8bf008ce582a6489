import json

from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from calls.models import Call, CallEvent, GhlSyncTask, RoutingDecision, ToolInvocation


def pretty_json(value):
    return format_html(
        "<pre style='white-space:pre-wrap;max-height:40em;overflow:auto'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Log rows are written by the system; operators read them (and retry sync tasks)."""

    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def call_page_link(call_id):
    """A link to the call's page in the operator UI (transcript, events, sync tasks together)."""
    if not call_id:
        return "–"
    return format_html('<a href="{}">{}</a>', reverse("ui-call-detail", args=[call_id]), call_id)


class CallEventInline(admin.TabularInline):
    model = CallEvent
    fields = ["event", "received_at", "delivery_count", "status", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).defer("raw_body")  # megabytes per event


class GhlSyncTaskInline(admin.TabularInline):
    model = GhlSyncTask
    fields = ["kind", "status", "attempts", "next_attempt_at", "ghl_id", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class RoutingDecisionInline(admin.TabularInline):
    model = RoutingDecision
    fields = ["created_at", "rule_name", "lookup", "ghl_failed", "override_agent_id", "elapsed_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = [
        "call_id",
        "started_at",
        "direction",
        "from_number",
        "to_number",
        "agent",
        "status",
        "duration_ms",
        "user_sentiment",
        "call_successful",
        "ghl_sync_status",
    ]
    list_filter = ["direction", "status", "ghl_sync_status", "user_sentiment", "call_successful", "agent"]
    search_fields = ["call_id", "from_number", "to_number", "ghl_contact_id", "agent_name"]
    date_hierarchy = "started_at"
    list_select_related = ["agent"]

    def get_queryset(self, request):
        calls = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # The list shows none of these; word-level transcripts weigh megabytes per call.
            calls = calls.defer(
                "transcript", "transcript_object", "transcript_with_tool_calls", "call_analysis", "call_cost"
            )
        return calls

    inlines = [CallEventInline, GhlSyncTaskInline, RoutingDecisionInline]
    exclude = ["transcript_object", "transcript_with_tool_calls", "call_analysis", "call_cost"]
    readonly_fields = ["analysis_json", "cost_json", "tool_invocations"]

    @admin.display(description="Call analysis")
    def analysis_json(self, obj):
        return pretty_json(obj.call_analysis)

    @admin.display(description="Cost")
    def cost_json(self, obj):
        return pretty_json(obj.call_cost)

    @admin.display(description="In-call tools")
    def tool_invocations(self, obj):
        # Keyed by call_id, not a foreign key: tools run while the call is live, often before the
        # call_started webhook has created this row.
        invocations = ToolInvocation.objects.filter(call_id=obj.call_id).order_by("created_at")
        rows = format_html_join(
            "",
            "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:calls_toolinvocation_change", args=[invocation.pk]),
                    invocation.tool_name,
                    timezone.localtime(invocation.created_at).strftime("%H:%M:%S"),
                    invocation.status,
                    invocation.error_code or "-",
                    f"{invocation.latency_ms:.0f} ms" if invocation.latency_ms is not None else "-",
                )
                for invocation in invocations
            ),
        )
        if not rows:
            return "None"
        return format_html(
            "<table><tr><th>Tool</th><th>At</th><th>Status</th><th>Error</th><th>Latency</th></tr>{}</table>",
            rows,
        )


@admin.register(CallEvent)
class CallEventAdmin(ReadOnlyAdmin):
    list_display = ["event", "call_page", "received_at", "delivery_count", "status"]
    list_filter = ["event", "status"]
    search_fields = ["retell_call_id", "event", "dedupe_key"]
    date_hierarchy = "received_at"
    exclude = ["raw_body"]
    readonly_fields = ["payload_json"]

    def get_queryset(self, request):
        events = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            events = events.defer("raw_body")
        return events

    @admin.display(description="Call", ordering="retell_call_id")
    def call_page(self, obj):
        return call_page_link(obj.retell_call_id) if obj.call_id else obj.retell_call_id or "–"

    @admin.display(description="Payload (as received)")
    def payload_json(self, obj):
        return (
            pretty_json(obj.payload)
            if obj.payload is not None
            else format_html("<pre>{}</pre>", obj.raw_body)
        )


@admin.register(ToolInvocation)
class ToolInvocationAdmin(ReadOnlyAdmin):
    list_display = [
        "tool_name",
        "call_page",
        "source",
        "mcp_token",
        "status",
        "error_code",
        "latency_ms",
        "duplicate_count",
        "created_at",
    ]
    list_filter = ["tool_name", "source", "status", "success", "error_code", "mcp_token"]
    search_fields = ["call_id", "tool_name", "agent_id", "error", "error_code", "mcp_token__name"]
    list_select_related = ["mcp_token"]
    date_hierarchy = "created_at"
    exclude = ["arguments", "result"]
    readonly_fields = ["arguments_json", "result_json"]

    @admin.display(description="Call", ordering="call_id")
    def call_page(self, obj):
        return call_page_link(obj.call_id)

    @admin.display(description="Arguments")
    def arguments_json(self, obj):
        return pretty_json(obj.arguments)

    @admin.display(description="Result")
    def result_json(self, obj):
        return pretty_json(obj.result)


class HasErrorFilter(admin.SimpleListFilter):
    title = "has error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(last_error="")
        if self.value() == "no":
            return queryset.filter(last_error="")
        return queryset


@admin.register(GhlSyncTask)
class GhlSyncTaskAdmin(ReadOnlyAdmin):
    list_display = [
        "dedupe_key",
        "call_page",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "ghl_id",
        "last_error",
    ]
    list_filter = ["status", "kind", HasErrorFilter]
    search_fields = ["dedupe_key", "call__call_id", "ghl_id", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["call"]
    actions = ["retry_selected"]
    exclude = ["payload"]
    readonly_fields = ["payload_json"]

    @admin.display(description="Payload")
    def payload_json(self, obj):
        return pretty_json(obj.payload)

    @admin.display(description="Call")
    def call_page(self, obj):
        return call_page_link(obj.call.call_id if obj.call else "")

    @admin.action(description="Retry selected")
    def retry_selected(self, request, queryset):
        from calls import outbox

        count = outbox.retry_tasks(queryset.exclude(status=GhlSyncTask.Status.RUNNING), now=timezone.now())
        self.message_user(request, f"{count} sync task(s) queued for retry.")


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "event",
        "from_number",
        "to_number",
        "contact_name",
        "rule_name",
        "rejected",
        "lookup",
        "from_cache",
        "ghl_failed",
        "override_agent_id",
        "elapsed_ms",
        "call",
    ]
    list_filter = ["event", "lookup", "ghl_failed", "rejected", "from_cache", "matched_rule", "location"]
    search_fields = [
        "from_number",
        "to_number",
        "ghl_contact_id",
        "contact_name",
        "rule_name",
        "call__call_id",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["call"]
    exclude = ["answer"]
    readonly_fields = ["answer_json"]

    @admin.display(description="Answer sent to Retell")
    def answer_json(self, obj):
        return pretty_json(obj.answer)
