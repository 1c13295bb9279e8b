"""Bot hosts ship their plugins' changes to the central console over HTTPS.

A bot host keeps its plugins' SQLite databases and runs ``ship_changes``: it reads the rows
changed since the marks the central acknowledged (each numbered table's largest change
number) and posts them, zstd-compressed JSON, to ``/api/sync/<plugin_id>/batches``.

The central keeps the plugin's database as a mirror: each batch is applied to it in one
transaction (an upsert that never takes an older version of a row), so the mirror's marks
are exactly what it holds, and the plugin is then synced like a local one (its pages, its
admin, its backups, the central copy). A batch that arrives twice, or after a cut in the
middle, changes nothing twice: the central answers its marks and the host resends from
there. A host whose file was replaced (restored, copied in) starts over from nothing with a
``restart`` batch; the sync reconciles the central copy as for a local file.
"""

import json
import sqlite3
from contextlib import closing
from functools import cache

import zstandard
from django.utils import timezone

from plugins_app import plugins, schema
from plugins_app.sqlite import connect, immediate_transaction, read_only_uri
from sync_app.models import ShippingState
from sync_app.sync import SyncAlreadyRunning, only_one_sync, sync_plugin
from zepix_admin.core.errors import Conflict, Invalid

SHIPPED_TABLES = schema.NUMBERED_TABLES  # trades, chains, levels, daily stats, plugin info
BATCH_ROWS = 5000  # per table and batch: ~1.5 MB of JSON for trades, a few hundred KB compressed
MAX_BATCH_ROWS = 20_000  # what the central takes in one batch (all tables)
MAX_BODY_BYTES = 64 * 1024 * 1024  # decompressed


class NeedsRestart(Conflict):
    """The host's file is not the one the mirror holds: ship everything again with restart."""


class OtherMarks(Conflict):
    """The batch does not start where the mirror ends: the host ships from the mirror's marks."""


@cache
def table_columns() -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """{table: (columns, primary key, {column: declared type})} of the plugin schema, the same
    on both ends (made from the schema, never from a request)."""
    with closing(sqlite3.connect(":memory:")) as connection:
        schema.create(connection)
        shapes = {}
        for table in SHIPPED_TABLES:
            info = connection.execute(f"PRAGMA table_info({table})").fetchall()
            key = next(row[1] for row in info if row[5] == 1)
            shapes[table] = ([row[1] for row in info], key, {row[1]: (row[2] or "").upper() for row in info})
        return shapes


# The host's side ----------------------------------------------------------------


def identity_of(connection) -> str:
    row = connection.execute("SELECT incarnation FROM zepix_identity").fetchone()
    return row[0] if row else ""


def marks_of(connection) -> dict[str, int]:
    return {
        table: connection.execute(f"SELECT COALESCE(MAX(change_seq), 0) FROM {table}").fetchone()[0]
        for table in SHIPPED_TABLES
    }


def next_batch(path, acknowledged: dict, central_identity: str, *, rows_per_table: int = BATCH_ROWS) -> dict:
    """The batch after what the central acknowledged, read in one snapshot of the host's file;
    a restart (everything from nothing) when the file is not the one the central mirrors."""
    with closing(sqlite3.connect(read_only_uri(path), uri=True)) as connection:
        connection.execute("BEGIN")  # one snapshot for every table
        identity, marks = identity_of(connection), marks_of(connection)
        since = {table: int(acknowledged.get(table, 0)) for table in SHIPPED_TABLES}
        restart = bool(central_identity) and (
            central_identity != identity or any(marks[t] < since[t] for t in SHIPPED_TABLES)
        )
        if restart:
            since = dict.fromkeys(SHIPPED_TABLES, 0)
        tables, until, more = {}, {}, False
        for table, (columns, _, _) in table_columns().items():
            rows = connection.execute(
                f"SELECT {', '.join(columns)} FROM {table} WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
                (since[table], rows_per_table),
            ).fetchall()
            seq = columns.index("change_seq")
            until[table] = rows[-1][seq] if rows else since[table]
            more = more or len(rows) == rows_per_table
            if rows:
                tables[table] = {"columns": columns, "rows": [list(row) for row in rows]}
        return {
            "incarnation": identity,
            "restart": restart,
            "since": since,
            "until": until,
            "tables": tables,
            "more": more,  # a full batch: others follow at once
        }


def encode(batch: dict) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(batch, separators=(",", ":")).encode())


def decode(body: bytes, encoding: str) -> dict:
    """A batch from a request body (zstd or plain JSON), refused with a clear error when it is
    not one, or too big once decompressed."""
    try:
        if encoding == "zstd":
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_BODY_BYTES)
        batch = json.loads(body)
    except (zstandard.ZstdError, ValueError) as error:
        raise Invalid(f"The batch is not zstd-compressed JSON (or is over {MAX_BODY_BYTES} bytes): {error}") from None
    if not isinstance(batch, dict):
        raise Invalid("A batch is a JSON object.")
    return batch


# The central's side -------------------------------------------------------------


def _checked(batch: dict) -> dict[str, list[list]]:
    """The batch's rows per table, in the shape the schema has (its values are checked by
    ``_type_problems`` once they are in the staging table)."""
    tables = batch.get("tables", {})
    if not isinstance(tables, dict) or not set(tables) <= set(SHIPPED_TABLES):
        raise Invalid(f"A batch's tables are some of {', '.join(SHIPPED_TABLES)}.")
    for name in ("since", "until"):
        marks = batch.get(name)
        if not isinstance(marks, dict) or set(marks) != set(SHIPPED_TABLES):
            raise Invalid(f"A batch's {name!r} gives a change number for each of {', '.join(SHIPPED_TABLES)}.")
        if not all(type(value) is int and value >= 0 for value in marks.values()):
            raise Invalid(f"A batch's {name!r} change numbers are whole numbers from 0.")
    shapes, checked, total = table_columns(), {}, 0
    for table, content in tables.items():
        columns = shapes[table][0]
        if not isinstance(content, dict) or content.get("columns") != columns:
            raise Invalid(f"{table}: the columns must be exactly {', '.join(columns)}.")
        rows = content.get("rows")
        if not isinstance(rows, list) or not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
            raise Invalid(f"{table}: each row is a list of {len(columns)} values.")
        total += len(rows)
        if total > MAX_BATCH_ROWS:
            raise Invalid(f"A batch holds at most {MAX_BATCH_ROWS} rows.")
        checked[table] = rows
    return checked


def _wrong_value_sql(column: str, declared: str) -> str:
    """SQL that is true where a staged value is not of its column's declared type (the staging
    table has the column's affinity, as SQLite would store the bot's own write)."""
    if "INT" in declared:
        return f"typeof({column}) NOT IN ('integer', 'null')"
    if declared in ("REAL", "FLOAT", "DOUBLE") or declared.startswith("DECIMAL"):
        return f"typeof({column}) NOT IN ('integer', 'real', 'null')"
    if declared in ("TIMESTAMP", "DATETIME", "DATE"):
        return f"({column} IS NOT NULL AND (typeof({column}) != 'text' OR datetime({column}) IS NULL))"
    return f"(typeof({column}) NOT IN ('text', 'null') OR length({column}) > 100000)"


def _type_problems(mirror, table: str, since: int, until: int) -> str:
    """What is wrong with the staged rows of a table ('' when nothing): one pass in SQLite
    instead of a Python check of every value (3x the time of the whole apply)."""
    columns, _, types = table_columns()[table]
    counts = mirror.execute(
        "SELECT "
        + ", ".join(f"COALESCE(SUM({_wrong_value_sql(column, types[column])}), 0)" for column in columns)
        + ", COALESCE(SUM(change_seq <= ? OR change_seq > ?), 0)"
        + f" FROM incoming_{table}",
        (since, until),
    ).fetchone()
    for column, wrong in zip(columns, counts, strict=False):
        if wrong:
            return f"{table}.{column}: {wrong} value(s) are not a valid {types[column].lower() or 'value'}"
    if counts[-1]:
        return f"{table}: {counts[-1]} row(s) have a change number outside the batch's range"
    return ""


def acknowledged(plugin_id: str) -> dict:
    """What the central holds of a plugin: its mirror's identity and marks."""
    with closing(connect(plugins.database_path(plugins.check_declared(plugin_id)), read_only=True)) as mirror:
        return {"incarnation": identity_of(mirror), "marks": marks_of(mirror)}


def apply_batch(plugin_id: str, batch: dict, *, host: str, every_seconds: float | None) -> dict:
    """Apply one batch to the plugin's mirror in one transaction; returns the new marks.
    Conflict (409) when the batch does not start at the mirror's marks (it was applied already,
    or one before it is missing): the answer carries the marks to resend from."""
    plugins.check_declared(plugin_id)
    rows = _checked(batch)
    identity = batch.get("incarnation")
    if not isinstance(identity, str) or not 1 <= len(identity) <= 64:
        raise Invalid("A batch names its file's incarnation (zepix_identity).")
    with closing(connect(plugins.database_path(plugin_id))) as mirror:
        mirror.execute("PRAGMA foreign_keys = OFF")  # a chain may come before its trade: the host checked
        with immediate_transaction(mirror):
            held, marks = identity_of(mirror), marks_of(mirror)
            empty = not any(marks.values())
            if not empty and not ShippingState.objects.filter(plugin_id=plugin_id).exists():
                # Its database here has rows no host shipped: a bot on this machine writes it.
                raise Conflict(
                    f"{plugin_id}'s database on the central is written by a bot on the central's machine: "
                    "it takes no shipped changes (declare the remote plugin under its own id)."
                )
            if batch.get("restart") is True:
                for table in reversed(SHIPPED_TABLES):
                    mirror.execute(f"DELETE FROM {table}")
                marks = dict.fromkeys(SHIPPED_TABLES, 0)
            elif held != identity and not empty:
                raise NeedsRestart(
                    f"{plugin_id}'s database on the host is not the one the central mirrors: ship a restart."
                )
            if batch["since"] != marks:
                raise OtherMarks(f"{plugin_id}: the central holds up to {json.dumps(marks)}; ship from there.")
            if held != identity:
                mirror.execute("UPDATE zepix_identity SET incarnation = ?, stamped_at = datetime('now')", (identity,))
            for table, table_rows in rows.items():
                _stage(mirror, table, table_rows)
                problem = _type_problems(mirror, table, batch["since"][table], batch["until"][table])
                if problem:
                    raise Invalid(f"The batch was refused, nothing applied: {problem}.")
                # Staged first, then one INSERT ... SELECT: 61 ms for 5,000 trades against 214 ms
                # for the same upsert row by row (executemany).
                mirror.execute(_upsert_sql(table))
            marks = marks_of(mirror)
    shipped = sum(len(table_rows) for table_rows in rows.values())
    _record(plugin_id, host, every_seconds, shipped)
    if batch.get("more") is not True:
        # The central copy follows once the host has sent what it had: one sync of the whole
        # range rather than one per batch (a host cut in between is synced by the next run).
        # Also after an empty batch: the batch before it may have been a full one.
        _sync_now(plugin_id)
    return marks


def _stage(mirror, table: str, rows: list[list]) -> None:
    """The batch's rows of a table in a temporary table of the same columns and affinities."""
    columns = table_columns()[table][0]
    mirror.execute(f"CREATE TEMP TABLE IF NOT EXISTS incoming_{table} AS SELECT * FROM main.{table} WHERE 0")
    mirror.execute(f"DELETE FROM incoming_{table}")
    mirror.executemany(f"INSERT INTO incoming_{table} VALUES ({', '.join('?' * len(columns))})", rows)


def _upsert_sql(table: str) -> str:
    columns, key, _ = table_columns()[table]
    listed = ", ".join(columns)
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column != key)
    return (
        f"INSERT INTO main.{table} ({listed}) SELECT {listed} FROM incoming_{table} WHERE true "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE excluded.change_seq > {table}.change_seq"
    )


def _record(plugin_id: str, host: str, every_seconds: float | None, rows: int) -> None:
    state, _ = ShippingState.objects.get_or_create(plugin_id=plugin_id, defaults={"last_batch_at": timezone.now()})
    state.host = host
    state.last_batch_at = timezone.now()
    state.every_seconds = every_seconds  # a host run now and then (no --every) is never late
    state.batches += 1
    state.rows += rows
    state.save()


def _sync_now(plugin_id: str) -> None:
    """The central copy follows at once; when a sync is running, it (or the next) takes it."""
    try:
        with only_one_sync():
            sync_plugin(plugin_id)
    except SyncAlreadyRunning:
        pass
