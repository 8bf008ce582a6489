from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Configuration (Retell & GHL)"

    def ready(self):
        from integrations import checks  # noqa: F401 (registers the deploy checks)
