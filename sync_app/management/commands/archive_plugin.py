from sync_app.archive import archive_plugin, undo_archive
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Take a removed plugin out of service: a tombstone config version (audited) undeclares it, its database "
        "goes compressed into ZEPIX_DATA_DIR/archived/ (kept 90 days by default), its synced central rows stay. "
        "--undo brings the newest archive back, data included, and keeps the archive."
    )

    def add_arguments(self, parser):
        parser.add_argument("plugin_id")
        parser.add_argument("--undo", action="store_true", help="Bring the plugin back from its newest archive.")

    def handle(self, *args, plugin_id, undo, **options):
        archive = undo_archive(plugin_id) if undo else archive_plugin(plugin_id)
        if undo:
            self.audit("plugin.unarchive", plugin_id, archive=archive.pk)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Brought {plugin_id} back from its archive of {archive.archived_at:%Y-%m-%d %H:%M}; "
                    "the archive is kept. Restart `make run` (or `serve`) if it was started while the plugin "
                    "was archived."
                )
            )
            return
        self.audit("plugin.archive", plugin_id, path=archive.path)
        kept = f"to {archive.path}" if archive.path else "(its database was already missing)"
        self.stdout.write(
            self.style.SUCCESS(
                f"Archived {plugin_id} {kept}; kept until {archive.expires_at:%Y-%m-%d}. "
                f"Undo with `python manage.py archive_plugin {plugin_id} --undo`."
            )
        )
