"""The bot's side of a plugin database: a small write API over plain ``sqlite3``.

The bot's processes do not run Django, so this module does not need it: give it the
path of the plugin's SQLite file. The tables are the seed's (``plugins_app.schema``), so
the bot's own SQL and this API write the same rows. Each write is one IMMEDIATE
transaction: a trade write also recomputes the ``daily_stats`` row of every day it touched
(pips beside dollars), a chain level executed moves its chain in the same transaction.
The demo data, the tests and the benchmarks write through it too.
"""

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import overload

from plugins_app.sqlite import connect, immediate_transaction

# What Django registers too: decimals are bound as text and stored as numbers.
sqlite3.register_adapter(Decimal, str)

# The trade columns the bot writes (the seed's, less the row id): defined here once; the sync,
# the CSV export and the legacy import derive theirs.
TRADE_COLUMNS = (
    "mt5_ticket",
    "symbol",
    "direction",
    "lot_size",
    "entry_price",
    "sl_price",
    "tp_price",
    "entry_time",
    "exit_time",
    "exit_price",
    "profit_pips",
    "profit_dollars",
    "commission",
    "swap",
    "status",
    "close_reason",
    "signal_data",
)
_TRADE_COLUMN_SET = frozenset(TRADE_COLUMNS)
UPDATABLE_COLUMNS = _TRADE_COLUMN_SET - {"mt5_ticket"}
NEXT_CHANGE_SEQ = "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM trades)"
BREAKEVEN_DOLLARS = 0.5  # a closed trade within half a dollar of zero is breakeven
PROGRESS_ROWS = 1000  # how often a long save_trades reports progress


# A heartbeat adds the time since the previous one to the runtime, up to this: a longer
# silence means the plugin was not running.
HEARTBEAT_MAX_GAP = timedelta(minutes=5)


class TradeNotFound(LookupError):
    pass


class ChainNotFound(LookupError):
    pass


class ChainStateError(ValueError):
    """A chain or level asked to do what its state does not allow (execute twice, cancel a completed chain)."""


@overload
def db_datetime(value: datetime | str) -> str: ...
@overload
def db_datetime(value: None) -> None: ...
def db_datetime(value: datetime | str | None) -> str | None:
    """The text Django stores for a DateTimeField with USE_TZ: naive UTC, ISO with a space."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value)


@overload
def parse_db_datetime(value: str) -> datetime: ...
@overload
def parse_db_datetime(value: None) -> None: ...
def parse_db_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _trade_row(trade: dict, now: str) -> tuple:
    if not trade.keys() <= _TRADE_COLUMN_SET:
        raise ValueError(f"Unknown trade fields: {', '.join(sorted(trade.keys() - _TRADE_COLUMN_SET))}")
    get = trade.get
    return (
        get("mt5_ticket"),
        get("symbol"),
        get("direction"),
        get("lot_size"),
        get("entry_price"),
        get("sl_price"),
        get("tp_price"),
        db_datetime(get("entry_time") or now),
        db_datetime(get("exit_time")),
        get("exit_price"),
        get("profit_pips"),
        get("profit_dollars"),
        get("commission", 0),
        get("swap", 0),
        get("status", "OPEN"),
        get("close_reason"),
        json.dumps(get("signal_data") or {}),
        now,
    )


def _db_value(column: str, value):
    if column in ("entry_time", "exit_time"):
        return db_datetime(value)
    if column == "signal_data":
        return json.dumps(value if value is not None else {})
    return value


class PluginStore:
    """One store may be shared by the bot's threads: each thread gets its own connection (an
    sqlite3 connection must not be used by two threads at once), and SQLite's busy timeout
    queues their writes."""

    def __init__(self, database_path: str | Path, *, timeout: float = 20.0):
        self.path = Path(database_path)
        if not self.path.exists():
            raise FileNotFoundError(f"No plugin database at {self.path}; run `python manage.py setup` first.")
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.connection.execute("SELECT 1")  # open it now: a broken file fails here, not at the first write

    @property
    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path, timeout=self.timeout, closable_anywhere=True)
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Close every thread's connection (call it once the threads are done)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self):
        return immediate_transaction(self.connection)

    # Trades ---------------------------------------------------------------

    def save_trade(self, **trade) -> int:
        """Insert one trade; returns its mt5_ticket. Raises sqlite3.IntegrityError on a bad row."""
        return self.save_trades([trade])[0]

    def save_trades(self, trades: list[dict], on_rows: Callable[[int], object] | None = None) -> list[int]:
        """Insert the trades in one transaction; ``on_rows(n)`` hears of every PROGRESS_ROWS saved."""
        now = db_datetime(datetime.now(UTC))
        rows = [_trade_row(trade, now) for trade in trades]
        placeholders = ", ".join("?" * (len(TRADE_COLUMNS) + 2))

        def numbered(next_seq: int):
            for offset, row in enumerate(rows):
                if on_rows and offset and offset % PROGRESS_ROWS == 0:
                    on_rows(PROGRESS_ROWS)
                yield row + (next_seq + offset,)
            if on_rows and rows:
                on_rows(len(rows) % PROGRESS_ROWS or PROGRESS_ROWS)

        with self._write() as cursor:
            next_seq = cursor.execute(f"SELECT {NEXT_CHANGE_SEQ}").fetchone()[0]
            cursor.executemany(
                f"INSERT INTO trades ({', '.join(TRADE_COLUMNS)}, updated_at, change_seq) VALUES ({placeholders})",
                numbered(next_seq),
            )
            self._refresh_daily_stats(cursor, {row[TRADE_COLUMNS.index("exit_time")] for row in rows})
        return [trade["mt5_ticket"] for trade in trades]

    def update_trade(self, ticket: int, /, **changes) -> None:
        unknown = set(changes) - UPDATABLE_COLUMNS
        if unknown:
            raise ValueError(f"Cannot update trade fields: {', '.join(sorted(unknown))}")
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        values = [_db_value(column, value) for column, value in changes.items()]
        with self._write() as cursor:
            before = cursor.execute("SELECT exit_time FROM trades WHERE mt5_ticket = ?", (ticket,)).fetchone()
            if before is None:
                raise TradeNotFound(f"No trade with ticket {ticket}")
            cursor.execute(
                f"UPDATE trades SET {assignments}, updated_at = ?, change_seq = {NEXT_CHANGE_SEQ} WHERE mt5_ticket = ?",
                [*values, db_datetime(datetime.now(UTC)), ticket],
            )
            after = cursor.execute("SELECT exit_time FROM trades WHERE mt5_ticket = ?", (ticket,)).fetchone()
            self._refresh_daily_stats(cursor, {before["exit_time"], after["exit_time"]})

    def close_trade(
        self,
        ticket: int,
        *,
        exit_price,
        profit_pips,
        profit_dollars,
        close_reason: str,
        exit_time: datetime | None = None,
        commission=None,
        swap=None,
    ) -> None:
        changes = {
            "status": "CLOSED",
            "exit_price": exit_price,
            "exit_time": exit_time or datetime.now(UTC),
            "profit_pips": profit_pips,
            "profit_dollars": profit_dollars,
            "close_reason": close_reason,
        }
        if commission is not None:
            changes["commission"] = commission
        if swap is not None:
            changes["swap"] = swap
        self.update_trade(ticket, **changes)

    def trade_by_ticket(self, ticket: int) -> dict | None:
        row = self.connection.execute("SELECT * FROM trades WHERE mt5_ticket = ?", (ticket,)).fetchone()
        return _trade_dict(row) if row else None

    def open_trades(self, symbol: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM trades WHERE status != 'CLOSED'", []
        if symbol:
            sql, params = sql + " AND symbol = ?", [symbol]
        return [_trade_dict(row) for row in self.connection.execute(sql + " ORDER BY entry_time", params)]

    def max_ticket(self) -> int:
        return self.connection.execute("SELECT COALESCE(MAX(mt5_ticket), 0) FROM trades").fetchone()[0]

    # Signals, chains, info --------------------------------------------------

    def log_signal(
        self,
        *,
        symbol: str,
        signal_type: str,
        timeframe: str = "",
        payload: dict | None = None,
        action: str = "",
        trade_ticket: int | None = None,
        received_at: datetime | None = None,
    ) -> int:
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO signals (received_at, symbol, signal_type, timeframe, payload, action, trade_ticket)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    db_datetime(received_at or datetime.now(UTC)),
                    symbol,
                    signal_type,
                    timeframe,
                    json.dumps(payload or {}),
                    action,
                    trade_ticket,
                ),
            )
            return cursor.lastrowid

    def start_chain(
        self,
        *,
        base_ticket: int,
        levels: list[tuple[float, float]],
        chain_id: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """A profit chain on a base trade, each level given as (target pips, volume to close);
        returns its chain_id (a new UUID unless given)."""
        chain_id = chain_id or uuid.uuid4().hex
        stamp = db_datetime(created_at or datetime.now(UTC))
        with self._write() as cursor:
            base = cursor.execute("SELECT id FROM trades WHERE mt5_ticket = ?", (base_ticket,)).fetchone()
            if base is None:
                raise TradeNotFound(f"No trade with ticket {base_ticket}")
            cursor.execute(
                "INSERT INTO profit_chains (chain_id, base_trade_id, created_at, status, current_level, max_levels,"
                " total_profit_booked) VALUES (?, ?, ?, 'ACTIVE', 0, ?, 0)",
                (chain_id, base["id"], stamp, len(levels)),
            )
            cursor.executemany(
                "INSERT INTO chain_levels (chain_id, level_number, target_pips, volume_to_close) VALUES (?, ?, ?, ?)",
                [(chain_id, number, pips, volume) for number, (pips, volume) in enumerate(levels, 1)],
            )
        return chain_id

    def execute_level(
        self, chain_id: str, level_number: int, *, profit_pips, profit_dollars, executed_at: datetime | None = None
    ) -> dict:
        """Book one level of an active chain: the level's time, pips and dollars, and the chain's
        current level and booked profit, in one transaction. The last level completes the chain."""
        with self._write() as cursor:
            chain = self._active_chain(cursor, chain_id)
            level = cursor.execute(
                "SELECT executed_at FROM chain_levels WHERE chain_id = ? AND level_number = ?", (chain_id, level_number)
            ).fetchone()
            if level is None:
                raise ChainStateError(f"Chain {chain_id} has no level {level_number}")
            if level["executed_at"] is not None:
                raise ChainStateError(f"Level {level_number} of chain {chain_id} was executed already")
            cursor.execute(
                "UPDATE chain_levels SET executed_at = ?, profit_pips = ?, profit_dollars = ?"
                " WHERE chain_id = ? AND level_number = ?",
                (db_datetime(executed_at or datetime.now(UTC)), profit_pips, profit_dollars, chain_id, level_number),
            )
            done = level_number >= (chain["max_levels"] or 0)
            cursor.execute(
                "UPDATE profit_chains SET current_level = MAX(COALESCE(current_level, 0), ?),"
                " total_profit_booked = COALESCE(total_profit_booked, 0) + ?, status = ? WHERE chain_id = ?",
                (level_number, profit_dollars, "COMPLETED" if done else "ACTIVE", chain_id),
            )
        return self.chain(chain_id)

    def complete_chain(self, chain_id: str) -> None:
        self._end_chain(chain_id, "COMPLETED")

    def cancel_chain(self, chain_id: str) -> None:
        self._end_chain(chain_id, "CANCELLED")

    def _end_chain(self, chain_id: str, status: str) -> None:
        with self._write() as cursor:
            self._active_chain(cursor, chain_id)
            cursor.execute("UPDATE profit_chains SET status = ? WHERE chain_id = ?", (status, chain_id))

    @staticmethod
    def _active_chain(cursor, chain_id: str):
        chain = cursor.execute("SELECT * FROM profit_chains WHERE chain_id = ?", (chain_id,)).fetchone()
        if chain is None:
            raise ChainNotFound(f"No chain {chain_id}")
        if chain["status"] != "ACTIVE":
            raise ChainStateError(f"Chain {chain_id} is {chain['status']}, not ACTIVE")
        return chain

    def chain(self, chain_id: str) -> dict:
        row = self.connection.execute("SELECT * FROM profit_chains WHERE chain_id = ?", (chain_id,)).fetchone()
        if row is None:
            raise ChainNotFound(f"No chain {chain_id}")
        chain = dict(row)
        chain["levels"] = [
            dict(level)
            for level in self.connection.execute(
                "SELECT * FROM chain_levels WHERE chain_id = ? ORDER BY level_number", (chain_id,)
            )
        ]
        return chain

    def record_start(self, plugin_id: str, version: str, started_at: datetime | None = None) -> None:
        """The plugin (re)started: its version and start time; its runtime counts from here."""
        stamp = db_datetime(started_at or datetime.now(UTC))
        with self._write() as cursor:
            cursor.execute(
                "INSERT INTO plugin_info (plugin_id, version, last_started, total_runtime_hours, last_heartbeat)"
                " VALUES (?, ?, ?, 0, ?) ON CONFLICT(plugin_id) DO UPDATE SET version = excluded.version,"
                " last_started = excluded.last_started, last_heartbeat = excluded.last_heartbeat",
                (plugin_id, version, stamp, stamp),
            )

    def heartbeat(self, plugin_id: str, at: datetime | None = None) -> float:
        """The plugin is running: its runtime grows by the time since its last beat (at most
        HEARTBEAT_MAX_GAP). Returns the total runtime in hours."""
        now = at or datetime.now(UTC)
        with self._write() as cursor:
            row = cursor.execute(
                "SELECT last_heartbeat, total_runtime_hours FROM plugin_info WHERE plugin_id = ?", (plugin_id,)
            ).fetchone()
            if row is None:
                raise LookupError(f"No plugin_info for {plugin_id}: call record_start first")
            last = parse_db_datetime(row["last_heartbeat"]) if row["last_heartbeat"] else now
            gap = min(max(now - last, timedelta(0)), HEARTBEAT_MAX_GAP)
            total = (row["total_runtime_hours"] or 0) + gap.total_seconds() / 3600
            cursor.execute(
                "UPDATE plugin_info SET total_runtime_hours = ?, last_heartbeat = ? WHERE plugin_id = ?",
                (total, db_datetime(now), plugin_id),
            )
        return total

    def plugin_info(self, plugin_id: str) -> dict | None:
        row = self.connection.execute("SELECT * FROM plugin_info WHERE plugin_id = ?", (plugin_id,)).fetchone()
        return dict(row) if row else None

    # Daily stats ------------------------------------------------------------

    def daily_stats(self, day: date) -> dict | None:
        row = self.connection.execute("SELECT * FROM daily_stats WHERE date = ?", (day.isoformat(),)).fetchone()
        return dict(row) if row else None

    def _refresh_daily_stats(self, cursor, exit_times: set) -> None:
        """Recompute the daily_stats rows of the given exit days from the trades, in one range scan."""
        days = sorted({value[:10] for value in exit_times if value})
        if not days:
            return
        start = db_datetime(datetime.combine(date.fromisoformat(days[0]), time.min))
        end = db_datetime(datetime.combine(date.fromisoformat(days[-1]) + timedelta(days=1), time.min))
        closed_by_day: dict[str, list[tuple[float, float]]] = {day: [] for day in days}
        # "+status" keeps SQLite on the exit_time index: the status index would scan most of the table.
        rows = cursor.execute(
            "SELECT substr(exit_time, 1, 10), profit_dollars, profit_pips FROM trades"
            " WHERE exit_time >= ? AND exit_time < ? AND +status = 'CLOSED' ORDER BY exit_time, id",
            (start, end),
        )
        for day, dollars, pips in rows:
            if day in closed_by_day:
                closed_by_day[day].append((dollars or 0.0, pips or 0.0))
        for day, closed in closed_by_day.items():
            if not closed:
                cursor.execute("DELETE FROM daily_stats WHERE date = ?", (day,))
                continue
            cursor.execute(
                "INSERT INTO daily_stats (date, total_trades, winning_trades, losing_trades, breakeven_trades,"
                " total_profit_dollars, max_drawdown, largest_win, largest_loss, total_profit_pips)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(date) DO UPDATE SET total_trades = excluded.total_trades,"
                " winning_trades = excluded.winning_trades, losing_trades = excluded.losing_trades,"
                " breakeven_trades = excluded.breakeven_trades, total_profit_dollars = excluded.total_profit_dollars,"
                " max_drawdown = excluded.max_drawdown, largest_win = excluded.largest_win,"
                " largest_loss = excluded.largest_loss, total_profit_pips = excluded.total_profit_pips",
                (day, *day_summary([dollars for dollars, _ in closed]), round(sum(pips for _, pips in closed), 1)),
            )


def day_summary(profits: list[float]) -> tuple:
    """(trades, wins, losses, breakeven, profit, max drawdown, largest win, largest loss) of one day,
    the drawdown being the deepest fall of the running profit below its running peak."""
    wins = sum(1 for p in profits if p > BREAKEVEN_DOLLARS)
    losses = sum(1 for p in profits if p < -BREAKEVEN_DOLLARS)
    running = peak = drawdown = 0.0
    for profit in profits:
        running += profit
        peak = max(peak, running)
        drawdown = max(drawdown, peak - running)
    return (
        len(profits),
        wins,
        losses,
        len(profits) - wins - losses,
        round(sum(profits), 2),
        round(drawdown, 2),
        round(max(max(profits), 0.0), 2),
        round(min(min(profits), 0.0), 2),
    )


def _trade_dict(row: sqlite3.Row) -> dict:
    trade = dict(row)
    trade["signal_data"] = json.loads(trade["signal_data"] or "{}")
    for column in ("entry_time", "exit_time", "updated_at"):
        trade[column] = parse_db_datetime(trade[column])
    return trade
