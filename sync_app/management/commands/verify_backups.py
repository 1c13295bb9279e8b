from django.core.management.base import CommandError
from django.db.models import Sum

from sync_app.backup import verify_backups
from sync_app.models import Backup
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Restore drill: decompress each backup to a temporary file, check its checksum, integrity and "
        "row counts against those recorded. A failure raises an alert and exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("--db", dest="alias", help="Only the backups of this database alias.")

    def handle(self, *args, alias, **options):
        backups = Backup.objects.all() if alias is None else Backup.objects.filter(database=alias)
        total = backups.aggregate(total=Sum("size_bytes", default=0))["total"]
        with self.progress(total, unit="B", description="verify") as advance:
            results = verify_backups(alias, on_bytes=advance)
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
