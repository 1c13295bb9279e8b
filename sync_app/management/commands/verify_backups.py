from django.core.management.base import CommandError

from sync_app.backup import verify_backups
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Restore drill: decompress each backup to a temporary file, check its checksum, integrity and "
        "row counts against those recorded. A failure raises an alert and exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("--db", dest="alias", help="Only the backups of this database alias.")

    def handle(self, *args, alias, **options):
        results = verify_backups(alias)
        failed = 0
        for backup, problem in results.items():
            if problem:
                failed += 1
                self.stderr.write(f"backup {backup.pk} ({backup.database}): FAILED: {problem}")
            else:
                self.stdout.write(f"backup {backup.pk} ({backup.database}, {backup.created_at:%Y-%m-%d %H:%M}): ok")
        if failed:
            raise CommandError(f"{failed} backup(s) failed verification.")
        self.stdout.write(f"{len(results)} backup(s) verified.")
