import hashlib
import secrets
from pathlib import Path

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from config_app import service as config_service
from plugins_app import plugins, registry, sqlite
from plugins_app.demo import seed_plugin
from sync_app import backup
from zepix_admin.core import access, home
from zepix_admin.core.commands import ZepixCommand
from zepix_admin.core.databases import database_file, on_postgresql
from zepix_admin.core.sqlite_backend.base import may_create


class Command(ZepixCommand):
    help = (
        "Prepare everything Zepix Admin needs: folders, the central database and every plugin's database "
        "(migrated), the viewer/operator/admin roles, default config documents, the first admin account, "
        "static files, and demo data on a new install. Idempotent: safe on every start. A plugin database "
        "that is missing or broken is reported and left alone; the rest is set up."
    )
    requires_system_checks = "__all__"  # see ZepixCommand

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Never load demo data.")
        parser.add_argument("--demo-trades", type=int, default=2000, help="Demo trades per plugin (default 2000).")
        parser.add_argument(
            "--move-here",
            action="store_true",
            help="With the central database on PostgreSQL: make this machine's folders the console's, for good "
            "(the console moved here). Without it, setup refuses folders that are not the console's.",
        )

    def execute(self, *args, **options):
        self.make_central_if_new()  # before the system checks, which open it
        return super().execute(*args, **options)

    def handle(self, *args, no_demo, demo_trades, move_here, **options):
        done = []
        for folder in (settings.DATA_DIR, settings.DATA_DIR / "plugins", settings.BACKUP_DIR, settings.CONFIG_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        config_service.declare_builtin_plugins()
        new_install = not self.central_ready()
        done += self.migrate_central()
        done += home.record(move_here=move_here)  # before this folder's plugins and documents reach the central
        created = self.create_plugin_databases() if new_install else []
        done += [f"database {registry.alias_for(plugin_id)}: created" for plugin_id in created]
        done += self.migrate_plugins()
        done += [f"role {name}" for name in access.ensure_groups()]
        done += config_service.ensure_defaults()
        done += self.ensure_admin_account()
        if not no_demo:
            done += self.load_demo_data(created, demo_trades)
        done += self.collect_static()
        for line in done:
            self.stdout.write(f"  {line}")
        self.stdout.write(self.style.SUCCESS("Setup done." if done else "Setup: nothing to do, everything is ready."))

    def collect_static(self) -> list[str]:
        """collectstatic compresses every file again (gzip and brotli, 0.8 s with nothing new and
        3 s on a new install here): skipped when the sources are the ones collected last."""
        from django.contrib.staticfiles.apps import StaticFilesConfig
        from django.contrib.staticfiles.finders import get_finders

        ignored = StaticFilesConfig.ignore_patterns  # what collectstatic leaves out

        sources = hashlib.sha256(f"{django.__version__} {settings.STORAGES['staticfiles']}".encode())
        for finder in get_finders():
            for path, storage in sorted(finder.list(ignored)):
                stat = Path(storage.path(path)).stat()
                sources.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        root = Path(settings.STATIC_ROOT)
        collected = root / ".collected-from"
        if (root / "staticfiles.json").exists() and collected.exists() and collected.read_text() == sources.hexdigest():
            return []
        call_command("collectstatic", interactive=False, verbosity=0)
        collected.write_text(sources.hexdigest())
        return ["static files: collected"]

    def make_central_if_new(self) -> None:
        """Only `setup` makes the central database's file. One that is missing while the backup
        folder holds its backups was lost, not never made: said, and left to a restore."""
        if on_postgresql():
            return
        path = database_file("default")
        if path.exists():
            return
        backups = sorted(settings.BACKUP_DIR.glob(f"default-*{backup.SUFFIX}"))
        if backups:
            raise CommandError(
                f"The central database's file is missing ({path}), and {len(backups)} backup(s) of it are in "
                f"{settings.BACKUP_DIR}: restore the latest, `python manage.py restore_backup {backups[-1]}`, "
                f"then run setup again. To start over with an empty one instead, move those backups away first."
            )
        may_create(path)

    def central_ready(self) -> bool:
        return "django_migrations" in connections["default"].introspection.table_names()

    def migrate_central(self) -> list[str]:
        return ["database default: migrated"] if plugins.migrate_database("default") else []

    def create_plugin_databases(self) -> list[str]:
        """A new install gets its plugins' databases; later, only `startplugin` makes one:
        a plugin database that goes missing is reported, never silently made again."""
        return [plugin_id for plugin_id in plugins.plugin_ids() if sqlite.create(plugins.database_path(plugin_id))]

    def migrate_plugins(self) -> list[str]:
        """Each plugin database on its own: a missing or broken one is reported and the rest go on."""
        done = []
        for plugin_id in plugins.plugin_ids():
            alias = registry.alias_for(plugin_id)
            problem = plugins.database_problem(plugin_id)
            if problem and problem.kind in (plugins.MISSING, plugins.UNREADABLE):
                self.stderr.write(
                    self.style.WARNING(f"Plugin {plugin_id}: {problem}. {plugins.repair_hint(plugin_id, problem)}")
                )
                continue
            try:
                if plugins.migrate_database(alias):
                    done.append(f"database {alias}: migrated")
                    self.warn_of_rows_not_held(plugin_id)
            except DatabaseError as error:
                self.stderr.write(self.style.WARNING(f"Plugin {plugin_id}: cannot migrate its database: {error}"))
        return done

    def warn_of_rows_not_held(self, plugin_id: str) -> None:
        """A database migrated now was written before the checks of the bot's values (or by an
        older version): rows it holds that the console cannot hold are said once, here (a scan
        of the file, so only after a migration)."""
        not_held = plugins.rows_not_held(plugin_id)
        if not_held:
            self.stderr.write(
                self.style.WARNING(
                    f"Plugin {plugin_id}: its database holds {'; '.join(not_held)}. Correct those rows in "
                    f"{plugins.database_path(plugin_id)}: until then its sync may fail, and the pages that show "
                    "them may not load."
                )
            )

    def ensure_admin_account(self) -> list[str]:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return []
        username = settings.SUPERUSER_USERNAME
        password = settings.SUPERUSER_PASSWORD
        generated = not password
        password = password or secrets.token_urlsafe(12)
        try:
            validate_password(password, User(username=username))
        except ValidationError as error:
            raise CommandError(f"DJANGO_SUPERUSER_PASSWORD is refused: {' '.join(error.messages)}") from None
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account: username {username!r}, password {password!r} (shown only this once)."
                )
            )
        return [f"admin account {username!r}"]

    def load_demo_data(self, created: list[str], count: int) -> list[str]:
        """Demo trades go only into databases this run created: never into a real plugin."""
        done = []
        for plugin_id in created:
            seed_plugin(plugins.database_path(plugin_id), plugin_id, count)
            done.append(f"demo data: {count} trades in {plugin_id}")
        return done
