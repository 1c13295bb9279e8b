"""A plugin database's schema: the bot's own DDL (the seed's, verbatim) and what the console adds.

The bot writes its plugin databases with plain SQL against the seed's tables, so those tables
are exactly the seed's: every column, type, default, key and CHECK as written there. What the
console adds (change numbers for the sync, ``updated_at``, the signals table, more indexes,
stricter checks) is added beside them and kept up by triggers, so a writer who knows only the
seed's columns leaves everything consistent. ``upgrade`` brings a database in the seed's shape
up to ours in place (adopting a bot's existing file); ``convert_first_shape`` rebuilds the
console's first, Django-made shape into this one (plugin migration 0003).

Standard library only: the bot may import it.
"""

import sqlite3
from contextlib import closing
from datetime import date
from functools import cache

# The seed's plugin DDL (shared/seeds/003), as written: the contract with the bot.
SEED_DDL = """
CREATE TABLE plugin_info (
    plugin_id TEXT PRIMARY KEY,
    version TEXT,
    last_started TIMESTAMP,
    total_runtime_hours REAL
);

CREATE TABLE trades (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mt5_ticket INTEGER UNIQUE,
    symbol TEXT NOT NULL,
    direction TEXT CHECK(direction IN ('BUY', 'SELL')),
    lot_size REAL NOT NULL,
    entry_price REAL NOT NULL,
    sl_price REAL,
    tp_price REAL,
    entry_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    exit_time TIMESTAMP,
    exit_price REAL,
    profit_pips REAL,
    profit_dollars REAL,
    commission REAL DEFAULT 0,
    swap REAL DEFAULT 0,
    status TEXT CHECK(status IN ('OPEN', 'CLOSED', 'PARTIAL')),
    close_reason TEXT,  -- 'TP', 'SL', 'MANUAL', 'REVERSAL'
    signal_data TEXT  -- JSON with original alert data
);

CREATE TABLE profit_chains (
    chain_id TEXT PRIMARY KEY,
    base_trade_id INTEGER REFERENCES trades(id),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    status TEXT CHECK(status IN ('ACTIVE', 'COMPLETED', 'CANCELLED')),
    current_level INTEGER DEFAULT 0,
    max_levels INTEGER,
    total_profit_booked REAL DEFAULT 0
);

CREATE TABLE chain_levels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id TEXT REFERENCES profit_chains(chain_id),
    level_number INTEGER,
    target_pips REAL,
    volume_to_close REAL,
    executed_at TIMESTAMP,
    profit_pips REAL,
    profit_dollars REAL
);

CREATE TABLE daily_stats (
    date TEXT PRIMARY KEY,
    total_trades INTEGER DEFAULT 0,
    winning_trades INTEGER DEFAULT 0,
    losing_trades INTEGER DEFAULT 0,
    breakeven_trades INTEGER DEFAULT 0,
    total_profit_pips REAL DEFAULT 0,
    total_profit_dollars REAL DEFAULT 0,
    max_drawdown REAL DEFAULT 0,
    largest_win REAL DEFAULT 0,
    largest_loss REAL DEFAULT 0
);

CREATE INDEX idx_trades_status ON trades(status);
CREATE INDEX idx_trades_symbol ON trades(symbol);
CREATE INDEX idx_trades_entry_time ON trades(entry_time);
"""

SEED_TABLES = ("plugin_info", "trades", "profit_chains", "chain_levels", "daily_stats")

# Every column of the seed's tables, as the bot writes them (what adoption requires).
SEED_COLUMNS = {
    "plugin_info": ("plugin_id", "version", "last_started", "total_runtime_hours"),
    "trades": (
        "id", "mt5_ticket", "symbol", "direction", "lot_size", "entry_price", "sl_price", "tp_price",
        "entry_time", "exit_time", "exit_price", "profit_pips", "profit_dollars", "commission", "swap",
        "status", "close_reason", "signal_data",
    ),
    "profit_chains": (
        "chain_id", "base_trade_id", "created_at", "status", "current_level", "max_levels", "total_profit_booked",
    ),
    "chain_levels": (
        "id", "chain_id", "level_number", "target_pips", "volume_to_close", "executed_at", "profit_pips",
        "profit_dollars",
    ),
    "daily_stats": (
        "date", "total_trades", "winning_trades", "losing_trades", "breakeven_trades", "total_profit_pips",
        "total_profit_dollars", "max_drawdown", "largest_win", "largest_loss",
    ),
}  # fmt: skip

# The tables the sync copies incrementally: each gets a change number, bumped by triggers on
# every insert and update whoever writes (SQLite serialises writers, so numbers follow commit
# order and the sync's high-water mark has no gaps). PluginStore numbers its own trades in the
# statement (cheaper than the trigger's second write per row).
NUMBERED_TABLES = ("trades", "profit_chains", "chain_levels", "daily_stats", "plugin_info")
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _numbering_sql(table: str) -> list[str]:
    next_seq = f"(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM {table})"
    stamped = table in ("trades", "profit_chains")  # the tables with an updated_at
    on_insert = f", updated_at = COALESCE(NEW.updated_at, {NOW})" if stamped else ""
    on_update = f", updated_at = {NOW}" if stamped else ""
    return [
        f"CREATE INDEX IF NOT EXISTS {table}_change_seq_idx ON {table}(change_seq)",
        f"CREATE TRIGGER IF NOT EXISTS {table}_change_seq_on_insert AFTER INSERT ON {table} "
        f"WHEN NEW.change_seq = 0 BEGIN "
        f"UPDATE {table} SET change_seq = {next_seq}{on_insert} WHERE rowid = NEW.rowid; END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_change_seq_on_update AFTER UPDATE ON {table} "
        f"WHEN NEW.change_seq <= OLD.change_seq BEGIN "
        f"UPDATE {table} SET change_seq = {next_seq}{on_update} WHERE rowid = NEW.rowid; END",
    ]


# What the console adds to the seed's tables: columns (filled by defaults and the triggers
# above), indexes for its pages and the sync, and checks the seed's own values pass.
ADDED_COLUMNS = {
    "trades": ("updated_at TIMESTAMP", "change_seq INTEGER NOT NULL DEFAULT 0"),
    "profit_chains": ("updated_at TIMESTAMP", "change_seq INTEGER NOT NULL DEFAULT 0"),
    "chain_levels": ("change_seq INTEGER NOT NULL DEFAULT 0",),
    "daily_stats": ("change_seq INTEGER NOT NULL DEFAULT 0",),
    "plugin_info": ("last_heartbeat TIMESTAMP", "change_seq INTEGER NOT NULL DEFAULT 0"),
}


def _refuse(table: str, name: str, events: str, condition: str, message: str) -> str:
    REFUSALS.setdefault(table, []).append(condition.replace("NEW.", ""))
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {events} ON {table} WHEN {condition} "
        f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


# {table: [the condition on a row's columns under which a trigger below refuses it]}: what a
# batch meets in these triggers, checked by hand on a shipped snapshot (its rows passed them on
# the host, as far as the central can tell).
REFUSALS: dict[str, list[str]] = {}

ADDITIONS = [
    # The admin filters on status or symbol and lists newest first: each index serves the
    # filter and the order together (a symbol-only index sorts a fifth of the table).
    "CREATE INDEX IF NOT EXISTS trades_status_entry_idx ON trades(status, entry_time)",
    "CREATE INDEX IF NOT EXISTS trades_symbol_entry_idx ON trades(symbol, entry_time)",
    "CREATE INDEX IF NOT EXISTS trades_exit_time_idx ON trades(exit_time)",
    # The overview's newest active chains: one index range, not a sort of every active chain
    # (355 ms for 5 plugins of 20,000 active chains without it).
    "CREATE INDEX IF NOT EXISTS profit_chains_status_created_idx ON profit_chains(status, created_at)",
    "CREATE INDEX IF NOT EXISTS profit_chains_base_trade_idx ON profit_chains(base_trade_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS chain_levels_chain_level_idx ON chain_levels(chain_id, level_number)",
    # A trade the console cannot key (it syncs by plugin and ticket), or one it could not
    # have made: refused, whoever writes it.
    _refuse("trades", "trades_ticket_required", "INSERT", "NEW.mt5_ticket IS NULL", "mt5_ticket is required"),
    _refuse(
        "trades",
        "trades_values_checked_on_insert",
        "INSERT",
        "NEW.lot_size <= 0 OR NEW.entry_price <= 0 OR NEW.direction IS NULL "
        "OR (NEW.close_reason IS NOT NULL AND NEW.close_reason NOT IN ('TP', 'SL', 'MANUAL', 'REVERSAL')) "
        "OR (NEW.status = 'CLOSED' AND (NEW.exit_time IS NULL OR NEW.exit_price IS NULL))",
        "trade refused: lot_size and entry_price must be positive, direction given, close_reason one of "
        "TP SL MANUAL REVERSAL, a CLOSED trade needs exit_time and exit_price",
    ),
    _refuse(
        "trades",
        "trades_values_checked_on_update",
        "UPDATE",
        "NEW.lot_size <= 0 OR NEW.entry_price <= 0 OR NEW.mt5_ticket IS NULL "
        "OR (NEW.close_reason IS NOT NULL AND NEW.close_reason NOT IN ('TP', 'SL', 'MANUAL', 'REVERSAL')) "
        "OR (NEW.status = 'CLOSED' AND (NEW.exit_time IS NULL OR NEW.exit_price IS NULL))",
        "trade refused: lot_size and entry_price must be positive, mt5_ticket kept, close_reason one of "
        "TP SL MANUAL REVERSAL, a CLOSED trade needs exit_time and exit_price",
    ),
    # The seed leaves status without a default: a trade written without one is open.
    "CREATE TRIGGER IF NOT EXISTS trades_status_default AFTER INSERT ON trades WHEN NEW.status IS NULL "
    "BEGIN UPDATE trades SET status = 'OPEN' WHERE rowid = NEW.rowid; END",
    "CREATE TRIGGER IF NOT EXISTS profit_chains_status_default AFTER INSERT ON profit_chains "
    "WHEN NEW.status IS NULL BEGIN UPDATE profit_chains SET status = 'ACTIVE' WHERE rowid = NEW.rowid; END",
    # Signals: what the plugin received and what it did with it (the console's own table).
    "CREATE TABLE IF NOT EXISTS signals (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TIMESTAMP NOT NULL, "
    "symbol TEXT NOT NULL, signal_type TEXT NOT NULL, timeframe TEXT NOT NULL DEFAULT '', "
    "payload TEXT NOT NULL DEFAULT '{}', action TEXT NOT NULL DEFAULT '', trade_ticket INTEGER)",
    "CREATE INDEX IF NOT EXISTS signals_received_at_idx ON signals(received_at)",
    *(statement for table in NUMBERED_TABLES for statement in _numbering_sql(table)),
]


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def seed_problems(connection: sqlite3.Connection) -> list[str]:
    """What keeps a database from being the seed's shape (empty when it is)."""
    problems = []
    for table, wanted in SEED_COLUMNS.items():
        present = set(columns(connection, table))
        if not present:
            problems.append(f"no table {table}")
        elif missing := [column for column in wanted if column not in present]:
            problems.append(f"table {table} has no column {', '.join(missing)}")
    if not problems:
        untickted = connection.execute("SELECT COUNT(*) FROM trades WHERE mt5_ticket IS NULL").fetchone()[0]
        if untickted:
            problems.append(f"{untickted} trade(s) have no mt5_ticket (the console keys trades by ticket)")
        problems += rows_not_held(connection)
    return problems


def create(connection: sqlite3.Connection) -> None:
    """A new plugin database: the seed's tables, then ours. Runs inside the caller's transaction."""
    _create_seed_tables(connection)
    upgrade(connection)


def _create_seed_tables(connection: sqlite3.Connection) -> None:
    for statement in SEED_DDL.split(";"):
        if statement.strip():
            connection.execute(statement)


def _add_columns(connection: sqlite3.Connection) -> None:
    """The console's columns on the seed's tables, those not there yet."""
    for table, added in ADDED_COLUMNS.items():
        present = set(columns(connection, table))
        for definition in added:
            if definition.split()[0] not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


def upgrade(connection: sqlite3.Connection) -> None:
    """The seed's shape brought up to ours, in place and idempotently: columns added (existing
    rows numbered in table order), indexes, triggers, the signals table. Every row is kept."""
    _add_columns(connection)
    for table in NUMBERED_TABLES:
        # Rows there before the triggers: numbered in table order (a rowid is unique and rises).
        connection.execute(f"UPDATE {table} SET change_seq = rowid WHERE change_seq = 0")
    for statement in (*ADDITIONS, *value_triggers()):
        connection.execute(statement)


# Values the console can hold. SQLite keeps whatever a column is given: a text in a REAL column
# ('' for a price not known yet), a NULL entry time, February 30th. Synced, such a value stopped
# the plugin's sync for good (a NULL entry time: the day's totals have no day) or every page that
# showed it (Django cannot read 'abc' as a number); on PostgreSQL the central column refuses it.
# So the plugin's own database refuses it at the write, whoever writes, with the column named.
@cache
def table_shapes() -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """{table: (columns, primary key, {column: declared type})} of the tables the sync copies and
    hosts ship, made from this module's DDL (never from a file or a request), when first asked."""
    with closing(sqlite3.connect(":memory:")) as connection:
        _create_seed_tables(connection)
        _add_columns(connection)
        shapes = {}
        for table in NUMBERED_TABLES:
            info = connection.execute(f"PRAGMA table_info({table})").fetchall()
            key = next(row[1] for row in info if row[5] == 1)
            shapes[table] = ([row[1] for row in info], key, {row[1]: (row[2] or "").upper() for row in info})
        return shapes


INT32 = 2**31 - 1
# Below the central copy's own limits (sync_app.models: a DecimalField's digits, an IntegerField's
# 32 bits), with room for a day's sum of profits; other numbers are any finite one under 1e15.
NUMBER_LIMITS: dict[str, dict[str, float]] = {
    "trades": {
        "lot_size": 1e7, "entry_price": 1e12, "sl_price": 1e12, "tp_price": 1e12, "exit_price": 1e12,
        "profit_pips": 1e10, "profit_dollars": 1e9, "commission": 1e9, "swap": 1e9,
    },
    "profit_chains": {"current_level": INT32, "max_levels": INT32},
    "chain_levels": {"level_number": INT32},
    "daily_stats": dict.fromkeys(("total_trades", "winning_trades", "losing_trades", "breakeven_trades"), INT32),
}  # fmt: skip
ANY_NUMBER_LIMIT = 1e15
TEXT_LIMIT = 100_000  # characters
# The central copy's rows have these (a trade's day is its entry time's, a chain is keyed by its id).
REQUIRED = {"trades": ("entry_time", "direction", "status"), "profit_chains": ("chain_id",), "daily_stats": ("date",)}
DEFAULTED_ON_INSERT = (("trades", "status"),)  # trades_status_default: NULL is OPEN
# A time as SQLite and Django both read it: YYYY-MM-DD HH:MM (a space or a T), then seconds, a
# fraction, a zone as julianday() reads them; from 1970 to 2999, hours under 24, a real calendar day
# (SQLite reads February 30th and 24:00 as written: Django does not). In UTC: the central copy's
# days on SQLite are the text's own (a time at 01:00+02:00 fell on the next day there, not on
# PostgreSQL), so a zone, if written, is Z or +00:00.
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(2999, 12, 31)
FIRST_DAY, AFTER_LAST_DAY = 2440587.5, 2816787.5  # julianday('1970-01-01'), julianday('3000-01-01')


# A time the console holds (any shape wrong_value_sql takes; {} the value) in the text Django
# writes and compares on SQLite: YYYY-MM-DD HH:MM:SS, then .ffffff unless it is 0, UTC
# without a zone. The central copy compares times as text: 2026-11-27T09:00 sorted after
# 2026-11-27 15:00, and a page link's time (Django's text) skipped a day's trades timed with a T.
# Text only, never SQLite's own time functions, which round a fraction to the millisecond.
DJANGO_TIME_SQL = (
    # The texts most bots write (CURRENT_TIMESTAMP, isoformat(), Python's sqlite3 adapter) and
    # the plugin's own triggers (strftime's milliseconds) are taken first, each WHEN stopping at
    # its first false test: 0.2-0.4 us a time, where the whole of it takes 2 us (a full sync of
    # 1,000,000 trades, their chains and levels reads some 2,600,000 times).
    "(CASE WHEN {} IS NULL THEN NULL "
    "WHEN length({}) = 19 THEN CASE substr({}, 11, 1) WHEN ' ' THEN {} "
    "ELSE substr({}, 1, 10) || ' ' || substr({}, 12) END "
    "WHEN length({}) = 26 AND substr({}, 11, 1) = ' ' AND substr({}, 26) BETWEEN '0' AND '9' "
    "AND substr({}, 21) != '000000' THEN {} "
    "WHEN length({}) = 23 AND substr({}, 11, 1) = ' ' AND substr({}, 23) BETWEEN '0' AND '9' "
    "THEN CASE substr({}, 21) WHEN '000' THEN substr({}, 1, 19) ELSE {} || '000' END "
    "ELSE substr({}, 1, 10) || ' ' || CASE WHEN substr({}, 17, 1) = ':' THEN substr({}, 12, 8) "
    "ELSE substr({}, 12, 5) || ':00' END || CASE WHEN substr({}, 20, 1) = '.' THEN coalesce(nullif('.' || substr("
    "rtrim(replace(replace(substr({}, 21), '+00:00', ''), '-00:00', ''), 'Z') || '000000', 1, 6), '.000000'), '') "
    "ELSE '' END END)"
)


def wrong_value_sql(table: str, column: str, row: str = "", *, inserting: bool = False) -> str:
    """SQL true where a column's value is one the console cannot hold (``row``: "NEW." in a
    trigger, ``inserting`` in an insert's, before defaults). It runs for every row the bot writes
    and every value a shipped file holds, so each test is a CASE's WHEN, cheapest first: SQLite
    stops at the first that decides, where an AND or OR that gives a value evaluates both sides
    (the time's checks as ANDs: 1.7 us a value, 0.6 as WHENs; the whole of a snapshot of 200,000
    trades 1.19 s against 0.58 s for types alone). typeof(x) IN (...) in a trigger built the
    list's table again for every row (5-9 us each)."""
    value, declared = f"{row}{column}", _declared(table, column)
    required = column in REQUIRED.get(table, ()) and not (inserting and (table, column) in DEFAULTED_ON_INSERT)
    null = "1" if required else "0"
    limit = _number_limit(table, column)
    if (table, column) == ("daily_stats", "date"):
        return f"({value} IS NULL OR date({value}, '+0 days') IS NOT {value})"
    if "INT" in declared:
        number = f"abs({value}) > {limit:.0f}" if limit else "0"
        return f"(CASE typeof({value}) WHEN 'integer' THEN {number} WHEN 'null' THEN {null} ELSE 1 END)"
    if declared == "REAL":
        number = f"abs({value}) >= {limit:g}"
        return (
            f"(CASE typeof({value}) WHEN 'real' THEN {number} WHEN 'integer' THEN {number} "
            f"WHEN 'null' THEN {null} ELSE 1 END)"
        )
    if declared == "TIMESTAMP":
        month_day = f"substr({value}, 6, 5)"
        no_such_day = " OR ".join(
            f"{month_day} = '{day}'" for day in ("02-30", "02-31", "04-31", "06-31", "09-31", "11-31")
        )
        time = (
            f"CASE WHEN NOT ({value} LIKE '____-__-__ __:__%' OR {value} LIKE '____-__-__T__:__%') THEN 1 "
            f"WHEN COALESCE(julianday({value}) BETWEEN {FIRST_DAY} AND {AFTER_LAST_DAY - 1e-5}, 0) = 0 THEN 1 "
            f"WHEN ({value} LIKE '%+__:__' OR {value} LIKE '%-__:__') AND substr({value}, -5) != '00:00' THEN 1 "
            f"WHEN substr({value}, 12, 2) >= '24' THEN 1 WHEN substr({value}, 9, 2) <= '28' THEN 0 "
            f"WHEN {no_such_day} THEN 1 WHEN {month_day} = '02-29' "
            f"THEN date(substr({value}, 1, 10), '+0 days') != substr({value}, 1, 10) ELSE 0 END"
        )
        return f"(CASE typeof({value}) WHEN 'text' THEN {time} WHEN 'null' THEN {null} ELSE 1 END)"
    return f"(CASE typeof({value}) WHEN 'text' THEN length({value}) > {TEXT_LIMIT} WHEN 'null' THEN {null} ELSE 1 END)"


def is_time(table: str, column: str) -> bool:
    return _declared(table, column) == "TIMESTAMP"


def _declared(table: str, column: str) -> str:
    return table_shapes()[table][2][column]


def _number_limit(table: str, column: str) -> float | None:
    """The bound of a number's column (None: a whole number SQLite's 64 bits hold)."""
    default = ANY_NUMBER_LIMIT if _declared(table, column) == "REAL" else None
    return NUMBER_LIMITS.get(table, {}).get(column, default)


def what_is_held(table: str, column: str) -> str:
    """What a column holds, said to whoever wrote something else."""
    declared, limit = _declared(table, column), _number_limit(table, column)
    if (table, column) == ("daily_stats", "date"):
        what = "a date written YYYY-MM-DD"
    elif "INT" in declared:
        what = "a whole number" + (f" of at most {limit:,.0f}" if limit else "")
    elif declared == "REAL":
        what = f"a number under {limit:,.0f}"
    elif declared == "TIMESTAMP":
        what = "a time in UTC written YYYY-MM-DD HH:MM[:SS[.fff]] (a zone, if any, Z or +00:00), from 1970 to 2999"
    else:
        what = f"a text of at most {TEXT_LIMIT} characters"
    return what + (", never NULL" if column in REQUIRED.get(table, ()) else "")


def _value_trigger(table: str, event: str) -> str:
    checked = [column for column in SEED_COLUMNS[table] if column != "id"]  # a rowid: SQLite checks it
    inserting = event == "INSERT"
    refusals = " ".join(
        f"WHEN {wrong_value_sql(table, column, 'NEW.', inserting=inserting)} "
        f"THEN RAISE(ABORT, '{table} row refused: {column} must be {what_is_held(table, column)}')"
        for column in checked
    )
    of = f" OF {', '.join(checked)}" if event == "UPDATE" else ""  # not the change number's own update
    condition = " OR ".join(wrong_value_sql(table, column, "NEW.", inserting=inserting) for column in checked)
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_values_held_on_{event.lower()} BEFORE {event}{of} ON {table} "
        f"WHEN {condition} BEGIN SELECT CASE {refusals} END; END"
    )


@cache
def value_triggers() -> list[str]:
    """The triggers that refuse a value the console cannot hold, on the seed's five tables."""
    return [_value_trigger(table, event) for table in SEED_TABLES for event in ("INSERT", "UPDATE")]


def rows_not_held(connection: sqlite3.Connection) -> list[str]:
    """What of a database's rows the console could not hold, column by column (empty when none)."""
    problems = []
    for table in SEED_TABLES:
        columns = SEED_COLUMNS[table]
        counts = rows_meeting(connection, table, [wrong_value_sql(table, column) for column in columns])
        problems += [
            f"{count} row(s) of {table} whose {column} is not {what_is_held(table, column)}"
            for column, count in zip(columns, counts, strict=True)
            if count
        ]
    return problems


def rows_meeting(connection, table: str, conditions: list[str], params=()) -> list[int]:
    """How many rows meet each condition (each may hold the ``params`` in turn). Whether any row
    does first, in one EXISTS over them joined by OR, then (rarely) the counts: 200,000 trades'
    type check took 0.62 s against 1.15 s for a count per column."""
    if not conditions:
        return []
    where = " OR ".join(f"({condition})" for condition in conditions)
    if not connection.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {where})", params).fetchone()[0]:
        return [0] * len(conditions)
    sums = ", ".join(f"COALESCE(SUM({condition}), 0)" for condition in conditions)
    return list(connection.execute(f"SELECT {sums} FROM {table}", params).fetchone())


# The console's first shape (plugin migration 0001, made by Django) → this one. Column by column:
# what each new column is filled from in the old table ("old" is the renamed old table).
FIRST_SHAPE_COPIES = {
    "trades": (
        "id, mt5_ticket, symbol, direction, lot_size, entry_price, sl_price, tp_price, entry_time, exit_time, "
        "exit_price, profit_pips, profit_dollars, commission, swap, status, close_reason, signal_data, "
        "updated_at, change_seq",
        "id, ticket, symbol, direction, lot_size, entry_price, sl_price, tp_price, entry_time, exit_time, "
        "exit_price, profit_pips, profit_dollars, commission, swap, status, close_reason, signal_data, "
        "updated_at, change_seq",
    ),
    "profit_chains": (
        "chain_id, base_trade_id, created_at, status, current_level, max_levels, total_profit_booked, updated_at",
        "CAST(id AS TEXT), (SELECT MIN(t.id) FROM old_trades t WHERE t.chain_id = old.id), created_at, "
        "CASE status WHEN 'STOPPED' THEN 'CANCELLED' ELSE status END, current_level, max_level, total_profit, "
        "updated_at",
    ),
    "chain_levels": (
        "id, chain_id, level_number, target_pips, volume_to_close, executed_at, profit_dollars",
        "id, CAST(chain_id AS TEXT), level, target_pips, lot_size, "
        "CASE status WHEN 'CLOSED' THEN (SELECT c.updated_at FROM old_profit_chains c WHERE c.id = old.chain_id) END, "
        "CASE status WHEN 'CLOSED' THEN profit END",
    ),
    "daily_stats": (
        "date, total_trades, winning_trades, losing_trades, breakeven_trades, total_profit_pips, "
        "total_profit_dollars, max_drawdown, largest_win, largest_loss",
        "date, total_trades, wins, losses, breakeven, "
        "(SELECT COALESCE(SUM(t.profit_pips), 0) FROM old_trades t WHERE t.status = 'CLOSED' "
        "AND t.exit_time >= old.date AND t.exit_time < date(old.date, '+1 day')), "
        "total_profit, max_drawdown, largest_win, largest_loss",
    ),
    "plugin_info": (
        "plugin_id, version, last_started, total_runtime_hours",
        "plugin_id, version, last_started, runtime_hours",
    ),
}


def convert_first_shape(connection: sqlite3.Connection) -> None:
    """Rebuild the tables of the console's first shape into the seed's plus ours, rows kept
    (trades keep their change numbers: the sync's high-water mark stays valid)."""
    for table in SEED_TABLES:
        connection.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
    for name in [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]:
        connection.execute(f"DROP TRIGGER {name}")
    _create_seed_tables(connection)
    _add_columns(connection)  # before the copy: the trades' change numbers and times come along
    for table, (target, source) in FIRST_SHAPE_COPIES.items():
        connection.execute(f"INSERT INTO {table} ({target}) SELECT {source} FROM old_{table} AS old")
    for table in reversed(SEED_TABLES):
        connection.execute(f"DROP TABLE old_{table}")
    upgrade(connection)
