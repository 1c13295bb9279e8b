from django.apps import AppConfig


class SyncAppConfig(AppConfig):
    name = "sync_app"
