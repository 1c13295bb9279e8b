from django.apps import AppConfig


class PluginsAppConfig(AppConfig):
    name = "plugins_app"
