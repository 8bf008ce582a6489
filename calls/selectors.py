"""Reads for the operator UI: the call list (filters, search, pagination), one call's page, the dashboard.

Built for a call log of 100k+ rows:
- The list is ordered by (occurred_at, id) descending and keyset-paginated on that pair, so page 500
  costs what page 1 costs, and it never counts the whole table (`bounded_count` stops at 1,000).
- Every filter is backed by an index on PostgreSQL (see migration 0004_ui_indexes): the time index
  serves the common filters (direction, sentiment, success, date range) by walking newest-first;
  selective ones (agent, sync state, status, routing rule) have their own (x, occurred_at, id) index.
- Search is one box: exact call id / contact id / E.164 number, digits inside a number, contact name
  and transcript words (see `search_condition`). On PostgreSQL each branch has an index (btree,
  pg_trgm for digits, a GIN full-text index for words); on SQLite the text branches are LIKE scans,
  fine for a laptop-sized log.
- List rows load only the columns shown: never the transcripts or word timings (megabytes per call).
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Avg, BooleanField, Count, F, Max, Q, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Length, NullIf, TruncDate
from django.shortcuts import get_object_or_404
from django.utils import timezone

from calls.models import Call, CallEvent, GhlSyncTask, RoutingDecision, ToolInvocation
from integrations.phones import to_e164_or_none

PAGE_SIZE = 50
COUNT_LIMIT = 1000
# Retell copies the `metadata` of our inbound answer onto the call; the router names its rule here.
ROUTING_RULE_KEY = "routing_rule"
# Dynamic variable holding the caller's name (set by inbound routing from the GHL contact).
CONTACT_NAME_KEY = "customer_name"
# Raw webhook bodies up to this size are shown inline on the call page, up to a total per page; the
# others (word timings of long calls weigh megabytes, and a call sends many transcript_updated
# snapshots) are linked instead, so the page stays light.
INLINE_EVENT_BYTES = 64 * 1024
INLINE_EVENTS_TOTAL_BYTES = 1024 * 1024

LIST_COLUMNS = [
    "call_id",
    "occurred_at",
    "started_at",
    "call_type",
    "direction",
    "from_number",
    "to_number",
    "status",
    "duration_ms",
    "disconnection_reason",
    "user_sentiment",
    "call_successful",
    "in_voicemail",
    "ghl_sync_status",
    "ghl_sync_error",
    "agent_name",
    "retell_agent_id",
    "agent__name",
]


# --- The call list ------------------------------------------------------------------------------


def call_list_queryset(filters):
    """Calls matching `filters` (the cleaned data of CallFilterForm), newest first, list columns only."""
    calls = (
        Call.objects.select_related("agent")
        .only(*LIST_COLUMNS)
        .alias(
            # Cast: compared as plain text on every backend (PostgreSQL drops the no-op cast and
            # still uses the call_routing_rule index on metadata ->> 'routing_rule').
            routing_rule_key=Cast(KeyTextTransform(ROUTING_RULE_KEY, "metadata"), TextField()),
        )
        .annotate(
            contact_name=KeyTextTransform(CONTACT_NAME_KEY, "dynamic_variables"),
            # Shown in the list. SQLite reads a JSON null as the text 'null', and every inbound call
            # no rule matched carries "routing_rule": null: show those as no rule, as PostgreSQL does.
            routing_rule=NullIf(F("routing_rule_key"), Value("null", output_field=TextField())),
        )
        .order_by("-occurred_at", "-id")
    )
    if filters.get("agent"):
        calls = calls.filter(agent=filters["agent"])
    for field in ("direction", "status", "ghl_sync_status"):
        if filters.get(field):
            calls = calls.filter(**{field: filters[field]})
    if filters.get("sentiment"):
        calls = calls.filter(user_sentiment__iexact=filters["sentiment"])
    if filters.get("success") in ("yes", "no"):
        calls = calls.filter(call_successful=filters["success"] == "yes")
    elif filters.get("success") == "unknown":
        calls = calls.filter(call_successful__isnull=True)
    if filters.get("routing_rule"):
        calls = calls.filter(routing_rule_key=filters["routing_rule"])
    if filters.get("since"):
        calls = calls.filter(occurred_at__gte=filters["since"])
    if filters.get("until"):
        calls = calls.filter(occurred_at__lt=filters["until"])
    if filters.get("q"):
        exact = identifier_condition(filters["q"])
        # A call id, contact id or full phone number that exists is what the operator meant: show
        # those calls, not every transcript that happens to mention it (and skip the text scan).
        if Call.objects.filter(exact).exists():
            calls = calls.filter(exact)
        else:
            calls = calls.filter(search_condition(filters["q"], vendor=connection.vendor))
    return calls


PHONE_CHARS = re.compile(r"^[\d\s()+.\-]+$")
WORDS = re.compile(r"[^\W_]")  # a letter or a digit


def identifier_condition(text):
    """Calls whose id, GHL contact id or (E.164) number is exactly `text`: btree lookups everywhere."""
    text = text.strip()
    condition = Q(call_id=text) | Q(ghl_contact_id=text)
    phone = to_e164_or_none(text) if PHONE_CHARS.match(text) else None
    if phone:
        condition |= Q(from_number=phone) | Q(to_number=phone)
    return condition


def search_condition(text, *, vendor):
    """One search box: which calls does `text` find? Each branch is an index lookup on PostgreSQL.

    Exact call id or GHL contact id always; then, by what the text looks like, a phone number (E.164
    exact, or digits inside a number) or words. Words are matched on PostgreSQL with full-text search
    over the contact name and the transcript (whole words, all of them, in any order, case-insensitive);
    on SQLite, as a substring of either (a LIKE scan).
    """
    text = text.strip()
    condition = identifier_condition(text)
    if PHONE_CHARS.match(text):
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 4:
            # Part of a number ("555 0123", or a local number E.164 parsing got wrong): numbers are
            # stored in E.164, so also match the digits anywhere inside them.
            condition |= Q(from_number__contains=digits) | Q(to_number__contains=digits)
        return condition
    if len(text) < 2 or not WORDS.search(text):
        return condition
    if vendor == "postgresql":
        # `search_document` is a PostgreSQL-only generated tsvector column with a GIN index (migration
        # 0004). Whole words, not prefixes: PostgreSQL estimates how common a word is from the column's
        # statistics, so it uses the index for rare words and walks the time index for common ones; it
        # cannot estimate prefix queries, and a wrong guess costs a walk over every call.
        matches = RawSQL(
            '"calls_call"."search_document" @@ plainto_tsquery(\'simple\', %s)', [text], BooleanField()
        )
        return condition | Q(matches)
    return condition | Q(contact_name__icontains=text) | Q(transcript__icontains=text)


@dataclass
class CallPage:
    calls: list
    older_cursor: str | None  # cursor for the next (older) page, None on the last page
    newer_cursor: str | None  # cursor for the previous (newer) page, None on the first page
    is_first: bool
    count: int
    count_is_lower_bound: bool


def call_page(calls, *, before=None, after=None, size=None):
    """One page of `calls` (ordered newest first) after keyset cursor `before` or `after`.

    Fetches size + 1 rows to know whether another page exists: no OFFSET, no COUNT(*) of the table.
    """
    size = size or PAGE_SIZE
    if after is not None:
        # Going back towards newer calls: read ascending from the cursor, then flip.
        rows = list(_newer_than(calls, after).order_by("occurred_at", "id")[: size + 1])
        has_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        has_older = True
    else:
        rows = list((_older_than(calls, before) if before is not None else calls)[: size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = before is not None
    count, capped = bounded_count(calls)
    return CallPage(
        calls=rows,
        older_cursor=encode_cursor(rows[-1]) if rows and has_older else None,
        newer_cursor=encode_cursor(rows[0]) if rows and has_newer else None,
        is_first=not has_newer,
        count=count,
        count_is_lower_bound=capped,
    )


def _older_than(calls, cursor):
    moment, pk = cursor
    # The redundant `occurred_at <= moment` gives PostgreSQL an index range to start from; the
    # exclusion breaks ties between calls of the same instant.
    return calls.filter(occurred_at__lte=moment).exclude(occurred_at=moment, id__gte=pk)


def _newer_than(calls, cursor):
    moment, pk = cursor
    return calls.filter(occurred_at__gte=moment).exclude(occurred_at=moment, id__lte=pk)


def bounded_count(calls, limit=None):
    """How many calls match, counting at most `limit` + 1 rows. Returns (count, is_lower_bound)."""
    limit = limit or COUNT_LIMIT
    count = calls.order_by().values("id")[: limit + 1].count()
    return min(count, limit), count > limit


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(call):
    micros = (call.occurred_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{call.pk}"


def decode_cursor(value):
    """(occurred_at, id) from a cursor string, or None when it is malformed (then: first page)."""
    micros, sep, pk = (value or "").partition(".")
    if not sep or not micros.lstrip("-").isdigit() or not pk.isdigit():
        return None
    try:
        return EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except OverflowError:
        return None


# --- One call -----------------------------------------------------------------------------------


def call_for_page(call_id):
    return get_object_or_404(Call.objects.select_related("agent", "location"), call_id=call_id)


def routing_decision_for(call):
    """The inbound routing decision that led to this call, or None."""
    return call.routing_decisions.order_by("-created_at").first()


def tool_invocations_for(call):
    return list(ToolInvocation.objects.filter(call_id=call.call_id).order_by("created_at", "id"))


def events_for(call):
    """Every webhook delivery for the call, oldest first; bodies only for those small enough to inline."""
    events = list(
        CallEvent.objects.filter(call=call)
        .defer("raw_body")
        .annotate(body_size=Length("raw_body"))
        .order_by("received_at", "id")
    )
    small, budget = [], INLINE_EVENTS_TOTAL_BYTES
    for event in events:
        size = event.body_size or 0
        if size <= INLINE_EVENT_BYTES and size <= budget:
            small.append(event.pk)
            budget -= size
    bodies = dict(CallEvent.objects.filter(pk__in=small).values_list("pk", "raw_body")) if small else {}
    for event in events:
        event.inline_body = bodies.get(event.pk)
    return events


def raw_event(call, event_id):
    return get_object_or_404(CallEvent.objects.only("raw_body", "call_id"), call=call, pk=event_id)


def sync_tasks_for(call):
    return list(call.sync_tasks.order_by("created_at", "id"))


def sync_task_of_call(call_id, task_id):
    return get_object_or_404(GhlSyncTask.objects.select_related("call"), pk=task_id, call__call_id=call_id)


# --- The dashboard -------------------------------------------------------------------------------

# A call "connected" when someone (or a voicemail box) was actually talked to.
NOT_CONNECTED_REASONS = ("dial_busy", "dial_failed", "dial_no_answer", "voicemail_reached")


def calls_per_day(*, days, now, tz):
    """[(date, total, inbound, outbound)] for the last `days` days in timezone `tz`, oldest first."""
    today = timezone.localtime(now, tz).date()
    first_day = today - timedelta(days=days - 1)
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=tz)
    rows = (
        Call.objects.filter(occurred_at__gte=start)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(
            total=Count("id"),
            inbound=Count("id", filter=Q(direction=Call.Direction.INBOUND)),
            outbound=Count("id", filter=Q(direction=Call.Direction.OUTBOUND)),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        row = by_day.get(day, {})
        result.append((day, row.get("total", 0), row.get("inbound", 0), row.get("outbound", 0)))
    return result


def agent_rates(*, since):
    """Per Retell agent since `since`: calls, connected and success rates. Busiest first."""
    connected = Q(status__in=[Call.Status.ENDED, Call.Status.ONGOING]) & ~Q(
        disconnection_reason__in=NOT_CONNECTED_REASONS
    )
    rows = (
        Call.objects.filter(occurred_at__gte=since)
        .exclude(retell_agent_id="")
        .values("retell_agent_id")
        .annotate(
            name=Max("agent__name"),
            retell_name=Max("agent_name"),
            total=Count("id"),
            connected=Count("id", filter=connected & ~Q(in_voicemail=True)),
            analysed=Count("id", filter=Q(call_successful__isnull=False)),
            successful=Count("id", filter=Q(call_successful=True)),
        )
        .order_by("-total", "retell_agent_id")
    )
    return [
        {
            **row,
            "label": row["name"] or row["retell_name"] or row["retell_agent_id"],
            "connected_rate": _rate(row["connected"], row["total"]),
            "success_rate": _rate(row["successful"], row["analysed"]),
        }
        for row in rows
    ]


def _rate(part, whole):
    return round(100 * part / whole) if whole else None


OVERDUE_AFTER = timedelta(minutes=10)  # the sweeper runs every minute: older than this, it is not running


def sync_attention(*, now, limit=10):
    """Failed sync tasks (newest first, up to `limit`) and counts of failed and overdue tasks."""
    failed = GhlSyncTask.Status.FAILED
    counts = GhlSyncTask.objects.filter(status__in=[failed, GhlSyncTask.Status.PENDING]).aggregate(
        failed=Count("id", filter=Q(status=failed)),
        overdue=Count(
            "id", filter=Q(status=GhlSyncTask.Status.PENDING, next_attempt_at__lt=now - OVERDUE_AFTER)
        ),
    )
    tasks = list(
        GhlSyncTask.objects.filter(status=failed, call__isnull=False)
        .select_related("call")
        .only("kind", "status", "attempts", "last_error", "updated_at", "call__call_id", "call__from_number")
        .order_by("-updated_at", "-id")[:limit]
    )
    return {"tasks": tasks, **counts}


def slowest_tools(*, since, limit=10):
    """Tools by average latency since `since`, with call and failure counts."""
    return list(
        ToolInvocation.objects.filter(created_at__gte=since, latency_ms__isnull=False)
        .values("tool_name")
        .annotate(
            calls=Count("id"),
            avg_ms=Avg("latency_ms"),
            max_ms=Max("latency_ms"),
            failures=Count("id", filter=Q(status=ToolInvocation.Status.FAILED)),
        )
        .order_by(F("avg_ms").desc(), "tool_name")[:limit]
    )


def inbound_fallbacks(*, since, limit=10):
    """Inbound calls answered with the default route because GHL was slow or failing."""
    failed = RoutingDecision.objects.filter(ghl_failed=True, created_at__gte=since)
    return list(failed.select_related("call").order_by("-created_at")[:limit])
