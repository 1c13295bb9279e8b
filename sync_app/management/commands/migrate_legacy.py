from pathlib import Path

from sync_app.legacy import migrate_legacy
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Copy the old single database's trades whose comment matches a SQL LIKE pattern into a plugin's "
        "database and mark them migrated in the source (never deleted). Run twice, copies nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, type=Path, help="The old zepix_bot.db")
        parser.add_argument("--plugin", required=True, help="Plugin id to copy into")
        parser.add_argument("--match", required=True, help="SQL LIKE pattern on the comment, e.g. 'combined%%'")
        parser.add_argument("--since", help="Only trades entered on or after this date (YYYY-MM-DD)")
        parser.add_argument("--dry-run", action="store_true", help="Report what would be copied; change nothing")

    def handle(self, *args, source, plugin, match, since, dry_run, **options):
        with self.progress(None, unit="trades", description=f"copy into {plugin}") as advance:
            report = migrate_legacy(source, plugin, match, since=since, dry_run=dry_run, on_rows=advance)
        prefix = "Dry run: would copy" if dry_run else "Copied"
        self.stdout.write(
            f"{prefix} {report.copied} of {report.matched} matching trades into {plugin} "
            f"({report.already_in_plugin} already there); marked {report.marked} as migrated."
        )
        if not dry_run:
            self.audit(
                "legacy.migrate", plugin, source=str(source), match=match, copied=report.copied, marked=report.marked
            )
