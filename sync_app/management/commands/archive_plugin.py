from django.core.management.base import BaseCommand, CommandError

from plugins_app.plugins import UnknownPlugin
from plugins_app.registry import InvalidPluginId
from sync_app.archive import archive_plugin
from sync_app.backup import BackupError
from zepix_admin import audit


class Command(BaseCommand):
    help = (
        "Take a removed plugin out of service: its database goes compressed into ZEPIX_DATA_DIR/archived/ "
        "(kept 90 days by default), its config document beside it; its synced central rows stay."
    )

    def add_arguments(self, parser):
        parser.add_argument("plugin_id")

    def handle(self, *args, plugin_id, **options):
        try:
            archive = archive_plugin(plugin_id)
        except (InvalidPluginId, UnknownPlugin, BackupError) as error:
            raise CommandError(str(error)) from None
        audit.record("command", "command", "plugin.archive", plugin_id, path=archive.path)
        self.stdout.write(self.style.SUCCESS(
            f"Archived {plugin_id} to {archive.path}; kept until {archive.expires_at:%Y-%m-%d}."))  # fmt: skip
