import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from config_app import documents
from config_app.service import declare_plugin
from plugins_app import adoption, plugins, registry, sqlite
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Declare a new plugin: writes its default config document (ZEPIX_CONFIG_DIR/plugins/<id>.json), "
        "which is what declares it, then runs setup to create and migrate its own database. --adopt FILE "
        "brings in a database the bot made in the seed's shape instead (the original is kept aside, every "
        "row is kept); --schema FILE gives the plugin's own JSON Schema for its settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("plugin_id", help="Lowercase letters, digits and underscores, e.g. 'breakout_v1'.")
        parser.add_argument("--adopt", type=Path, metavar="FILE", help="An existing plugin database to bring in.")
        parser.add_argument(
            "--schema", type=Path, metavar="FILE", help="The plugin's own JSON Schema for its settings."
        )

    def handle(self, *args, plugin_id, adopt, schema, **options):
        plugins.check_new_plugin_id(plugin_id)
        if plugin_id in registry.declared_plugins(settings.CONFIG_DIR):
            raise CommandError(f"Plugin {plugin_id!r} is already declared.")
        own_schema = documents.read_settings_schema(schema) if schema else None
        if adopt:
            size = adopt.stat().st_size if adopt.is_file() else 0  # copied twice: kept aside, then adopted
            with self.progress(2 * size or None, unit="B", description=f"adopt {plugin_id}") as advance:
                adopted = adoption.adopt(adopt, plugin_id, settings.DATA_DIR, on_bytes=advance)
            counts = ", ".join(f"{count} {table}" for table, count in adopted.rows.items())
            self.stdout.write(
                f"Adopted {adopt} as plugin {plugin_id} ({counts}); the original is kept at {adopted.original_kept_at}."
            )
            self.audit("plugin.adopt", plugin_id, source=str(adopt), kept_at=str(adopted.original_kept_at))
        else:
            sqlite.create(registry.database_path(settings.DATA_DIR, plugin_id))
        if own_schema is not None:
            target = documents.settings_schema_path(plugin_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(schema, target)
        if not declare_plugin(plugin_id):
            raise CommandError(f"Plugin {plugin_id!r} is already declared.")
        self.stdout.write(f"Declared plugin {plugin_id}; preparing its database...")
        # The running process built its settings before the plugin existed: a fresh one sees it.
        result = subprocess.run([sys.executable, str(settings.BASE_DIR / "manage.py"), "setup", "--no-demo"])
        if result.returncode:
            raise CommandError("setup failed; fix the problem above and run `python manage.py setup`.")
        self.stdout.write(self.style.SUCCESS(f"Plugin {plugin_id} is ready (database alias plugin_{plugin_id})."))
