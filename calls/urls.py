from django.urls import path

from calls import views

urlpatterns = [
    path("api/webhooks/retell", views.retell_webhook, name="retell-webhook"),
]
