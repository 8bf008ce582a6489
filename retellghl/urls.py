from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from integrations.inbound import inbound_webhook
from integrations.mcp.views import mcp_endpoint
from integrations.outbound.views import ghl_outbound_webhook
from integrations.tools.views import custom_function
from retellghl.api import api_not_found
from retellghl.baseline import baseline, store_only
from retellghl.health import healthz

# Operators must never mistake the sandbox for their real GHL.
admin.site.site_header = "retellghl · GHL sandbox" if settings.GHL_SANDBOX else "retellghl"
admin.site.site_title = "retellghl admin"
admin.site.index_title = "Retell ↔ GoHighLevel"

handler500 = "retellghl.api.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("calls.urls")),
    # The trailing slash is optional: it is easy to paste either way into GHL's Webhook action.
    re_path(
        r"^api/webhooks/ghl/outbound/(?P<slug>[-a-zA-Z0-9_]+)/?$",
        ghl_outbound_webhook,
        name="ghl-outbound-webhook",
    ),
    path("api/webhooks/inbound", inbound_webhook, name="inbound_webhook"),
    # With or without a trailing slash: a redirect would lose the POST body and its signature.
    re_path(r"^api/functions/(?P<tool_name>[^/]+)/?$", custom_function, name="custom_function"),
    # The MCP tool server, both spellings served: a redirect would turn the POST into a GET.
    re_path(r"^api/mcp/?$", mcp_endpoint, name="mcp"),
    # Last: a mistyped API URL answers JSON too, not Django's HTML page.
    # (?s): a path may hold an encoded newline (%0A), which `.` alone would not match.
    re_path(r"^api/(?P<path>(?s:.*))$", api_not_found, name="api_not_found"),
]

if settings.BENCH_BASELINE_VIEW:  # bench/run.py only: the floors to compare endpoints with
    urlpatterns += [
        path("bench/baseline", baseline, name="bench-baseline"),
        path("bench/store", store_only, name="bench-store"),
    ]
