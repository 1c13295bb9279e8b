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

When the central holds nothing of the host's file (its first shipping, or a restart) and there
is much to ship, the host sends the whole file instead: a consistent copy, zstd-compressed, to
``/api/sync/<plugin_id>/snapshot``. The central checks it (integrity, the schema exactly its
own, every value's type, the rows the schema's triggers would refuse), writes it into the mirror
with SQLite's online backup (one transaction: readers see the old mirror or the new), and
syncs. Row by row the central wrote every row twice (the mirror's upsert, then the sync): 200,000
trades shipped at 0.25x the local sync's rate; as a snapshot, see BENCHMARKS.md. A central that
refuses the snapshot (409: another schema; 404: a central from before snapshots) gets batches.
"""

import json
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import zstandard
from django.conf import settings
from django.utils import timezone

from plugins_app import plugins, schema
from plugins_app.sqlite import connect, immediate_transaction, read_only_uri
from sync_app import backup
from sync_app.models import ShippingState
from sync_app.sync import SyncAlreadyRunning, only_one_sync, sync_plugin
from zepix_admin.core import home
from zepix_admin.core.errors import Conflict, Invalid
from zepix_admin.core.files import work_folder

SHIPPED_TABLES = schema.NUMBERED_TABLES  # trades, chains, levels, daily stats, plugin info
BATCH_ROWS = 5000  # per table and batch: ~1.5 MB of JSON for trades, a few hundred KB compressed
MAX_BATCH_ROWS = 20_000  # what the central takes in one batch (all tables)
MAX_BODY_BYTES = 64 * 1024 * 1024  # decompressed
SNAPSHOT_ROWS = 4 * BATCH_ROWS  # from this many rows to ship from nothing, the host sends its whole file
# A snapshot is compressed as it is sent: 100 MB in 0.18 s against 0.31 s at a backup's level 3,
# for 10% more bytes.
SNAPSHOT_ZSTD_LEVEL = 1
# A shipping's request waits this long for a sync that is running before it syncs what it
# applied: the consumer's start-up sync once left a host's first 2,500 trades out of the
# central copy until the next minute's.
SYNC_WAIT_SECONDS = 10
DISK_LEFT_BYTES = 1 << 30  # a snapshot is refused once writing it would leave less free space


class NeedsRestart(Conflict):
    """The host's file is not the one the mirror holds: ship everything again with restart."""


class OtherMarks(Conflict):
    """The batch does not start where the mirror ends: the host ships from the mirror's marks."""


class SnapshotRefused(Conflict):
    """The central takes no snapshot of this file (its schema is not the central's, it is damaged,
    or one of its values would not pass): the host ships it in batches, which say which row."""

    def __init__(self, problem: str):
        super().__init__(f"The snapshot was refused, nothing applied: {problem}.")


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
        since = {table: int(acknowledged.get(table, 0)) for table in SHIPPED_TABLES}
        identity, restart = identity_of(connection), _starts_over(connection, since, central_identity)
        if restart:
            since = dict.fromkeys(SHIPPED_TABLES, 0)
        tables, until, more = {}, {}, False
        for table, (columns, _, _) in schema.table_shapes().items():
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


def _starts_over(connection, since: dict[str, int], central_identity: str) -> bool:
    """Whether the central holds another file than this one (its marks or identity are not this
    file's), so that shipping starts over from nothing."""
    marks = marks_of(connection)
    return bool(central_identity) and (
        central_identity != identity_of(connection) or any(marks[t] < since[t] for t in SHIPPED_TABLES)
    )


def snapshot_worthwhile(path, held: dict, *, min_rows: int = SNAPSHOT_ROWS) -> bool:
    """Whether to send the whole file: the central holds nothing of it, and it has rows enough
    (a small file goes faster in a few batches than as a file checked whole)."""
    since = {table: int(held["marks"].get(table, 0)) for table in SHIPPED_TABLES}
    with closing(sqlite3.connect(read_only_uri(path), uri=True)) as connection:
        connection.execute("BEGIN")
        if any(since.values()) and not _starts_over(connection, since, held["incarnation"]):
            return False
        return shipped_rows(connection) >= min_rows


def shipped_rows(connection) -> int:
    """How many rows a file has in the tables that are shipped."""
    return sum(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in SHIPPED_TABLES)


def snapshot_of(path, work_dir: Path) -> Path:
    """The host's file as it stands: a consistent copy (the bot goes on writing), same identity."""
    copy = work_dir / "snapshot.sqlite3"
    backup.consistent_copy(Path(path), copy)
    return copy


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
    shapes, checked, total = schema.table_shapes(), {}, 0
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


def _type_problems(connection, table: str, since: int, until: int, *, source: str = "") -> str:
    """What is wrong with the rows of a table (staged, unless ``source`` names another table)
    ('' when nothing): one pass in SQLite instead of a Python check of every value (3x the time
    of the whole apply)."""
    columns = schema.table_shapes()[table][0]
    wrong = [schema.wrong_value_sql(table, column) for column in columns]
    counts = schema.rows_meeting(
        connection, source or f"incoming_{table}", [*wrong, "change_seq <= ? OR change_seq > ?"], (since, until)
    )
    for column, count in zip(columns, counts, strict=False):
        if count:
            return f"{table}.{column}: {count} value(s) are not {schema.what_is_held(table, column)}"
    if counts[-1]:
        return f"{table}: {counts[-1]} row(s) have a change number outside the batch's range"
    return ""


def acknowledged(plugin_id: str) -> dict:
    """What the central holds of a plugin: its mirror's identity and marks."""
    home.check()
    with closing(connect(plugins.database_path(plugins.check_declared(plugin_id)), read_only=True)) as mirror:
        return {"incarnation": identity_of(mirror), "marks": marks_of(mirror)}


def apply_batch(plugin_id: str, batch: dict, *, host: str, every_seconds: float | None) -> dict:
    """Apply one batch to the plugin's mirror in one transaction; returns the new marks.
    Conflict (409) when the batch does not start at the mirror's marks (it was applied already,
    or one before it is missing): the answer carries the marks to resend from."""
    home.check()
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
            _check_takes_shipping(plugin_id, marks)
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


def _check_takes_shipping(plugin_id: str, marks: dict[str, int]) -> None:
    if any(marks.values()) and not ShippingState.objects.filter(plugin_id=plugin_id).exists():
        # Its database here has rows no host shipped: a bot on this machine writes it.
        raise Conflict(
            f"{plugin_id}'s database on the central is written by a bot on the central's machine: "
            "it takes no shipped changes (declare the remote plugin under its own id)."
        )


def apply_snapshot(plugin_id: str, body, *, host: str, every_seconds: float | None) -> dict:
    """Make the plugin's mirror the host's whole file, read zstd-compressed from ``body`` (a
    stream), and sync it; returns what the central then holds (``acknowledged``). Refused, and
    nothing changed, when the file is not one the central would build from batches.

    The checks run beside the sync, which reads the received file and commits only once they
    have passed and the mirror holds it (200,000 trades: the integrity check 1.1 s, the values
    0.6 s, the mirror's write 0.4-0.8 s, the sync 2.9-3.4 s and its commit 0.6 s; one after
    the other the central took 5.6 s, side by side 4.1-4.5 s)."""
    home.check()
    plugins.check_declared(plugin_id)
    target = plugins.database_path(plugin_id)
    with work_folder(target.parent, ".snapshot-") as work:
        received = Path(work) / "received.sqlite3"
        _receive(body, received)
        try:
            with closing(connect(received)) as source:
                problem = _schema_problem(source, target)
                if problem:
                    raise SnapshotRefused(problem)
                _keep_the_mirrors_own(source, target)
                rows = shipped_rows(source)
        except sqlite3.DatabaseError as error:
            raise SnapshotRefused(f"it is not a plugin database ({error})") from None
        with closing(connect(target, read_only=True)) as mirror:
            _check_takes_shipping(plugin_id, marks_of(mirror))
        with ThreadPoolExecutor(max_workers=3) as pool:
            checks = [pool.submit(backup.integrity_problems, received), pool.submit(_value_problems, received)]
            mirrored = pool.submit(_write_mirror, received, target, checks)

            def refuse_unless_mirrored() -> None:
                problem = mirrored.result()
                if problem:
                    raise SnapshotRefused(problem)

            try:
                with only_one_sync(wait_seconds=SYNC_WAIT_SECONDS):
                    sync_plugin(plugin_id, source=received, before_commit=refuse_unless_mirrored)
            except SyncAlreadyRunning:  # the next sync copies the mirror
                refuse_unless_mirrored()
            except SnapshotRefused:
                raise
            except Exception:
                refuse_unless_mirrored()  # a damaged file may fail the sync before its check says so
                raise
    _record(plugin_id, host, every_seconds, rows)
    return {**acknowledged(plugin_id), "rows": rows}


def _write_mirror(received: Path, target: Path, checks: list) -> str:
    """Copy the received file into the mirror with SQLite's online backup, in steps, in one write
    transaction (its readers see the old mirror or the new): the last step, which commits, waits
    for the checks, and a problem they find undoes it all. Returns that problem, or ''."""
    problem = ""

    def wait_for_checks() -> None:
        nonlocal problem
        problem = next((found for found in (check.result() for check in checks) if found), "")
        if problem:
            raise SnapshotRefused(problem)

    try:
        with closing(connect(received)) as source, closing(connect(target)) as mirror:
            pages = source.execute("PRAGMA page_count").fetchone()[0]
            step_pages = max(1, pages // 16)
            if pages <= step_pages:  # one step would copy and commit it all
                wait_for_checks()
            source.backup(
                mirror,
                pages=step_pages,
                progress=lambda status, remaining, total: wait_for_checks() if remaining <= step_pages else None,
            )
    except SnapshotRefused:
        pass
    return problem


def _receive(body, target: Path) -> None:
    """Decompress a snapshot into ``target``, refused past ZEPIX_MAX_SNAPSHOT_MB or once the disk
    would keep less than DISK_LEFT_BYTES free."""
    limit = min(settings.MAX_SNAPSHOT_BYTES, shutil.disk_usage(target.parent).free - DISK_LEFT_BYTES)
    written = 0
    try:
        with (
            open(target, "wb") as out,
            zstandard.ZstdDecompressor().stream_reader(body, read_size=backup.CHUNK_BYTES) as reader,
        ):
            while block := reader.read(backup.CHUNK_BYTES):
                written += len(block)
                if written > limit:
                    raise SnapshotRefused(
                        f"it is over {max(limit, 0) // (1 << 20)} MB once decompressed "
                        "(ZEPIX_MAX_SNAPSHOT_MB, and the central's free disk)"
                    )
                out.write(block)
    except zstandard.ZstdError as error:
        raise Invalid(f"A snapshot is a zstd-compressed SQLite file: {error}") from None


def _schema_problem(source, mirror_path: Path) -> str:
    """'' when the received file has the mirror's schema, exactly, and an identity."""
    with closing(connect(mirror_path, read_only=True)) as mirror:
        theirs, ours = _shape(source), _shape(mirror)
    if theirs != ours:
        different = sorted({name for _, name, _ in theirs.symmetric_difference(ours)})
        return f"its schema is not the central's ({', '.join(different[:5])} differ)"
    identity = source.execute("SELECT COUNT(*), MAX(length(incarnation)) FROM zepix_identity").fetchone()
    if identity[0] != 1 or not 1 <= (identity[1] or 0) <= 64:
        return "it has no identity (zepix_identity)"
    return ""


def _value_problems(received: Path) -> str:
    """'' when every value has its column's type and no row is one the schema's triggers refuse
    (a batch's rows meet those triggers; a snapshot's were written on the host)."""
    try:
        with closing(connect(received, read_only=True)) as source:
            for table in SHIPPED_TABLES:
                problem = _type_problems(source, table, 0, 1 << 62, source=table)
                if problem:
                    return problem
                conditions = schema.REFUSALS.get(table, [])
                for condition, count in zip(conditions, schema.rows_meeting(source, table, conditions), strict=True):
                    if count:
                        return f"{table}: {count} row(s) the schema's triggers refuse ({condition})"
    except sqlite3.DatabaseError as error:
        return f"it cannot be read as a plugin database ({error})"
    return ""


def _shape(connection) -> set[tuple[str, str, str]]:
    """A database's schema: (type, name, SQL with its spacing evened out) of every table, index,
    trigger and view."""
    return {
        (kind, name, " ".join((sql or "").split()))
        for kind, name, sql in connection.execute("SELECT type, name, sql FROM sqlite_master")
    }


def _keep_the_mirrors_own(source, mirror_path: Path) -> None:
    """What batches never ship stays the mirror's own (its migrations, its signals): the
    received file takes those tables' rows from the mirror."""
    source.execute("ATTACH DATABASE ? AS held", (read_only_uri(mirror_path),))
    try:
        with immediate_transaction(source):
            for (table,) in source.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN "
                f"({', '.join('?' * len(SHIPPED_TABLES))}, 'zepix_identity')",
                SHIPPED_TABLES,
            ).fetchall():
                source.execute(f'DELETE FROM main."{table}"')
                source.execute(f'INSERT INTO main."{table}" SELECT * FROM held."{table}"')
    finally:
        source.execute("DETACH DATABASE held")


def _stage(mirror, table: str, rows: list[list]) -> None:
    """The batch's rows of a table in a temporary table of the same columns and affinities."""
    columns = schema.table_shapes()[table][0]
    mirror.execute(f"CREATE TEMP TABLE IF NOT EXISTS incoming_{table} AS SELECT * FROM main.{table} WHERE 0")
    mirror.execute(f"DELETE FROM incoming_{table}")
    mirror.executemany(f"INSERT INTO incoming_{table} VALUES ({', '.join('?' * len(columns))})", rows)


def _upsert_sql(table: str) -> str:
    columns, key, _ = schema.table_shapes()[table]
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
    """The central copy follows at once, after a sync that is running (the periodic one, most
    often: it may have read the mirror before this batch); one running longer than
    SYNC_WAIT_SECONDS leaves it to the next sync."""
    try:
        with only_one_sync(wait_seconds=SYNC_WAIT_SECONDS):
            sync_plugin(plugin_id)
    except SyncAlreadyRunning:
        pass
