from django.apps import AppConfig


class PluginsAppConfig(AppConfig):
    name = "plugins_app"

    def ready(self):
        from plugins_app import checks

        checks.register()
