import json
import sys

from zepix_admin.core.commands import ZepixCommand
from zepix_admin.health import collect


class Command(ZepixCommand):
    help = (
        "Check every database (quick integrity check, WAL, size, unapplied migrations), free disk, the age of "
        "the last successful sync and backup against their schedules, and the Huey consumer's heartbeat. "
        "Exits non-zero when something needs attention."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the result as JSON.")

    def handle(self, *args, as_json: bool, **options):
        report = collect()
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            for entry in report["databases"]:
                self.line(
                    entry["ok"],
                    f"database {entry['alias']}",
                    " ".join(filter(None, (entry.get("problem"), entry.get("repair"))))
                    or (
                        f"{entry['size_bytes']:,} bytes, PostgreSQL {entry['database']}"
                        if entry.get("engine") == "postgresql"
                        else f"{entry['size_bytes']:,} bytes, {entry['journal_mode']}, integrity ok"
                    ),
                )
            for entry in report["jobs"]:
                detail = entry.get("problem") or entry.get("note") or f"{entry['age_seconds']} s ago"
                self.line(entry["ok"], f"last {entry['name']}", detail)
            consumer = report["huey_consumer"]
            self.line(consumer["ok"], "huey consumer", consumer.get("problem") or f"beat at {consumer['last_beat']}")
            disk = report["disk"]
            self.line(disk["ok"], "disk", disk.get("problem") or f"{disk['free_bytes'] / 1024**3:.1f} GiB free")
        if report["status"] != "ok":
            sys.exit(1)

    def line(self, ok: bool, what: str, detail: str) -> None:
        style = self.style.SUCCESS if ok else self.style.ERROR
        self.stdout.write(f"{style('OK  ' if ok else 'FAIL')} {what}: {detail}")
