from django.core.management.base import CommandError

from sync_app.backup import (
    BackupError,
    UnknownDatabase,
    backup_database,
    database_aliases,
    declared_database_file,
)
from sync_app.retention import apply_retention
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Back up every database (or one with --db ALIAS): one snapshot of the live file, zstd-compressed, "
        "SHA-256, restored into a scratch file and checked, recorded; then apply the retention policy. Exits "
        "non-zero when a backup failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--db", dest="alias", help="Only this database alias (default, plugin_<id>).")
        parser.add_argument("--no-retention", action="store_true", help="Keep every old backup this time.")

    def handle(self, *args, alias, no_retention, **options):
        failures = []
        chosen = [alias] if alias else database_aliases()
        with self.progress(_bytes_of(chosen), unit="B", description="backup") as advance:
            for name in chosen:
                try:
                    backup = backup_database(name, on_bytes=advance)
                except (BackupError, UnknownDatabase) as error:
                    failures.append(str(error))
                    self.stderr.write(f"{name}: FAILED: {error}")
                    continue
                self.audit("backup.create", name, backup=backup.pk)
                self.stdout.write(
                    f"{name}: backup {backup.pk} {backup.size_bytes:,} bytes "
                    f"({backup.database_bytes:,} uncompressed), sha256 {backup.sha256[:16]}…"
                )
        if not no_retention:
            for old in apply_retention():
                self.stdout.write(
                    f"retention: deleted backup {old.pk} of {old.database} from {old.created_at:%Y-%m-%d %H:%M}"
                )
        if failures:
            raise CommandError("; ".join(failures))


def _bytes_of(aliases: list[str]) -> int:
    """What the backups will read, for the progress bar (an unknown or missing one counts 0)."""
    total = 0
    for alias in aliases:
        try:
            total += declared_database_file(alias).stat().st_size
        except (UnknownDatabase, OSError):
            continue
    return total
