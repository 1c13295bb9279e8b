from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    name = "config_app"
