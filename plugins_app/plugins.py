"""The declared plugins as the running Django project sees them, and the state of their databases."""

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from plugins_app import plugin_apps, registry, schema
from plugins_app.sqlite import connect
from zepix_admin.core.databases import database_file, outage
from zepix_admin.core.errors import Invalid, NotFound


class UnknownPlugin(NotFound, LookupError):
    """Also what an id that could never be a plugin's is (a request's ``../x`` finds no plugin)."""


class InvalidPlugin(Invalid, ValueError):
    pass


def check_new_plugin_id(plugin_id) -> str:
    try:
        return registry.check_plugin_id(plugin_id)
    except registry.InvalidPluginId as error:
        raise InvalidPlugin(str(error)) from None


def plugin_ids() -> list[str]:
    """The declared plugins (their config documents: one directory read, for pages and the sync
    ask many times a second). One declared since this process started joins it here once its
    database is ready (plugin_apps.add_plugin_app), and one archived since (its document gone)
    leaves the admin: no restart either way."""
    declared = registry.declared_plugins(settings.CONFIG_DIR)
    for plugin_id in declared:
        if (
            plugin_id not in settings.PLUGIN_IDS
            and _file_problem(registry.database_path(settings.DATA_DIR, plugin_id)) is None
        ):
            plugin_apps.add_plugin_app(plugin_id)
    for plugin_id in set(settings.PLUGIN_IDS) - set(declared) - _left:
        plugin_apps.show_in_admin(plugin_id, False)
        _left.add(plugin_id)
    for plugin_id in _left & set(declared):
        plugin_apps.show_in_admin(plugin_id, True)
        _left.discard(plugin_id)
    return [plugin_id for plugin_id in declared if plugin_id in settings.PLUGIN_IDS]


_left: set[str] = set()  # plugins of this process archived since: out of the admin


def check_declared(plugin_id) -> str:
    """The plugin id, once it is known to be declared: the one check of an id from a request or a
    command line (UnknownPlugin is a 404 and a command's refusal)."""
    _check_id(plugin_id)
    declared = plugin_ids()
    if plugin_id not in declared:
        raise UnknownPlugin(f"Unknown plugin {plugin_id!r}; declared plugins: {', '.join(declared) or 'none'}.")
    return plugin_id


def _check_id(plugin_id) -> None:
    try:
        registry.check_plugin_id(plugin_id)
    except registry.InvalidPluginId as error:
        raise UnknownPlugin(str(error)) from None


def database_path(plugin_id: str) -> Path:
    """The plugin's SQLite file, as its database alias has it (the test database under tests)."""
    _check_id(plugin_id)
    if plugin_id not in settings.PLUGIN_IDS:
        raise UnknownPlugin(f"Unknown plugin {plugin_id!r}; declared plugins: {', '.join(plugin_ids()) or 'none'}.")
    return database_file(registry.alias_for(plugin_id))


def unapplied_migrations(alias: str) -> list:
    """The migrations a database still needs (`setup` applies them, health counts them): a
    plugin's file only its own app's. The router refuses every other app there, yet `migrate
    --database` renders and records them all (some 45 empty migrations): 0.7 s of each new
    plugin database's 0.9 s migrate here."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    targets = executor.loader.graph.leaf_nodes()
    if registry.plugin_id_for_alias(alias):
        targets = [leaf for leaf in targets if leaf[0] == alias]
    return executor.migration_plan(targets)


def migrate_database(alias: str) -> bool:
    """Apply the migrations a database still needs (a plugin's file: its own app's); False when
    it needed none."""
    import io

    from django.core.management import call_command

    if not unapplied_migrations(alias):
        return False
    only_its_app = [alias] if registry.plugin_id_for_alias(alias) else []
    call_command("migrate", *only_its_app, database=alias, interactive=False, verbosity=0, stdout=io.StringIO())
    return True


def expected_tables() -> set[str]:
    from plugins_app.models import PLUGIN_SCHEMA

    return {model._meta.db_table for model in PLUGIN_SCHEMA}


@dataclass(frozen=True)
class DatabaseProblem:
    kind: str  # MISSING, UNREADABLE, SCHEMA or OUTAGE
    message: str
    repair: str = ""  # what to do instead of the usual restore (an outage: nothing to restore)

    def __str__(self):
        return self.message


MISSING, UNREADABLE, SCHEMA, OUTAGE = "missing", "unreadable", "schema", "outage"


def database_problem(plugin_id: str) -> DatabaseProblem | None:
    """None when the plugin's database can be read and has every table, else what is wrong in
    an operator's words. Cheap (a read-only open and one look at the schema: about 0.2 ms),
    so pages ask it on every refresh rather than trip over a broken file."""
    return _file_problem(database_path(plugin_id))


def _file_problem(path: Path) -> DatabaseProblem | None:
    if not path.exists():
        return DatabaseProblem(MISSING, f"its database file is missing ({path.name})")
    try:
        # A short wait: a database the bot holds locked is busy, not broken (and a page asking
        # about it must not wait on the bot: this waited 2 s per question before).
        with closing(connect(path, read_only=True, timeout=0.1)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        away = outage(error)
        if away is not None:  # the file is fine (a WAL database cannot be opened on a full or read-only disk)
            return DatabaseProblem(
                OUTAGE,
                f"its database cannot be opened: {away.what[0].lower()}{away.what[1:]}",
                f"Nothing is to be restored: the console opens it again by itself {away.again}.",
            )
        return DatabaseProblem(UNREADABLE, f"its database cannot be read: {error}")
    missing = sorted(expected_tables() - tables)
    if missing:
        return DatabaseProblem(SCHEMA, f"its database has the wrong schema: no table {', '.join(missing)}")
    return None


def rows_not_held(plugin_id: str) -> list[str]:
    """What of the plugin's rows the console cannot hold (plugins_app.schema.rows_not_held): rows
    written before the triggers that refuse them, or with them dropped. A scan of every table:
    asked only once something failed."""
    try:
        with closing(connect(database_path(plugin_id), read_only=True)) as connection:
            return schema.rows_not_held(connection)
    except sqlite3.DatabaseError:
        return []


def repair_hint(plugin_id: str, problem: DatabaseProblem | str | None = None) -> str:
    if isinstance(problem, DatabaseProblem) and problem.repair:
        return problem.repair
    return (
        f"Stop the bot's {plugin_id} process, then restore its latest backup (Backups page, or "
        f"`python manage.py restore_backup <id> --db {registry.alias_for(plugin_id)}`), or take it out of "
        f"service with `python manage.py archive_plugin {plugin_id}`."
    )
