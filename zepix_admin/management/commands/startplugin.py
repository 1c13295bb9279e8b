import subprocess
import sys

from django.conf import settings
from django.core.management.base import CommandError

from config_app.service import declare_plugin
from plugins_app import plugins, registry, sqlite
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Declare a new plugin: writes its default config document (ZEPIX_CONFIG_DIR/plugins/<id>.json), "
        "which is what declares it, then runs setup to create and migrate its own database."
    )

    def add_arguments(self, parser):
        parser.add_argument("plugin_id", help="Lowercase letters, digits and underscores, e.g. 'breakout_v1'.")

    def handle(self, *args, plugin_id, **options):
        plugins.check_new_plugin_id(plugin_id)
        if not declare_plugin(plugin_id):
            raise CommandError(f"Plugin {plugin_id!r} is already declared.")
        sqlite.create(registry.database_path(settings.DATA_DIR, plugin_id))
        self.stdout.write(f"Declared plugin {plugin_id}; preparing its database...")
        # The running process built its settings before the plugin existed: a fresh one sees it.
        result = subprocess.run([sys.executable, str(settings.BASE_DIR / "manage.py"), "setup", "--no-demo"])
        if result.returncode:
            raise CommandError("setup failed; fix the problem above and run `python manage.py setup`.")
        self.stdout.write(self.style.SUCCESS(f"Plugin {plugin_id} is ready (database alias plugin_{plugin_id})."))
