import sys

from django.apps import AppConfig


class SyncAppConfig(AppConfig):
    name = "sync_app"

    def ready(self):
        if sys.argv[1:2] == ["run_huey"]:  # the consumer never starves the pages: see sync_app.tasks
            from sync_app.tasks import lower_priority

            lower_priority()
