"""The call log: every call Retell told us about, every delivery it made, and what we did in GHL."""

import json
import uuid

from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.urls import reverse


class Call(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"
        WEB = "web", "Web call"

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        NOT_CONNECTED = "not_connected", "Not connected"
        ONGOING = "ongoing", "Ongoing"
        ENDED = "ended", "Ended"
        ERROR = "error", "Error"

    class SyncStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        SYNCED = "synced", "Synced"
        FAILED = "failed", "Failed"
        NO_CONTACT = "no_contact", "No contact"
        SKIPPED = "skipped", "Skipped"

    call_id = models.CharField(max_length=128, unique=True)
    agent = models.ForeignKey(
        "integrations.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    retell_agent_id = models.CharField(max_length=128, blank=True, db_index=True)
    agent_version = models.IntegerField(null=True, blank=True)
    agent_name = models.CharField(max_length=200, blank=True)
    location = models.ForeignKey(
        "integrations.GhlLocation", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    call_type = models.CharField(max_length=32, blank=True)  # phone_call | web_call
    direction = models.CharField(max_length=16, choices=Direction.choices, blank=True)
    from_number = models.CharField(max_length=32, blank=True, db_index=True)
    to_number = models.CharField(max_length=32, blank=True, db_index=True)
    status = models.CharField(max_length=32, choices=Status.choices, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    disconnection_reason = models.CharField(max_length=64, blank=True)

    transcript = models.TextField(blank=True)
    transcript_object = models.JSONField(null=True, blank=True)  # [{role, content, words}]
    transcript_with_tool_calls = models.JSONField(null=True, blank=True)

    call_analysis = models.JSONField(null=True, blank=True)  # verbatim, for fields we do not model
    summary = models.TextField(blank=True)
    user_sentiment = models.CharField(max_length=16, blank=True)
    call_successful = models.BooleanField(null=True, blank=True)
    in_voicemail = models.BooleanField(null=True, blank=True)
    custom_analysis_data = models.JSONField(null=True, blank=True)

    recording_url = models.URLField(max_length=1000, blank=True)
    public_log_url = models.URLField(max_length=1000, blank=True)
    dynamic_variables = models.JSONField(default=dict, blank=True)
    collected_dynamic_variables = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    call_cost = models.JSONField(null=True, blank=True)
    combined_cost_cents = models.FloatField(null=True, blank=True)

    ghl_contact_id = models.CharField(max_length=64, blank=True, db_index=True)
    ghl_sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.PENDING, db_index=True
    )
    ghl_sync_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the call happened: its start, or when we first heard of it for calls that never started
    # (a failed dial has no start_timestamp). Computed by the database, never NULL, so the call list
    # and the dashboard can order and range-scan one index on every backend.
    occurred_at = models.GeneratedField(
        expression=Coalesce(F("started_at"), F("created_at")),
        output_field=models.DateTimeField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-started_at", "-created_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="call_started_desc"),
            models.Index(fields=["agent", "-started_at"], name="call_agent_started"),
            models.Index(fields=["direction", "-started_at"], name="call_direction_started"),
            # The operator UI's call list: newest first, keyset-paginated on (occurred_at, id).
            models.Index(fields=["-occurred_at", "-id"], name="call_occurred_desc"),
            models.Index(fields=["agent", "-occurred_at", "-id"], name="call_agent_occurred"),
            # Selective filters that would otherwise walk the whole time index (few failed calls).
            models.Index(fields=["ghl_sync_status", "-occurred_at", "-id"], name="call_sync_occurred"),
            models.Index(fields=["status", "-occurred_at", "-id"], name="call_status_occurred"),
            # The routing rule Retell copied from our inbound answer's metadata (used by PostgreSQL).
            models.Index(
                KeyTextTransform("routing_rule", "metadata"),
                F("occurred_at").desc(),
                F("id").desc(),
                name="call_routing_rule",
            ),
        ]
        # On PostgreSQL only, migration 0004 also adds (outside the model state) the search_document
        # full-text column of the call list search and pg_trgm indexes on the numbers.

    def __str__(self):
        return self.call_id

    def get_absolute_url(self):
        return reverse("ui-call-detail", args=[self.call_id])

    @property
    def caller_number(self):
        """The customer's number: who called us, or whom we called."""
        return self.to_number if self.direction == self.Direction.OUTBOUND else self.from_number


class CallEvent(models.Model):
    """One webhook delivery from Retell, kept verbatim. The audit trail: nothing is ever lost."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        INVALID = "invalid", "Invalid"
        FAILED = "failed", "Failed"

    call = models.ForeignKey(Call, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    # As sent by Retell; kept even when the delivery could not be attached to a Call (invalid body).
    retell_call_id = models.CharField(max_length=128, blank=True, db_index=True)
    event = models.CharField(max_length=64, blank=True, db_index=True)
    # Deduplication key: "<call_id>:<event>" (+ ":<start_timestamp>" for transfer events). NULL for
    # deliveries that are never deduplicated (transcript_updated, invalid bodies); the unique
    # constraint makes a concurrent duplicate fail on insert instead of racing a read.
    dedupe_key = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001 (NULL = not deduplicated)
    raw_body = models.TextField()  # exactly the bytes Retell sent, as UTF-8 text
    delivery_count = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(dedupe_key__isnull=False),
                name="callevent_unique_dedupe_key",
            )
        ]
        indexes = [
            # The sweeper's every-minute look for events whose processing was lost: only the few rows
            # still "received", not a day of events (transcript_updated alone is dozens per call).
            models.Index(
                fields=["received_at"], condition=Q(status="received"), name="callevent_awaiting_processing"
            )
        ]

    def __str__(self):
        return f"{self.event or '?'} {self.retell_call_id}".strip()

    @property
    def payload(self):
        """The parsed body, or None when it was not JSON. Parsed on demand: the raw text is the record."""
        try:
            return json.loads(self.raw_body)
        except ValueError:
            return None


class ToolInvocation(models.Model):
    """Every in-call tool call (custom function or MCP): what was asked, what we answered, how fast."""

    class Source(models.TextChoices):
        CUSTOM_FUNCTION = "custom_function", "Retell custom function"
        MCP = "mcp", "MCP"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    call_id = models.CharField(max_length=128, blank=True, db_index=True)  # the Call may not exist yet
    agent_id = models.CharField(max_length=128, blank=True, help_text="Retell agent that called the tool.")
    tool_name = models.CharField(max_length=64, db_index=True)
    handler = models.CharField(max_length=64, blank=True)
    definition = models.ForeignKey(
        "integrations.ToolDefinition",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invocations",
    )
    source = models.CharField(max_length=32, choices=Source.choices)
    mcp_token = models.ForeignKey(
        "integrations.McpToken",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invocations",
        help_text="The MCP client that called the tool (MCP calls only).",
    )
    arguments = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    success = models.BooleanField(null=True)
    error = models.TextField(blank=True)
    # The stable code the agent received ("slot_unavailable", "ghl_unavailable", ...); empty on success.
    error_code = models.CharField(max_length=64, blank=True, db_index=True)
    latency_ms = models.FloatField(null=True, blank=True)
    # Of latency_ms, the time spent waiting on GHL (requests sent → answers read): the rest is ours.
    ghl_ms = models.FloatField(null=True, blank=True)
    # Retries and concurrent duplicates answered from this invocation instead of acting again.
    duplicate_count = models.PositiveIntegerField(default=0)
    # Set for side-effecting calls within a live call: hash of (call_id, tool, arguments). Unique, so a
    # Retell retry or a concurrent duplicate finds the first invocation instead of acting again.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.tool_name} ({self.call_id or 'no call'})"


class GhlSyncTask(models.Model):
    """The outbox: one row per side effect to perform in GHL, retried with backoff until done or failed."""

    class Kind(models.TextChoices):
        CONTACT = "contact", "Resolve contact"
        NOTE = "note", "Call note"
        TAGS = "tags", "Tags"
        WORKFLOW = "workflow", "Workflow enrolment"
        CUSTOM_FIELDS = "custom_fields", "Custom fields"
        OPPORTUNITY = "opportunity", "Opportunity"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    call = models.ForeignKey(Call, null=True, blank=True, on_delete=models.CASCADE, related_name="sync_tasks")
    location = models.ForeignKey(
        "integrations.GhlLocation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # One row per side effect, e.g. "call:<call_id>:note": enforced by the database.
    dedupe_key = models.CharField(max_length=300, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set when new data arrives while the task runs: the worker then re-runs it instead of finishing.
    rerun_requested = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    ghl_id = models.CharField(max_length=64, blank=True, help_text="Id of what GHL created (e.g. the note).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "GHL sync task"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="synctask_due")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.dedupe_key} [{self.status}]"


class RoutingDecision(models.Model):
    """One answer to Retell's inbound webhook: who called, what GHL said, which rule won, how fast.

    The id is a UUID generated before the row is written so it can travel in the answer's metadata
    (`routing_decision_id`); Retell copies that metadata onto the call, which is how the post-call
    pipeline links the decision to its Call (`integrations.routing.link_routing_decision`).
    """

    class Lookup(models.TextChoices):
        FOUND = "found", "Contact found"
        NOT_FOUND = "not_found", "No such contact"
        FAILED = "failed", "GHL failed (fail-open)"
        SKIPPED = "skipped", "Not looked up"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=32)  # call_inbound | chat_inbound
    from_number = models.CharField(max_length=32, db_index=True)  # E.164 when it parsed, else as sent
    to_number = models.CharField(max_length=32, db_index=True)
    retell_agent_id = models.CharField(max_length=128, blank=True)  # the number's own agent, if any
    location = models.ForeignKey(
        "integrations.GhlLocation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ghl_contact_id = models.CharField(max_length=64, blank=True, db_index=True)
    contact_name = models.CharField(max_length=200, blank=True)
    lookup = models.CharField(max_length=16, choices=Lookup.choices)
    from_cache = models.BooleanField(default=False)
    ghl_failed = models.BooleanField(default=False, db_index=True)
    ghl_error = models.TextField(blank=True)
    matched_rule = models.ForeignKey(
        "integrations.RoutingRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    rule_name = models.CharField(max_length=200, blank=True)  # kept when the rule is renamed or deleted
    rejected = models.BooleanField(default=False)
    override_agent_id = models.CharField(max_length=128, blank=True)
    answer = models.JSONField()  # exactly what we answered Retell
    elapsed_ms = models.FloatField()  # request arrival → answer built (this row's own insert excluded)
    call = models.ForeignKey(
        Call, null=True, blank=True, on_delete=models.SET_NULL, related_name="routing_decisions"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.from_number} → {self.to_number}: {self.rule_name or 'default route'}"
