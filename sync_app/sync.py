"""The cross-plugin sync: brings the central database up to date with every enabled plugin.

The rows each plugin changed since its high-water mark (``trades.change_seq``) are upserted
with set-based SQL, in one transaction that also moves the mark. So a run costs what
changed, and a crash at any point leaves either the whole batch or none of it.

On SQLite the plugin's file is attached read-only to a connection on the central database
(``src.trades``). On PostgreSQL the changed rows are read from the plugin's file and COPYed
into temporary tables of the central columns' types (``src_trades``); the same SQL then runs
against them. The SQL is written once; ``Engine`` spells the few things each engine says
its own way.
"""

import json
import logging
import re
import sqlite3
import time
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from django.db import DataError, IntegrityError, connections, transaction
from django.db.models import Sum
from django.utils import timezone

from config_app.service import current as current_version
from config_app.service import document_of, global_settings
from plugins_app import plugins
from plugins_app.schema import DJANGO_TIME_SQL, SEED_COLUMNS, is_time
from plugins_app.sqlite import connect, immediate_transaction, read_only_uri
from plugins_app.store import BREAKEVEN_DOLLARS, TRADE_COLUMNS, db_datetime
from sync_app.models import (
    AggregatedTrade,
    CrossPluginStats,
    PluginSyncState,
    ShippingState,
    SyncRun,
    SystemMetrics,
    TradeTotals,
)
from zepix_admin.core import home
from zepix_admin.core.alerts import raise_alert, resolve_alert
from zepix_admin.core.databases import checkpointing, database_file, on_postgresql, outage
from zepix_admin.core.errors import Conflict
from zepix_admin.core.files import Busy, file_lock

logger = logging.getLogger("zepix.sync")

# Every trade column the bot writes (defined once, in plugins_app.store) but the signal's JSON,
# which stays with the plugin; and the change number, the sync's cursor.
NOT_COPIED = ("signal_data",)
COPIED_COLUMNS = (*(column for column in TRADE_COLUMNS if column not in NOT_COPIED), "change_seq")

# The columns the central indexes sort by (what a trade was opened with, its status and its
# profit) rarely change once synced: the upsert leaves them alone, so updating a trade's swap
# or stop rewrites no secondary index, and fix_indexed_sql() sets them on the few changed
# trades where they differ (a trade closing, an edited opening or profit). An index entry is
# rewritten whenever its column is SET, even to the same value: with the profit in the
# upsert, 500 random swap updates dirtied about 500 more pages of the profit index.
INDEXED_COLUMNS = ("symbol", "direction", "entry_time", "entry_price", "status", "profit_dollars")


def _taken(table: str, column: str, alias: str = "") -> str:
    """A plugin table's column as its central copy takes it: a time in Django's own text (TIME)."""
    return f"TIME({alias}{column})" if is_time(table, column) else f"{alias}{column}"


# Made when first asked, as the plugin tables' shapes they read (plugins_app.schema.table_shapes).
@cache
def upsert_trades_sql() -> str:
    return (
        f"INSERT INTO aggregated_trades (plugin_id, {', '.join(COPIED_COLUMNS)}, trade_id, synced_at) "
        f"SELECT :plugin_id, {', '.join(_taken('trades', column) for column in COPIED_COLUMNS)}, id, :now "
        "FROM SRC.trades WHERE change_seq > :since AND change_seq <= :until "
        "ON CONFLICT (plugin_id, mt5_ticket) DO UPDATE SET "
        + ", ".join(
            f"{column} = excluded.{column}"
            for column in (*COPIED_COLUMNS[1:], "trade_id", "synced_at")
            if column not in INDEXED_COLUMNS
        )
    )


@cache
def fix_indexed_sql() -> str:
    return (
        "UPDATE aggregated_trades SET "
        + ", ".join(
            f"{column} = (SELECT {_taken('trades', column, 's.')} FROM SRC.trades s "
            "WHERE s.mt5_ticket = aggregated_trades.mt5_ticket)"
            for column in INDEXED_COLUMNS
        )
        + " WHERE id IN (SELECT id FROM central_before WHERE moved)"  # central_before_sql(), below the rollups
    )


@dataclass(frozen=True)
class Engine:
    """What the sync's SQL spells differently on each engine of the central database. The
    SQL says SRC.table for a plugin's table, DAY(x) for the UTC day of a time, MONEY(x) for
    a sum rounded to the cent, UNINDEXED(x) for a column the planner must not take an index
    for, TIME(x) for a plugin's time as the central column holds it, and :name or ? for
    parameters."""

    source: str  # what SRC. becomes
    day: str
    money: str
    unindexed: str
    named_parameters: bool  # sqlite3's :name and ?, or psycopg's %(name)s and %s
    time: str = "{}"

    def __call__(self, sql: str) -> str:
        return _spelled(self, sql)


SQLITE = Engine("src.", "substr({}, 1, 10)", "ROUND({}, 2)", "+{}", named_parameters=True, time=DJANGO_TIME_SQL)
# The plugin's file itself, read with a connection of its own (the PostgreSQL sync's side).
PLUGIN_FILE = Engine("", "substr({}, 1, 10)", "ROUND({}, 2)", "+{}", named_parameters=True)
POSTGRES = Engine("src_", "CAST({} AS date)", "ROUND(CAST({} AS numeric), 2)", "{}", named_parameters=False)


@cache
def _spelled(engine: Engine, sql: str) -> str:
    sql = sql.replace("SRC.", engine.source)
    macros = (("DAY", engine.day), ("MONEY", engine.money), ("UNINDEXED", engine.unindexed), ("TIME", engine.time))
    for macro, spelling in macros:
        sql = re.sub(r"\b" + macro + r"\(([^()]*)\)", spelling.replace("{}", r"\1"), sql)
    if not engine.named_parameters:
        sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql).replace("?", "%s")
    return sql


class Connection:
    """A connection the sync's SQL runs on, spelled for its engine."""

    def __init__(self, raw, engine: Engine):
        self.raw, self.engine = raw, engine

    def execute(self, sql: str, params=()):
        return self.raw.execute(self.engine(sql), params)

    def executemany(self, sql: str, rows) -> None:
        self.raw.executemany(self.engine(sql), rows)

    def one(self, sql: str, params=()):
        return self.execute(sql, params).fetchone()[0]


@dataclass(frozen=True)
class CopiedTable:
    """One of the plugin's other tables and its central copy: ``columns`` are (central, source)
    pairs, the first ``key`` of them the row's key beside plugin_id."""

    central: str
    key: int
    columns: tuple[tuple[str, str], ...]

    def upsert_sql(self, table: str) -> str:
        targets = ", ".join(target for target, _ in self.columns)
        sources = ", ".join(_taken(table, source) for _, source in self.columns)
        keys = ", ".join(["plugin_id", *(target for target, _ in self.columns[: self.key])])
        updates = ", ".join(f"{target} = excluded.{target}" for target, _ in self.columns[self.key :])
        return (
            f"INSERT INTO {self.central} (plugin_id, {targets}) SELECT :plugin_id, {sources} FROM SRC.{table} "
            f"WHERE change_seq > :since AND change_seq <= :until ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        )


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names)


# Everything else the sync copies: chains and their levels, daily stats, plugin info. Their
# columns are the bot's (plugins_app.schema.SEED_COLUMNS, defined once), plus what we add.
OTHER_TABLES = {
    "profit_chains": CopiedTable("aggregated_chains", 1, _same(*SEED_COLUMNS["profit_chains"], "updated_at")),
    # The level's own id is its key beside the plugin's: it is level_id centrally.
    "chain_levels": CopiedTable(
        "aggregated_chain_levels", 1, (("level_id", "id"), *_same(*SEED_COLUMNS["chain_levels"][1:]))
    ),
    "daily_stats": CopiedTable("aggregated_daily_stats", 1, _same(*SEED_COLUMNS["daily_stats"])),
    # One row per plugin, whatever id the bot wrote in it: the central row is the declared plugin's.
    "plugin_info": CopiedTable("aggregated_plugin_info", 0, _same(*SEED_COLUMNS["plugin_info"][1:], "last_heartbeat")),
}


class SyncAlreadyRunning(Conflict):
    pass


@dataclass
class Copied:
    """What one sync of one plugin did to the central rows."""

    inserted: int = 0
    updated: int = 0
    removed: int = 0
    reconciled: bool = False

    def add(self, copied: "Copied") -> None:
        self.inserted += copied.inserted
        self.updated += copied.updated
        self.removed += copied.removed
        self.reconciled = self.reconciled or copied.reconciled


@dataclass
class PluginResult(Copied):
    """What a run did for one plugin, over its attempts."""

    retries: int = 0
    error: str = ""

    def add(self, copied: Copied) -> None:
        super().add(copied)
        self.error = ""


def sync_settings() -> dict:
    return global_settings("sync")


def enabled_plugins() -> list[str]:
    enabled = []
    for plugin_id in plugins.plugin_ids():
        version = current_version(plugin_id)  # declared already: no second look at the folder
        if version is None or document_of(version).get("enabled", True):
            enabled.append(plugin_id)
    return enabled


@contextmanager
def only_one_sync(wait_seconds: float = 0.0):
    """Hold the sync lock; SyncAlreadyRunning when another sync holds it still after
    ``wait_seconds``."""
    refusal = "Another sync is running; try again when it has finished."
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(settings.DATA_DIR / "sync.lock", wait_seconds=wait_seconds))
        except Busy:
            raise SyncAlreadyRunning(refusal) from None
        try:
            yield
        except Busy:
            raise SyncAlreadyRunning(refusal) from None


class Progress:
    """Where a running sync stands for each plugin, saved on its SyncRun as it goes so that the
    sync page shows it live: waiting, syncing (retry n of m), waiting to retry, done or failed,
    with the seconds each attempt took. One small UPDATE per step."""

    def __init__(self, run: SyncRun, plugin_ids: list[str], *, retries: int):
        self.run, self.retries = run, retries
        self.states: dict[str, dict] = {
            plugin_id: {"state": "waiting", "retries_allowed": retries} for plugin_id in plugin_ids
        }
        self._save()

    def step(self, plugin_id: str, state: str, **details) -> None:
        self.states[plugin_id] = {**self.states[plugin_id], "state": state, **details}
        self._save()

    def _save(self) -> None:
        self.run.plugins = self.states
        self.run.save(update_fields=["plugins"])


def sync_targets(plugin_ids: list[str] | None = None) -> list[str]:
    """The plugins a sync of these (default: every enabled one) covers."""
    return [plugins.check_declared(plugin_id) for plugin_id in plugin_ids] if plugin_ids else enabled_plugins()


def changes_waiting(plugin_ids: list[str]) -> int:
    """How many trades the plugins changed past their marks: what a sync will copy (an unreadable
    plugin counts 0; its sync says what is wrong)."""
    marks = dict(PluginSyncState.objects.filter(plugin_id__in=plugin_ids).values_list("plugin_id", "high_water_mark"))
    waiting = 0
    for plugin_id in plugin_ids:
        try:
            with closing(connect(plugins.database_path(plugin_id), read_only=True, timeout=1)) as source:
                waiting += source.execute(
                    "SELECT COUNT(*) FROM trades WHERE change_seq > ?", (marks.get(plugin_id, 0),)
                ).fetchone()[0]
        except sqlite3.Error:
            continue
    return waiting


def run_sync(
    *,
    plugin_ids: list[str] | None = None,
    trigger: str,
    actor: str = "system",
    sleep=time.sleep,
    on_rows=None,
) -> SyncRun:
    """Sync the given (default: every enabled) plugins; one failing plugin never stops the others.

    Failing plugins are retried after each of the configured delays; a plugin that still fails
    counts one more consecutive failure, and at the threshold an alert is raised. ``on_rows(n)``
    hears of the trades each plugin's sync copied."""
    home.check()
    targets = sync_targets(plugin_ids)
    options = sync_settings()
    # Each plugin's pages are copied from the central log into its file while the next one
    # syncs (see CENTRAL_WAL_AUTOCHECKPOINT_PAGES): the run then waits only for the last one's.
    with only_one_sync(), checkpointing("default") as copy_soon:
        run = SyncRun.begin(trigger=trigger, actor=actor)
        results = {plugin_id: PluginResult() for plugin_id in targets}
        pending, delays = list(targets), list(options["retry_delays_seconds"])
        progress = Progress(run, targets, retries=len(delays))
        while pending:
            failed = []
            for plugin_id in pending:
                progress.step(plugin_id, "syncing", retry=results[plugin_id].retries)
                started = time.perf_counter()
                try:
                    results[plugin_id].add(sync_plugin(plugin_id, lock_wait_seconds=options["lock_wait_seconds"]))
                except Exception as error:  # noqa: BLE001 - any failure of one plugin is recorded, not raised
                    results[plugin_id].error = describe_failure(plugin_id, error)
                    failed.append(plugin_id)
                    logger.warning("Sync of %s failed: %s", plugin_id, results[plugin_id].error)
                    progress.step(
                        plugin_id,
                        "waiting to retry" if delays else "failed",
                        retry=results[plugin_id].retries + 1 if delays else results[plugin_id].retries,
                        error=results[plugin_id].error,
                        seconds=time.perf_counter() - started,
                    )
                else:
                    if on_rows:
                        on_rows(results[plugin_id].inserted + results[plugin_id].updated)
                    progress.step(
                        plugin_id, "done", seconds=time.perf_counter() - started, **asdict(results[plugin_id])
                    )
                    copy_soon()
            if not failed or not delays:
                break
            sleep(delays.pop(0))
            for plugin_id in failed:
                results[plugin_id].retries += 1
            pending = failed
        _finish(run, results, progress, options)
    return run


def _finish(run: SyncRun, results: dict[str, PluginResult], progress: Progress, options: dict) -> None:
    """Each plugin's outcome (failures counted, alerts), the metrics, the run's record."""
    for plugin_id, result in results.items():
        _record_outcome(plugin_id, result, options)
    take_metrics_snapshot()
    failures = [plugin_id for plugin_id, result in results.items() if result.error]
    run.status = (
        SyncRun.Status.OK
        if not failures
        else SyncRun.Status.FAILED
        if len(failures) == len(results)
        else SyncRun.Status.PARTIAL
    )
    run.plugins = {plugin_id: {**progress.states[plugin_id], **asdict(result)} for plugin_id, result in results.items()}
    run.error = "; ".join(f"{plugin_id}: {results[plugin_id].error}" for plugin_id in failures)
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "plugins", "error", "finished_at"])


def describe_failure(plugin_id: str, error: Exception) -> str:
    """What went wrong, in an operator's words when the plugin's database is the cause."""
    problem = plugins.database_problem(plugin_id) if isinstance(error, sqlite3.DatabaseError) else None
    if problem:
        return f"{problem}. {plugins.repair_hint(plugin_id, problem)}"
    away = outage(error)  # the central database's side: a full disk, PostgreSQL away
    if away is not None:
        return f"{away.what}: {error}. It is synced {away.again}."
    if isinstance(error, sqlite3.IntegrityError | DataError | IntegrityError) and (
        not_held := plugins.rows_not_held(plugin_id)
    ):
        more = f"; and {len(not_held) - 3} more" if len(not_held) > 3 else ""
        return (
            f"The central copy cannot take {'; '.join(not_held[:3])}{more} ({error}). Correct those rows in "
            f"{plugins.database_path(plugin_id)}: the plugin is synced again once they are"
        )
    return f"{type(error).__name__}: {error}"


def _record_outcome(plugin_id: str, result: PluginResult, options: dict) -> None:
    state, _ = PluginSyncState.objects.get_or_create(plugin_id=plugin_id)
    state.last_attempt_at = timezone.now()
    if result.error:
        state.consecutive_failures += 1
        state.last_error = result.error
        if state.consecutive_failures >= options["alert_after_failures"]:
            raise_alert(
                "sync",
                plugin_id,
                f"Sync of {plugin_id} failed {state.consecutive_failures} times in a row: {result.error}",
                level="CRITICAL",
            )
    else:
        if state.consecutive_failures:  # only failures raise the alert: nothing to resolve otherwise
            resolve_alert("sync", plugin_id)
        state.consecutive_failures = 0
        state.last_error = ""
        state.last_success_at = state.last_attempt_at
    state.save(update_fields=["last_attempt_at", "consecutive_failures", "last_error", "last_success_at"])


# On SQLite a sync's transaction holds the central database's write lock, and every other writer
# (a config save, a sign-in, an audit entry) waits for it: a plugin's first sync of 600,000
# trades held a `config set` 5 s, and one of 1,500,000 would have failed it after the 20 s busy
# timeout. A sync copies at most settings.SYNC_TRADES_PER_TRANSACTION trades a transaction
# (200,000: about 3 s here), its mark moving with each; after each it lets go of the lock for a
# moment, as long as a waiting writer's busy handler sleeps between its tries (up to 100 ms), or
# the next transaction would take the lock again first. (PostgreSQL locks rows: a save never
# waits for a sync there.)
BETWEEN_TRANSACTIONS_SECONDS = 0.1


def sync_plugin(
    plugin_id: str, lock_wait_seconds: float = 2, *, source: Path | None = None, before_commit=None
) -> Copied:
    """Copy one plugin's changed rows (trades, chains, levels, daily stats, info) into the central database.

    ``source``: read another file than the plugin's database, one that is about to become it (a
    bot host's snapshot); ``before_commit()`` runs last inside the transaction, and what it
    raises undoes the whole sync (which is then one transaction, however large)."""
    state, _ = PluginSyncState.objects.get_or_create(plugin_id=plugin_id)
    # A missing file fails to open; describe_failure names it.
    path = source or plugins.database_path(plugin_id)
    most = None if source or before_commit else settings.SYNC_TRADES_PER_TRANSACTION
    before_commit = before_commit or (lambda: None)
    if on_postgresql():
        return _sync_into_postgres(plugin_id, path, state, lock_wait_seconds, before_commit)
    raw = connect(database_file("default"), timeout=lock_wait_seconds)
    try:
        # Changed trades land all over the central indexes: a bigger page cache than SQLite's
        # 2 MB default keeps a batch from spilling and re-reading pages before its commit.
        raw.execute("PRAGMA cache_size = -65536")
        raw.execute(f"PRAGMA wal_autocheckpoint = {settings.CENTRAL_WAL_AUTOCHECKPOINT_PAGES}")
        raw.execute("ATTACH DATABASE ? AS src", (read_only_uri(path),))
        # And the plugin's file its own (a PRAGMA without a schema sets main's alone): each
        # statement reads the changed rows again, and at 2 MB 500 random ones fell out between
        # them (5 plugins' first rollup 154 -> 44-88 ms; a memory map gained no more, and would
        # turn a file truncated under it into a SIGBUS instead of an error).
        raw.execute("PRAGMA src.cache_size = -65536")
        central = Connection(raw, SQLITE)
        copied = Copied()
        while True:
            with immediate_transaction(raw):
                part = _copy_changes(central, central, plugin_id, state, most=most)
                before_commit()
            copied.add(part)
            if (
                most is None
                or part.inserted + part.updated < most
                or not central.one(
                    "SELECT EXISTS (SELECT 1 FROM SRC.trades WHERE change_seq > ?)", (state.high_water_mark,)
                )
            ):
                return copied
            let_writers_in()
    finally:
        raw.close()


def let_writers_in() -> None:
    time.sleep(BETWEEN_TRANSACTIONS_SECONDS)


def _sync_into_postgres(
    plugin_id: str, path, state: PluginSyncState, lock_wait_seconds: float, before_commit
) -> Copied:
    """The plugin's file is read in one snapshot; what changed is staged by COPY and applied in
    one PostgreSQL transaction."""
    with (
        closing(connect(path, read_only=True, timeout=lock_wait_seconds)) as plugin_file,
        transaction.atomic(using="default"),
        connections["default"].cursor() as cursor,
    ):
        # Consumers on other machines share this database, not the sync's lock file: the
        # plugin's state row, locked until the commit, lets one sync of a plugin run at a
        # time, and the next one starts from the marks the first has moved.
        state = PluginSyncState.objects.select_for_update().get(pk=state.pk)
        plugin_file.execute("BEGIN")  # one snapshot of every table, read after the lock
        source = Connection(plugin_file, PLUGIN_FILE)
        central = Connection(cursor, POSTGRES)
        copied = _copy_changes(central, source, plugin_id, state, stage=_stage)
        before_commit()
    if copied.inserted + copied.updated >= ANALYZE_AFTER_ROWS:
        with connections["default"].cursor() as cursor:  # the planner's statistics, before autovacuum's
            cursor.execute("ANALYZE aggregated_trades")
    return copied


# A sync that copied this many trades into PostgreSQL updates the planner's statistics at once:
# the next incremental sync, planned on the statistics of an emptier table, joined the changed
# rows by scanning every central trade.
ANALYZE_AFTER_ROWS = 50_000


STAGED = (
    ("trades", "aggregated_trades", (*((column, column) for column in COPIED_COLUMNS), ("trade_id", "id"))),
    *((table, spec.central, spec.columns) for table, spec in OTHER_TABLES.items()),
)


def _stage(central: Connection, source: Connection, ranges: dict[str, tuple[int, int]]) -> None:
    """Each plugin table's rows in its range, COPYed into a temporary src_<table> of the central
    columns' types (so PostgreSQL parses the file's times and dates once, on the way in)."""
    cursor = central.raw
    for table, target, columns in STAGED:
        since, until = ranges.get(table, (0, 0))
        if until <= since and table != "trades":  # only the trades' table is read whatever changed
            continue
        sources = [source_column for _, source_column in columns]
        typed = ", ".join(f"{column} AS {source_column}" for column, source_column in columns)
        seq = "" if "change_seq" in sources else ", CAST(NULL AS bigint) AS change_seq"
        cursor.execute(
            f"CREATE TEMP TABLE src_{table} ON COMMIT DROP AS SELECT {typed}{seq} FROM {target} WITH NO DATA"
        )
        if until <= since:
            continue
        listed = ", ".join([*sources, *(["change_seq"] if seq else [])])
        rows = source.execute(f"SELECT {listed} FROM {table} WHERE change_seq > ? AND change_seq <= ?", (since, until))
        with cursor.copy(f"COPY src_{table} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if table == "trades":  # the statements that fix the central copies look trades up by ticket
            cursor.execute("CREATE INDEX ON src_trades (mt5_ticket)")
        cursor.execute(f"ANALYZE src_{table}")  # temporary tables have no statistics until asked


def _identity(source: Connection) -> str:
    try:
        row = source.execute("SELECT incarnation FROM SRC.zepix_identity").fetchone()
    except sqlite3.OperationalError:
        return ""  # a database without our identity table: the change numbers still tell
    return row[0] if row else ""


def _replaced(source: Connection, state: PluginSyncState, identity: str, until: int) -> str:
    """Why the plugin's file is not the one the last sync read ('' when it is): a new identity
    (every backup copy and restore stamps one), or change numbers gone backwards (the trade
    that carried the high-water mark now has a lower number, or is gone). Two indexed lookups:
    the high-water mark alone misses a restore followed by enough new trades."""
    if state.incarnation and identity != state.incarnation:
        return "its database was replaced (restored from a backup or copied in)"
    if until < state.high_water_mark:
        return "its change numbers went backwards"
    if state.last_ticket is not None:
        row = source.execute("SELECT change_seq FROM SRC.trades WHERE mt5_ticket = ?", (state.last_ticket,)).fetchone()
        if row is None or row[0] < state.high_water_mark:
            return "its change numbers went backwards"
    return ""


def _copy_changes(
    central: Connection, source: Connection, plugin_id: str, state: PluginSyncState, stage=None, most=None
) -> Copied:
    """``state`` is where the last sync left the plugin (read before this transaction: only the
    sync, which runs alone, moves it). ``source`` reads the plugin's tables (on SQLite, the
    central connection itself); ``stage`` puts the rows to copy where ``central`` reads them;
    ``most``: copy the ``most`` oldest changed trades only, the mark after them (a replaced file
    too: its first transaction takes out what the file no longer has)."""
    since, identity = state.high_water_mark, _identity(source)
    until = source.one("SELECT COALESCE(MAX(change_seq), 0) FROM SRC.trades")
    # One indexed lookup per table: where each of the other tables stands.
    marks = {table: source.one(f"SELECT COALESCE(MAX(change_seq), 0) FROM SRC.{table}") for table in OTHER_TABLES}
    old_marks = {table: state.table_marks.get(table, 0) for table in OTHER_TABLES}
    replaced = _replaced(source, state, identity, until) or (
        "its change numbers went backwards" if any(marks[t] < old_marks[t] for t in marks) else ""
    )
    if not replaced and until == since and identity == state.incarnation and marks == old_marks:
        return Copied()  # nothing to write, not even the mark
    if replaced:
        logger.warning("%s: %s; reconciling its central rows with the file", plugin_id, replaced)
        since, old_marks = 0, dict.fromkeys(OTHER_TABLES, 0)
    if most:
        bound = source.execute(
            "SELECT change_seq FROM SRC.trades WHERE change_seq > ? ORDER BY change_seq LIMIT 1 OFFSET ?",
            (since, most - 1),
        ).fetchone()
        until = min(until, bound[0]) if bound else until
    if stage:
        stage(central, source, {"trades": (since, until), **{t: (old_marks[t], marks[t]) for t in OTHER_TABLES}})
    removed = _start_over(central, plugin_id) if replaced else 0
    copied = _copy_range(central, plugin_id, since, until) if until != since else Copied()
    for table, spec in OTHER_TABLES.items():
        if marks[table] != old_marks[table]:
            params = {"plugin_id": plugin_id, "since": old_marks[table], "until": marks[table]}
            central.execute(spec.upsert_sql(table), params)
    last_ticket = source.execute("SELECT mt5_ticket FROM SRC.trades WHERE change_seq = ?", (until,)).fetchone()
    _remember(central, state, until, identity, marks, last_ticket[0] if last_ticket else None)
    return Copied(copied.inserted, copied.updated, removed, bool(replaced))


def _start_over(central: Connection, plugin_id: str) -> int:
    """A replaced file: the central copies of trades the file no longer has leave, their totals
    taken out of the rollups, and the other tables (small) are copied again whole. Returns how
    many trades left. Every trade the file has is then copied as a changed one, from change number
    0: the rollups stay the totals of the central copies after each transaction, so a large file
    is reconciled a transaction at a time like any sync (rebuilt whole, in one transaction, the
    rollups held other writers of the central SQLite file about 4 s per 200,000 trades). Every
    trade of the file is in SRC.trades."""
    params = {"plugin_id": plugin_id, "even": BREAKEVEN_DOLLARS}
    central.execute(
        f"CREATE TEMP TABLE gone AS SELECT t.id, {', '.join(f't.{column}' for column in COUNTED_COLUMNS)} "
        "FROM aggregated_trades t WHERE t.plugin_id = :plugin_id "
        "AND NOT EXISTS (SELECT 1 FROM SRC.trades s WHERE s.mt5_ticket = t.mt5_ticket)",
        params,
    )
    removed = central.one("SELECT COUNT(*) FROM gone")
    if removed:
        for rollup in ROLLUPS:
            rollup.move(central, params, now="", before="FROM gone t WHERE true")
        central.execute("DELETE FROM aggregated_trades WHERE id IN (SELECT id FROM gone)")
    central.execute("DROP TABLE gone")
    for spec in OTHER_TABLES.values():
        central.execute(f"DELETE FROM {spec.central} WHERE plugin_id = ?", (plugin_id,))
    return removed


def _remember(
    central: Connection, state: PluginSyncState, until: int, identity: str, marks: dict, last_ticket: int | None
) -> None:
    """The new high-water marks, the trade that carries the trades' mark and the file's identity,
    in the same transaction; and on ``state``, where the next transaction of the same sync starts
    (the object is the sync's own)."""
    state.high_water_mark, state.incarnation, state.table_marks, state.last_ticket = until, identity, marks, last_ticket
    central.execute(
        "UPDATE sync_app_pluginsyncstate SET high_water_mark = :until, incarnation = :identity, "
        "table_marks = :marks, last_ticket = :last_ticket WHERE plugin_id = :plugin_id",
        {
            "until": until,
            "identity": identity,
            "plugin_id": state.plugin_id,
            "marks": json.dumps(marks),
            "last_ticket": last_ticket,
        },
    )


def _copy_range(central: Connection, plugin_id: str, since: int, until: int) -> Copied:
    params = {
        "plugin_id": plugin_id,
        "since": since,
        "until": until,
        "now": timezone.now() if central.engine is POSTGRES else db_datetime(timezone.now()),
        "even": BREAKEVEN_DOLLARS,
    }
    # A plugin's first sync has no central copies to read: the join looked each of its trades up
    # in vain (116 ms a plugin of 200,000 trades, 3% of its full sync).
    first = since == 0 and not central.one(
        "SELECT EXISTS (SELECT 1 FROM aggregated_trades WHERE plugin_id = :plugin_id)", params
    )
    updated = moved = 0
    if not first:
        central.execute(central_before_sql(), params)
        updated, moved = central.execute(
            "SELECT COUNT(*), COUNT(CASE WHEN moved THEN 1 END) FROM central_before"
        ).fetchone()
    # The rollups move by deltas, before the central copies change: what the changed trades
    # count now less what their central copies counted. The cost follows the changed rows, not
    # the groups they touch; a trade whose counted columns are as its central copy's (a swap
    # updated) leaves both sides.
    now = "FROM SRC.trades t WHERE t.change_seq > :since AND t.change_seq <= :until"
    for rollup in ROLLUPS:
        if updated:
            rollup.move(
                central,
                params,
                now=f"{now} AND t.mt5_ticket NOT IN (SELECT mt5_ticket FROM central_before WHERE NOT recounted)",
                before="FROM central_before t WHERE recounted",
            )
        else:
            rollup.move(central, params, now=now, before="")
    if moved:
        central.execute(fix_indexed_sql(), params)
    changed = central.execute(upsert_trades_sql(), params).rowcount  # inserted and updated rows alike
    if not first:
        central.execute("DROP TABLE central_before")
    return Copied(changed - updated, updated)


@dataclass(frozen=True)
class Rollup:
    """A central table of per-group totals of each plugin's trades (aliased t), moved by deltas."""

    table: str
    keys: tuple[tuple[str, str], ...]  # (column, expression over t)
    sums: tuple[tuple[str, str], ...]  # (column, aggregate over the group)
    only: str = ""  # which trades count
    money: tuple[str, ...] = ("profit",)  # summed columns kept to the cent

    @property
    def counted_columns(self) -> set[str]:
        """The trade's columns its expressions read (t.column)."""
        expressions = [expression for _, expression in (*self.keys, *self.sums)] + [self.only]
        return set(re.findall(r"\bt\.(\w+)", " ".join(expressions)))

    def totals_sql(self, source: str, *, taken: bool = False) -> str:
        """Each group's totals over ``source``, negative when ``taken``."""
        sign = "0 - " if taken else ""
        columns = ", ".join(
            [
                *(f"{expression} AS {column}" for column, expression in self.keys),
                *(f"{sign}{expression} AS {column}" for column, expression in self.sums),
            ]
        )
        only = f" AND {self.only}" if self.only else ""
        return f"SELECT {columns} {source}{only} GROUP BY {', '.join(str(n + 1) for n in range(len(self.keys)))}"

    def move(self, central: Connection, params: dict, *, now: str, before: str) -> None:
        """Moves each group by what the changed trades count ``now`` less what they counted
        ``before`` (either '': nothing counted before, or nothing now), writing only the groups whose totals
        moved: an update of a trade's swap or stop moves none. (Taking the old totals out and
        putting the new ones in wrote every group the changed trades touch twice: 1,000 random
        updates dirtied some 300 rollup pages per plugin.)"""
        keys, sums = [column for column, _ in self.keys], [column for column, _ in self.sums]
        counts = [n for n, column in enumerate(sums) if column not in self.money]
        moved = [*([self.totals_sql(now)] if now else []), *([self.totals_sql(before, taken=True)] if before else [])]
        kept = [f"MONEY({c})" if c in self.money else c for c in sums]  # cents less the same cents: 0.0 or 1e-15
        groups = (
            f"SELECT {', '.join([*keys, *(f'{k} AS {c}' for k, c in zip(kept, sums, strict=True))])} FROM ("
            f"SELECT {', '.join(keys)}, {', '.join(f'SUM({c}) AS {c}' for c in sums)} "
            f"FROM ({' UNION ALL '.join(moved)}) AS moved GROUP BY {', '.join(keys)}) AS totals "
            f"WHERE {' OR '.join(f'{c} <> 0' for c in kept)}"
        )
        added = f"ON CONFLICT (plugin_id, {', '.join(keys)}) DO UPDATE SET " + ", ".join(
            f"{c} = MONEY({self.table}.{c} + excluded.{c})"
            if c in self.money
            else f"{c} = {self.table}.{c} + excluded.{c}"
            for c in sums
        )
        columns = ", ".join([*keys, *sums])
        inserted = f"INSERT INTO {self.table} (plugin_id, {columns})"
        if not before:  # every group grows: one statement (a full sync's thousands of groups stay in SQL)
            central.execute(
                f"{inserted} SELECT :plugin_id, {columns} FROM ({groups}) AS grown WHERE true {added}",
                params,
            )
            return
        # A group that loses trades exists already, and its negative counts would fail the
        # table's CHECK as an INSERT's row before any ON CONFLICT: it is updated instead.
        grown: list[tuple] = []
        shrunk: list[tuple] = []
        for group in central.execute(groups, params).fetchall():
            (shrunk if any(group[len(keys) + n] < 0 for n in counts) else grown).append(group)
        central.executemany(
            f"{inserted} VALUES ({', '.join(['?'] * (1 + len(keys) + len(sums)))}) {added}",
            [(params["plugin_id"], *group) for group in grown],
        )
        updates = ", ".join(f"{c} = MONEY({c} + ?)" if c in self.money else f"{c} = {c} + ?" for c in sums)
        matching = " AND ".join(f"{column} = ?" for column in ["plugin_id", *keys])
        central.executemany(
            f"UPDATE {self.table} SET {updates} WHERE {matching}",
            [(*group[len(keys) :], params["plugin_id"], *group[: len(keys)]) for group in shrunk],
        )
        if shrunk:  # only a group that lost trades can be left with none
            central.execute(f"DELETE FROM {self.table} WHERE plugin_id = :plugin_id AND trades_count = 0", params)


# What the closed trades made per exit day (the seed's cross_plugin_stats), and every trade
# counted per entry day, symbol, direction and status (the trade search's exact totals).
ROLLUPS = (
    Rollup(
        "cross_plugin_stats",
        keys=(("date", "DAY(t.exit_time)"),),
        sums=(
            ("trades_count", "COUNT(*)"),
            ("wins", "COUNT(CASE WHEN t.profit_dollars > :even THEN 1 END)"),
            ("losses", "COUNT(CASE WHEN t.profit_dollars < 0 - :even THEN 1 END)"),
            ("profit", "COALESCE(SUM(t.profit_dollars), 0)"),
        ),
        # On SQLite the status index would scan every closed trade; the change_seq range is the narrow one
        only="UNINDEXED(t.status) = 'CLOSED'",
    ),
    Rollup(
        "trade_totals",
        keys=(
            ("day", "DAY(t.entry_time)"),
            ("symbol", "t.symbol"),
            ("direction", "t.direction"),
            ("status", "t.status"),
        ),
        sums=(("trades_count", "COUNT(*)"), ("profit", "COALESCE(SUM(t.profit_dollars), 0)")),
    ),
)


def _differs(columns) -> str:
    differences = (f"t.{column} IS DISTINCT FROM {_taken('trades', column, 's.')}" for column in columns)
    return "(" + " OR ".join(differences) + ")"


COUNTED_COLUMNS = tuple(sorted(set().union(*(rollup.counted_columns for rollup in ROLLUPS))))


@cache
def central_before_sql() -> str:
    """The central copies of the changed trades as they are before the sync, read once into a
    temporary table: the count of updates, the rollups' old totals and the fix of indexed
    columns all read them from there (each read them again through the central indexes: four
    joins of the same rows, 35 of the recent case's 99 ms a round). ``moved``: an indexed column
    differs in the plugin's row (fix_indexed_sql() sets them); ``recounted``: a column the rollups
    count by differs (only those trades, and the new ones, move the rollups: a swap's update
    moves none)."""
    return (
        "CREATE TEMP TABLE central_before AS SELECT t.id, t.mt5_ticket, "
        + ", ".join(f"t.{column}" for column in sorted({*INDEXED_COLUMNS, *COUNTED_COLUMNS}))
        + f", {_differs(INDEXED_COLUMNS)} AS moved, {_differs(COUNTED_COLUMNS)} AS recounted "
        # CROSS JOIN fixes the join order: from the few changed rows to their central copies,
        # never the other way round over the plugin's whole history.
        "FROM SRC.trades s CROSS JOIN aggregated_trades t WHERE t.plugin_id = :plugin_id "
        "AND t.mt5_ticket = s.mt5_ticket AND s.change_seq > :since AND s.change_seq <= :until"
    )


def take_metrics_snapshot() -> SystemMetrics:
    today = timezone.now().date()
    open_trades = AggregatedTrade.objects.filter(status__in=["OPEN", "PARTIAL"]).count()
    return SystemMetrics.objects.create(
        timestamp=timezone.now(),
        total_open_trades=open_trades,
        total_daily_profit=CrossPluginStats.objects.filter(date=today).aggregate(total=Sum("profit"))["total"] or 0,
        active_plugins=",".join(enabled_plugins()),
        total_trades=TradeTotals.objects.aggregate(total=Sum("trades_count", default=0))["total"],
    )


def reset_failures(plugin_id: str) -> None:
    PluginSyncState.objects.filter(plugin_id=plugins.check_declared(plugin_id)).update(
        consecutive_failures=0, last_error=""
    )
    resolve_alert("sync", plugin_id)


OK, DEGRADED, FAILING = "OK", "DEGRADED", "FAILING"


def plugin_health(state: PluginSyncState | None, threshold: int) -> str:
    if state is None or state.consecutive_failures == 0:
        return OK
    return FAILING if state.consecutive_failures >= threshold else DEGRADED


STALE_INTERVALS = 3  # a bot host that has not shipped for this many of its intervals is DEGRADED


def stale_hosts(states=None) -> dict[str, str]:
    """{plugin_id: why} of the plugins whose bot host (ship_changes) has stopped shipping."""
    now = timezone.now()
    stale = {}
    for state in ShippingState.objects.exclude(every_seconds=None) if states is None else states:
        if state.every_seconds is None:
            continue
        age = (now - state.last_batch_at).total_seconds()
        if age > STALE_INTERVALS * state.every_seconds:
            stale[state.plugin_id] = (
                f"its host {state.host or '?'} has not shipped for {age:.0f} s "
                f"(it ships every {state.every_seconds:g} s)"
            )
    return stale


def health() -> dict:
    """{"overall": OK|DEGRADED|FAILING, "plugins": {plugin_id: {...}}} for pages, commands and /healthz."""
    threshold = sync_settings()["alert_after_failures"]
    states = {state.plugin_id: state for state in PluginSyncState.objects.all()}
    shipped = {state.plugin_id: state for state in ShippingState.objects.all()}
    stale = stale_hosts(shipped.values())
    per_plugin = {}
    for plugin_id in plugins.plugin_ids():
        state = states.get(plugin_id)
        level = plugin_health(state, threshold)
        per_plugin[plugin_id] = {
            "health": DEGRADED if level == OK and plugin_id in stale else level,
            "host_silent": stale.get(plugin_id, ""),
            "shipped_by": shipped[plugin_id].host if plugin_id in shipped else "",
            "last_batch_at": shipped[plugin_id].last_batch_at if plugin_id in shipped else None,
            "consecutive_failures": state.consecutive_failures if state else 0,
            "last_success_at": state.last_success_at if state else None,
            "last_error": state.last_error if state else "",
            "high_water_mark": state.high_water_mark if state else 0,
        }
    levels = [entry["health"] for entry in per_plugin.values()]
    overall = FAILING if FAILING in levels else DEGRADED if DEGRADED in levels else OK
    return {"overall": overall, "plugins": per_plugin}
