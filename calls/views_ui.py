"""The operator UI: dashboard, call list, call page, and the Retry button for GHL sync tasks.

Server-rendered pages for staff only: anonymous visitors are sent to the login page, logged-in
non-staff users get 403. Times are shown in the operator's timezone: the `tz` cookie set by the
timezone picker in the page header, else settings.TIME_ZONE.
"""

import functools
import zoneinfo
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from calls import outbox, selectors
from calls.conversation import conversation
from calls.forms import CallFilterForm
from calls.models import GhlSyncTask

TZ_COOKIE = "tz"
CHART_DAYS = 14
RATES_WINDOW = timedelta(days=30)
TOOLS_WINDOW = timedelta(days=7)
FALLBACKS_WINDOW = timedelta(hours=24)


REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")


@functools.cache
def timezone_names():
    """The zones an operator can pick: canonical Region/City names (no legacy aliases) and UTC."""
    names = {name for name in zoneinfo.available_timezones() if name.split("/")[0] in REGIONS}
    return ["UTC", *sorted(names)]


def operator_timezone(request):
    name = request.COOKIES.get(TZ_COOKIE, "")
    return zoneinfo.ZoneInfo(name if name in timezone_names() else settings.TIME_ZONE)


def staff_page(view):
    """Login required (redirect), staff required (403); render in the operator's timezone."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied
        request.operator_tz = operator_timezone(request)
        # Pages render inside the view (render(), not TemplateResponse), so inside this override.
        with timezone.override(request.operator_tz):
            return view(request, *args, **kwargs)

    return wrapper


def page(request, template, context):
    current = request.operator_tz.key
    names = timezone_names() if current in timezone_names() else [current, *timezone_names()]
    context = {"timezone_names": names, "operator_tz": current, **context}
    return render(request, template, context)


@require_GET
@staff_page
def dashboard(request):
    now = timezone.now()
    per_day = selectors.calls_per_day(days=CHART_DAYS, now=now, tz=request.operator_tz)
    return page(
        request,
        "ui/dashboard.html",
        {
            "chart": bar_chart(per_day),
            "calls_in_chart": sum(total for _, total, _, _ in per_day),
            "chart_days": CHART_DAYS,
            "agents": selectors.agent_rates(since=now - RATES_WINDOW),
            "rates_days": RATES_WINDOW.days,
            "attention": selectors.sync_attention(now=now),
            "tools": selectors.slowest_tools(since=now - TOOLS_WINDOW),
            "tools_days": TOOLS_WINDOW.days,
            "fallbacks": selectors.inbound_fallbacks(since=now - FALLBACKS_WINDOW),
        },
    )


def bar_chart(per_day, *, height=120):
    """Bars for the calls-per-day SVG: inbound stacked under outbound/web, scaled to the busiest day."""
    peak = max((total for _, total, _, _ in per_day), default=0) or 1
    bars = []
    for index, (day, total, inbound, outbound) in enumerate(per_day):
        bar_height = round(height * total / peak)
        inbound_height = round(height * inbound / peak)
        bars.append(
            {
                "day": day,
                "total": total,
                "inbound": inbound,
                "outbound": outbound,
                "other": total - inbound - outbound,
                "x": index * 40,
                "y": height - bar_height,
                "height": bar_height,
                "inbound_y": height - inbound_height,
                "inbound_height": inbound_height,
            }
        )
    return {"bars": bars, "height": height, "width": len(per_day) * 40, "peak": peak}


PAGE_PARAMS = ("before", "after")


@require_GET
@staff_page
def call_list(request):
    form = CallFilterForm(request.GET)
    form.is_valid()  # invalid fields are reported on the page and left out of the filters
    calls = selectors.call_list_queryset(form.filters(request.operator_tz))
    before = selectors.decode_cursor(request.GET.get("before"))
    after = selectors.decode_cursor(request.GET.get("after")) if before is None else None
    result = selectors.call_page(calls, before=before, after=after)
    filters_query = urlencode(
        [(k, v) for k, values in request.GET.lists() if k not in PAGE_PARAMS for v in values if v]
    )
    return page(
        request,
        "ui/call_list.html",
        {"form": form, "page": result, "filters_query": filters_query, "filtered": bool(filters_query)},
    )


@require_GET
@staff_page
def call_detail(request, call_id):
    call = selectors.call_for_page(call_id)
    invocations = selectors.tool_invocations_for(call)
    return page(
        request,
        "ui/call_detail.html",
        {
            "call": call,
            "conversation": conversation(call, invocations),
            "invocations": invocations,
            "events": selectors.events_for(call),
            "sync_tasks": selectors.sync_tasks_for(call),
            "retryable": {GhlSyncTask.Status.FAILED, GhlSyncTask.Status.PENDING},
            "routing_decision": selectors.routing_decision_for(call),
            "ghl_contact_url": ghl_contact_url(call),
            "inline_event_bytes": selectors.INLINE_EVENT_BYTES,
        },
    )


def ghl_contact_url(call):
    if not call.ghl_contact_id:
        return ""
    location_id = call.location.location_id if call.location else settings.GHL_LOCATION_ID
    if not location_id:
        return ""
    return f"{settings.GHL_APP_URL}/v2/location/{location_id}/contacts/detail/{call.ghl_contact_id}"


@require_GET
@staff_page
def raw_event(request, call_id, event_id):
    """One webhook delivery exactly as Retell sent it (linked from the call page for large bodies)."""
    event = selectors.raw_event(selectors.call_for_page(call_id), event_id)
    return HttpResponse(event.raw_body, content_type="application/json; charset=utf-8")


@require_POST
@staff_page
def retry_sync_task(request, call_id, task_id):
    task = selectors.sync_task_of_call(call_id, task_id)
    queued = outbox.retry_tasks(GhlSyncTask.objects.filter(pk=task.pk), now=timezone.now())
    if queued:
        messages.success(request, f"{task.get_kind_display()} queued for retry.")
    else:
        messages.warning(request, f"{task.get_kind_display()} is running right now; it was not re-queued.")
    return redirect(f"{task.call.get_absolute_url()}#sync")


@require_POST
@staff_page
def set_timezone(request):
    name = request.POST.get("tz", "")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = "/"
    response = redirect(target)
    if name in timezone_names():
        response.set_cookie(
            TZ_COOKIE,
            name,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            secure=request.is_secure(),
            httponly=True,
        )
    else:
        messages.error(request, f"Unknown timezone {name!r}.")
    return response
