from django.contrib import admin
from django.urls import include, path

from retellghl.health import healthz

admin.site.site_header = "retellghl"
admin.site.site_title = "retellghl admin"
admin.site.index_title = "Retell ↔ GoHighLevel"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("calls.urls")),
]
