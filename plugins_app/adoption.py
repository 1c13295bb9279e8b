"""Bringing in a plugin database the bot made itself, in the seed's shape.

The file is checked first (the seed's five tables and their columns, every trade with a
ticket); a file that is not compatible is refused with what is wrong and nothing is
touched. Otherwise the original is copied aside (``ZEPIX_DATA_DIR/adopted/``), the file is
copied to the plugin's place and upgraded there (``plugins_app.schema.upgrade``: our columns,
triggers and indexes; existing rows numbered), given an identity, and its plugin migrations
recorded as applied, so that ``setup`` finds it up to date. Every row is kept.
"""

import os
import pkgutil
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from plugins_app import plugin_migrations, registry, schema
from plugins_app.sqlite import (
    IDENTITY_TABLE_SQL,
    STAMP_IDENTITY_SQL,
    connect,
    immediate_transaction,
    in_use_by,
    read_only_uri,
)
from zepix_admin.core.errors import Invalid
from zepix_admin.core.files import fsync_folder

# Django's own table of applied migrations, as its SQLite backend makes it.
MIGRATIONS_TABLE_SQL = (
    'CREATE TABLE IF NOT EXISTS "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
    '"app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" datetime NOT NULL)'
)


class NotAdoptable(Invalid):
    pass


@dataclass
class Adopted:
    path: Path
    original_kept_at: Path
    rows: dict[str, int]


def adopt(source: Path, plugin_id: str, data_dir: Path, on_bytes=None) -> Adopted:
    """``on_bytes(n)`` hears of the bytes copied: the original kept aside, then the working copy."""
    source = Path(source)
    if not source.is_file():
        raise NotAdoptable(f"No database file at {source}.")
    problems = _problems(source)
    if problems:
        raise NotAdoptable(
            f"{source} is not a plugin database in the bot's shape: {'; '.join(problems)}. Nothing was changed."
        )
    # The adopted copy is what the console reads: what a bot still running wrote into the file
    # after the copy was lost (and in place, the file is replaced under it).
    holder = in_use_by(source)
    if holder:
        raise NotAdoptable(
            f"{source} is open in another process ({holder}): stop the bot's process first, then adopt it. "
            "Nothing was changed."
        )
    target = registry.database_path(data_dir, plugin_id)
    if target.exists() and not target.samefile(source):
        raise NotAdoptable(f"{target} exists already: plugin {plugin_id} has a database. Nothing was changed.")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    aside = Path(data_dir) / "adopted" / f"{plugin_id}-{stamp}-{source.name}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):  # the original as it lies: the file, and its write-ahead log if any
        if Path(f"{source}{suffix}").exists():
            _copy_reporting(Path(f"{source}{suffix}"), Path(f"{aside}{suffix}"), on_bytes)
    fsync_folder(aside.parent)
    working = target.with_name(f".{target.name}.adopting")
    target.parent.mkdir(parents=True, exist_ok=True)
    _consistent_copy(source, working)  # one step: a copy in steps restarts while the bot writes
    if on_bytes:
        on_bytes(working.stat().st_size)
    with closing(connect(working)) as connection:
        with immediate_transaction(connection):
            schema.upgrade(connection)
            connection.execute(IDENTITY_TABLE_SQL)
            connection.execute(STAMP_IDENTITY_SQL)
            _record_migrations(connection, registry.alias_for(plugin_id))
        rows = {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in schema.SEED_TABLES
        }
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(working, target)
    fsync_folder(target.parent)
    return Adopted(target, aside, rows)


def _copy_reporting(source: Path, destination: Path, on_bytes) -> None:
    with open(source, "rb") as fin, open(destination, "wb") as fout:
        for block in iter(lambda: fin.read(COPY_BLOCK_BYTES), b""):
            fout.write(block)
            if on_bytes:
                on_bytes(len(block))
    shutil.copystat(source, destination)


COPY_BLOCK_BYTES = 4 * 1024 * 1024


def _problems(source: Path) -> list[str]:
    try:
        with closing(sqlite3.connect(read_only_uri(source), uri=True)) as connection:
            if connection.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return ["it fails SQLite's integrity check"]
            return schema.seed_problems(connection)
    except sqlite3.DatabaseError as error:
        return [f"it cannot be read as SQLite ({error})"]


def _consistent_copy(source: Path, destination: Path) -> None:
    """SQLite's online backup: a consistent copy even while the bot writes to the source."""
    with (
        closing(sqlite3.connect(read_only_uri(source), uri=True)) as reader,
        closing(sqlite3.connect(destination)) as writer,
    ):
        reader.backup(writer)
    with open(destination, "rb") as copied:
        os.fsync(copied.fileno())


def _record_migrations(connection: sqlite3.Connection, app_label: str) -> None:
    connection.execute(MIGRATIONS_TABLE_SQL)
    applied = datetime.now(UTC).isoformat(sep=" ")
    names = sorted(module.name for module in pkgutil.iter_modules(plugin_migrations.__path__))
    connection.executemany(
        "INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, ?)",
        [(app_label, name, applied) for name in names if not name.startswith("_")],
    )
