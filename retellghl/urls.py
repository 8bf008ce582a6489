from django.contrib import admin
from django.urls import path, re_path

from integrations.tools.views import custom_function
from retellghl.health import healthz

admin.site.site_header = "retellghl"
admin.site.site_title = "retellghl admin"
admin.site.index_title = "Retell ↔ GoHighLevel"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # With or without a trailing slash: a redirect would lose the POST body and its signature.
    re_path(r"^api/functions/(?P<tool_name>[^/]+)/?$", custom_function, name="custom_function"),
]
