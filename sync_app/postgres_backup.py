"""Backups of the central database when it is on PostgreSQL (DATABASE_URL): ``pg_dump`` in its
custom format, checked by restoring into a scratch database and comparing row counts.

The row counts are taken in the very snapshot the dump reads (``pg_export_snapshot``), so a
dump made while the sync and the pages write still matches them exactly. The scratch
database needs the console's database user to have CREATEDB.
"""

import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connections

from zepix_admin.core.databases import own_connection_params

if TYPE_CHECKING:
    import psycopg

SUFFIX = ".pgdump"
TOOL_SECONDS = 3600


class DumpFailed(Exception):
    pass


@contextmanager
def _database_errors():
    """PostgreSQL's errors as DumpFailed, the one failure the backups handle. psycopg is
    imported here, not with the module: without a central database on PostgreSQL it is never
    needed, and its import was 0.19 s of every command's start."""
    import psycopg

    try:
        yield
    except psycopg.Error as error:
        raise DumpFailed(str(error).strip()) from None


def _tool(name: str) -> str:
    """The PostgreSQL client program: on the PATH, else the newest of Debian's versions."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise DumpFailed(f"{name} is missing: install PostgreSQL's client programs (postgresql-client).")
    return str(versions[-1])


def _environment(database: str | None = None) -> dict:
    """The connection of the central database, for the client programs (never on a command line)."""
    params = settings.DATABASES["default"]
    env = {**os.environ, "PGDATABASE": database or params["NAME"]}
    for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if params.get(key):
            env[variable] = str(params[key])
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def _run(*command: str, database: str | None = None) -> str:
    try:
        done = subprocess.run(
            command, env=_environment(database), capture_output=True, text=True, timeout=TOOL_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DumpFailed(f"{Path(command[0]).name} failed: {error}") from None
    if done.returncode != 0:
        raise DumpFailed(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _connect(database: str | None = None) -> "psycopg.Connection":
    import psycopg

    params = own_connection_params()
    if database:
        params["dbname"] = database
    return psycopg.connect(**params, autocommit=True)


def _tables(cursor) -> list[str]:
    cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
    return [name for (name,) in cursor.fetchall()]


def _counts(cursor) -> dict[str, int]:
    counts = {}
    for table in _tables(cursor):
        cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
        counts[table] = cursor.fetchone()[0]
    return counts


def dump(target: Path) -> dict[str, int]:
    """pg_dump of the central database into ``target``; returns the row counts of what it holds."""
    with _database_errors(), _connect() as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        counts = _counts(connection.cursor())
        _run(_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--no-owner", f"--file={target}")
        connection.execute("COMMIT")
    return counts


@contextmanager
def scratch_database():
    """A database of its own for a restore drill, dropped afterwards."""
    name = f"zepix_check_{uuid.uuid4().hex[:12]}"
    with _connect() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restored_counts(path: Path) -> dict[str, int]:
    """Restore a dump into a scratch database and count its rows: the restore drill."""
    with _database_errors(), scratch_database() as name:
        _run(_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={name}", str(path), database=name)
        with _connect(name) as connection:
            return _counts(connection.cursor())


def restore(path: Path) -> None:
    """Put a checked dump in place of the central database's tables, in one transaction. The
    tables the dump does not have (made by a migration since it was taken) go first: `--clean`
    drops only the dump's own, and the migration that follows the restore of an older dump
    failed on a table that already existed."""
    connections["default"].close()
    listing = _run(_tool("pg_restore"), "--list", str(path))
    # A table's entry: "215; 1259 16390 TABLE public zepix_admin_alert postgres" (its rows' entry
    # says "TABLE DATA"; a comment starts with ";").
    entries = [line.split() for line in listing.splitlines() if not line.startswith(";")]
    in_dump = {fields[5] for fields in entries if len(fields) > 5 and fields[3] == "TABLE" and fields[4] != "DATA"}
    with _database_errors(), _connect() as connection, connection.transaction():
        cursor = connection.cursor()
        for table in _tables(cursor):
            if table not in in_dump:
                cursor.execute(f'DROP TABLE "{table}" CASCADE')
    _run(
        _tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={settings.DATABASES['default']['NAME']}",
        str(path),
    )
