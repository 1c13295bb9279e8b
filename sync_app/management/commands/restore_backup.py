from sync_app.backup import restore_backup
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Restore a database from a backup (its id, or the path of a backup file). The backup is checked "
        "first, the current file kept aside, and the restored file swapped in atomically (a plugin's copied "
        "into its live file: a bot still running goes on in the restored database). Stop the bot's process "
        "for that plugin first: what it holds in memory may be rows the restore takes away."
    )

    refusal_prefix = "Nothing was restored: "

    def add_arguments(self, parser):
        parser.add_argument("backup", help="Backup id or path to a .sqlite3.zst backup file.")
        parser.add_argument("--db", dest="alias", help="Database alias to restore into (default: the backup's).")

    def handle(self, *args, backup, alias, **options):
        restored, aside = restore_backup(backup, alias)
        self.audit("backup.restore", restored, backup=backup, kept_aside=str(aside))
        self.stdout.write(self.style.SUCCESS(f"Restored {restored} from {backup}; the previous file is at {aside}."))
