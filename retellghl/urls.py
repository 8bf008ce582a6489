from django.contrib import admin
from django.urls import path

from integrations.inbound import inbound_webhook
from retellghl.health import healthz

admin.site.site_header = "retellghl"
admin.site.site_title = "retellghl admin"
admin.site.index_title = "Retell ↔ GoHighLevel"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/webhooks/inbound", inbound_webhook, name="inbound_webhook"),
]
