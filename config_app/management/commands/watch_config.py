import json
import os

from django.conf import settings
from django.core.management.base import CommandError

from config_app.client import ConfigSubscriber
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Follow a config scope's stream like a plugin does and print each version as it arrives "
        "(resumes after a dropped connection). Needs a token: --token or ZEPIX_TOKEN."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scope", default="global")
        parser.add_argument("--url", default=settings.CONSOLE_URL)
        parser.add_argument("--token", default=settings.CONSOLE_TOKEN)
        parser.add_argument("--name", default=f"watch_config@{os.uname().nodename}")

    def handle(self, *args, scope, url, token, name, **options):
        if not token:
            raise CommandError("Give a token with --token or ZEPIX_TOKEN (make one with `manage.py create_token`).")

        def show(changes):
            self.stdout.write(
                json.dumps({"scope": scope, "version": (subscriber.seen_version or 0) + 1, "changes": changes})
            )
            self.stdout.flush()

        subscriber = ConfigSubscriber(url, token, scope=scope, name=name, on_config_changed=show)
        self.stdout.write(f"Following {scope} at {url}; Ctrl-C to stop.")
        try:
            subscriber.run_forever()
        except KeyboardInterrupt:
            subscriber.stop()
