from django.urls import path

from calls import views, views_ui

urlpatterns = [
    path("api/webhooks/retell", views.retell_webhook, name="retell-webhook"),
    # Operator UI (staff only)
    path("", views_ui.dashboard, name="ui-dashboard"),
    path("calls/", views_ui.call_list, name="ui-call-list"),
    path("calls/<str:call_id>/", views_ui.call_detail, name="ui-call-detail"),
    path("calls/<str:call_id>/events/<int:event_id>/raw", views_ui.raw_event, name="ui-raw-event"),
    path(
        "calls/<str:call_id>/sync-tasks/<int:task_id>/retry",
        views_ui.retry_sync_task,
        name="ui-sync-task-retry",
    ),
    path("timezone", views_ui.set_timezone, name="ui-set-timezone"),
]
