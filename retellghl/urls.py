from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from retellghl.health import healthz

# Operators must never mistake the sandbox for their real GHL.
admin.site.site_header = "retellghl · GHL sandbox" if settings.GHL_SANDBOX else "retellghl"
admin.site.site_title = "retellghl admin"
admin.site.index_title = "Retell ↔ GoHighLevel"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("calls.urls")),
]
