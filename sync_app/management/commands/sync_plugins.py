from django.core.management.base import CommandError

from sync_app.sync import changes_waiting, run_sync, sync_targets
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Sync every enabled plugin's trades into the central database now (or one plugin with --plugin). "
        "Prints what it did per plugin; exits non-zero when a plugin failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--plugin", help="Only this plugin.")

    def handle(self, *args, plugin, **options):
        chosen = [plugin] if plugin else None
        waiting = changes_waiting(sync_targets(chosen)) if self.stderr.isatty() else None
        with self.progress(waiting, unit="trades", description="sync") as advance:
            run = run_sync(plugin_ids=chosen, trigger="command", actor="command", on_rows=advance)
        self.audit("sync.run", plugin or "all plugins", run=run.pk, status=run.status)
        for plugin_id, result in run.plugins.items():
            line = (
                f"{plugin_id}: {result['inserted']} inserted, {result['updated']} updated, "
                f"{result.get('removed', 0)} removed, {result['retries']} retries"
            )
            if result.get("reconciled"):
                line += " (its database was replaced: central rows reconciled with the file)"
            if result["error"]:
                self.stderr.write(f"{line}, FAILED: {result['error']}")
            else:
                self.stdout.write(line)
        self.stdout.write(f"Sync run {run.pk}: {run.status} in {run.duration_seconds:.2f} s")
        if run.error:
            raise CommandError(f"Some plugins failed: {run.error}")
