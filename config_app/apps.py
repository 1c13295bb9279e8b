from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    name = "config_app"

    def ready(self):
        from config_app import service
        from zepix_admin.core import alerts

        alerts.use_webhook_settings(service.webhook_settings)
