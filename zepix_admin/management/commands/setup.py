import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from config_app import service as config_service
from plugins_app import plugins
from plugins_app.demo import seed_plugin
from plugins_app.store import PluginStore
from zepix_admin import access


class Command(BaseCommand):
    help = (
        "Prepare everything Zepix Admin needs: folders, the central database and every plugin's database "
        "(migrated), the viewer/operator/admin roles, default config documents, the first admin account, "
        "static files, and demo data when the plugin databases are empty. Idempotent: safe on every start."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Never load demo data.")
        parser.add_argument("--demo-trades", type=int, default=2000, help="Demo trades per plugin (default 2000).")

    def handle(self, *args, no_demo, demo_trades, **options):
        done = []
        for folder in (settings.DATA_DIR, settings.DATA_DIR / "plugins", settings.BACKUP_DIR, settings.CONFIG_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        config_service.declare_builtin_plugins()
        done += self.migrate_all()
        done += [f"role {name}" for name in access.ensure_groups()]
        done += config_service.ensure_defaults()
        done += self.ensure_admin_account()
        if not no_demo:
            done += self.load_demo_data(demo_trades)
        call_command("collectstatic", interactive=False, verbosity=0)
        for line in done:
            self.stdout.write(f"  {line}")
        self.stdout.write(self.style.SUCCESS("Setup done." if done else "Setup: nothing to do, everything is ready."))

    def migrate_all(self) -> list[str]:
        done = []
        for alias in connections:
            executor = MigrationExecutor(connections[alias])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if plan:
                call_command("migrate", database=alias, interactive=False, verbosity=0)
                done.append(f"database {alias}: migrated")
        return done

    def ensure_admin_account(self) -> list[str]:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return []
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"Created the admin account: username {username!r}, password {password!r} (shown only this once)."
            ))  # fmt: skip
        return [f"admin account {username!r}"]

    def load_demo_data(self, count: int) -> list[str]:
        done = []
        for plugin_id in plugins.plugin_ids():
            with PluginStore(plugins.database_path(plugin_id)) as store:
                if store.max_ticket():
                    continue
            seed_plugin(plugins.database_path(plugin_id), plugin_id, count)
            done.append(f"demo data: {count} trades in {plugin_id}")
        return done
