import time

from django.core.management.base import CommandError

from plugins_app import plugins
from plugins_app.demo import seed_plugin
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Add N realistic, deterministic demo trades (open and closed, wins and losses, chains) to each "
        "plugin, or to one. Run again, it adds N more whose tickets never collide with those already there."
    )

    def add_arguments(self, parser):
        parser.add_argument("--trades", type=int, required=True, help="Trades to add per plugin.")
        parser.add_argument("--plugin", help="Only this plugin (default: every declared plugin).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")

    def handle(self, *args, trades, plugin, seed, **options):
        if trades < 1:
            raise CommandError("--trades must be at least 1.")
        chosen = [plugins.check_declared(plugin)] if plugin else plugins.plugin_ids()
        for plugin_id in chosen:
            started = time.perf_counter()
            with self.progress(trades, unit="trades", description=plugin_id) as advance:
                first, last = seed_plugin(
                    plugins.database_path(plugin_id), plugin_id, trades, seed=seed, on_rows=advance
                )
            elapsed = time.perf_counter() - started
            self.stdout.write(
                f"{plugin_id}: added {trades} trades, tickets {first}..{last} "
                f"({elapsed:.1f} s, {trades / elapsed:,.0f} trades/s)"
            )
