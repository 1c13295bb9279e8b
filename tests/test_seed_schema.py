"""The bot's own schema: its DDL is a subset of ours, its plain SQL runs unchanged, everything it
writes is synced, an existing database in its shape is adopted, chains run their whole life."""

import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils.dateparse import parse_datetime

from plugins_app import plugins, schema
from plugins_app.store import ChainStateError, PluginStore
from sync_app.models import (
    AggregatedChain,
    AggregatedChainLevel,
    AggregatedDailyStats,
    AggregatedPluginInfo,
    AggregatedTrade,
    CrossPluginStats,
)
from tests.helpers import NOW, installed, manage, trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

# The plugin DDL of shared/seeds/003 (the database isolation strategy), copied as written.
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
TABLES = ("plugin_info", "trades", "profit_chains", "chain_levels", "daily_stats")
SEED_INDEXES = ("idx_trades_status", "idx_trades_symbol", "idx_trades_entry_time")

# What the bot writes with plain SQL, knowing only the seed's columns.
BOT_STATEMENTS = [
    "INSERT INTO plugin_info (plugin_id, version, last_started, total_runtime_hours) "
    "VALUES ('{plugin}', '3.1.0', '2026-11-20 08:00:00', 1.5)",
    "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
    "VALUES (7001, 'EURUSD', 'BUY', 0.1, 1.085, 'OPEN')",
    "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time, exit_time, exit_price, "
    "profit_pips, profit_dollars, status, close_reason, signal_data) VALUES (7002, 'XAUUSD', 'SELL', 0.2, 2350.0, "
    "'2026-11-20 09:00:00', '2026-11-20 10:00:00', 2340.0, 100.0, 200.0, 'CLOSED', 'TP', '{{\"rsi\": 71}}')",
    "INSERT INTO profit_chains (chain_id, base_trade_id, status, max_levels) "
    "VALUES ('chain-a', (SELECT id FROM trades WHERE mt5_ticket = 7001), 'ACTIVE', 3)",
    "INSERT INTO chain_levels (chain_id, level_number, target_pips, volume_to_close) VALUES ('chain-a', 1, 20, 0.03)",
    "INSERT INTO chain_levels (chain_id, level_number, target_pips, volume_to_close) VALUES ('chain-a', 2, 40, 0.03)",
    "UPDATE chain_levels SET executed_at = '2026-11-20 11:00:00', profit_pips = 20, profit_dollars = 6.0 "
    "WHERE chain_id = 'chain-a' AND level_number = 1",
    "UPDATE profit_chains SET current_level = 1, total_profit_booked = 6.0 WHERE chain_id = 'chain-a'",
    "INSERT INTO profit_chains (chain_id, base_trade_id, status, max_levels) "
    "VALUES ('chain-b', (SELECT id FROM trades WHERE mt5_ticket = 7002), 'CANCELLED', 2)",
    "INSERT INTO daily_stats (date, total_trades, winning_trades, total_profit_pips, total_profit_dollars) "
    "VALUES ('2026-11-20', 1, 1, 100.0, 200.0)",
]


def seed_database(path: Path, plugin: str = "breakout_v1") -> Path:
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript(SEED_DDL)
        for statement in BOT_STATEMENTS:
            connection.execute(statement.format(plugin=plugin))
        connection.commit()
    return path


def described(connection, table):
    return {row[1]: row[2:] for row in connection.execute(f"PRAGMA table_info({table})")}


def test_the_seeds_ddl_is_a_subset_of_every_plugin_database(tmp_path):
    with (
        closing(sqlite3.connect(seed_database(tmp_path / "seed.sqlite3"))) as seed,
        closing(sqlite3.connect(plugins.database_path("combined_v3"))) as ours,
    ):
        for table in TABLES:
            theirs = described(seed, table)
            assert {name: described(ours, table)[name] for name in theirs} == theirs, table
            assert list(ours.execute(f"PRAGMA foreign_key_list({table})")) == list(
                seed.execute(f"PRAGMA foreign_key_list({table})")
            )
            seed_sql = seed.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
            our_sql = ours.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
            assert our_sql.startswith(seed_sql.rstrip(")").rstrip()), table  # keys and CHECKs as written
        for index in SEED_INDEXES:
            assert list(ours.execute(f"PRAGMA index_info({index})")) == list(
                seed.execute(f"PRAGMA index_info({index})")
            )


def test_the_bots_own_sql_runs_unchanged_and_everything_it_writes_is_synced(config):
    with closing(sqlite3.connect(plugins.database_path("combined_v3"))) as bot:
        for statement in BOT_STATEMENTS:
            bot.execute(statement.format(plugin="combined_v3"))
        bot.commit()
        entry_time, change_seq, updated_at = bot.execute(
            "SELECT entry_time, change_seq, updated_at FROM trades WHERE mt5_ticket = 7001"
        ).fetchone()
    assert entry_time and change_seq > 0 and updated_at  # defaulted, numbered, stamped by the triggers
    call_command("sync_plugins")
    assert AggregatedTrade.objects.filter(plugin_id="combined_v3").count() == 2
    chains = {c.chain_id: c for c in AggregatedChain.objects.filter(plugin_id="combined_v3")}
    assert (chains["chain-a"].status, chains["chain-a"].current_level, chains["chain-a"].total_profit_booked) == (
        "ACTIVE",
        1,
        6.0,
    )
    assert chains["chain-b"].status == "CANCELLED"
    levels = AggregatedChainLevel.objects.filter(plugin_id="combined_v3", chain_id="chain-a").order_by("level_number")
    assert [(level.level_number, level.profit_dollars) for level in levels] == [(1, 6.0), (2, None)]
    day = AggregatedDailyStats.objects.get(plugin_id="combined_v3", date="2026-11-20")
    assert (day.total_trades, day.winning_trades, day.total_profit_pips) == (1, 1, 100.0)
    info = AggregatedPluginInfo.objects.get(plugin_id="combined_v3")
    assert (info.version, info.total_runtime_hours) == ("3.1.0", 1.5)
    stats = CrossPluginStats.objects.get(plugin_id="combined_v3", date="2026-11-20")
    assert (stats.trades_count, float(stats.profit)) == (1, 200.0)

    # A level executed later reaches the central copy on the next run; a run with nothing new changes nothing.
    with closing(sqlite3.connect(plugins.database_path("combined_v3"))) as bot, bot:
        bot.execute(
            "UPDATE chain_levels SET executed_at = '2026-11-21 09:00:00', profit_pips = 40, profit_dollars = 12.0 "
            "WHERE chain_id = 'chain-a' AND level_number = 2"
        )
    call_command("sync_plugins")
    assert (
        AggregatedChainLevel.objects.get(plugin_id="combined_v3", chain_id="chain-a", level_number=2).profit_dollars
        == 12.0
    )
    before = list(AggregatedChainLevel.objects.order_by("id").values())
    call_command("sync_plugins")
    assert list(AggregatedChainLevel.objects.order_by("id").values()) == before


def test_a_chain_lives_from_start_to_completion_or_cancellation_in_the_bots_api(config):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(1), trade(2)])
        chain_id = store.start_chain(base_ticket=1, levels=[(20, 0.03), (40, 0.03), (60, 0.04)], created_at=NOW)
        chain = store.execute_level(chain_id, 1, profit_pips=20, profit_dollars=6.0, executed_at=NOW)
        assert (chain["status"], chain["current_level"], chain["total_profit_booked"]) == ("ACTIVE", 1, 6.0)
        assert chain["levels"][0]["executed_at"] and chain["levels"][0]["profit_pips"] == 20
        with pytest.raises(ChainStateError, match="executed already"):
            store.execute_level(chain_id, 1, profit_pips=20, profit_dollars=6.0)
        with pytest.raises(ChainStateError, match="no level 9"):
            store.execute_level(chain_id, 9, profit_pips=1, profit_dollars=1.0)
        store.execute_level(chain_id, 2, profit_pips=40, profit_dollars=12.0)
        done = store.execute_level(chain_id, 3, profit_pips=60, profit_dollars=24.0)
        assert (done["status"], done["current_level"], done["total_profit_booked"]) == ("COMPLETED", 3, 42.0)
        with pytest.raises(ChainStateError, match="COMPLETED"):
            store.cancel_chain(chain_id)

        other = store.start_chain(base_ticket=2, levels=[(20, 0.1)])
        store.cancel_chain(other)
        assert store.chain(other)["status"] == "CANCELLED"
        early = store.start_chain(base_ticket=2, levels=[(20, 0.1), (30, 0.1)])
        store.complete_chain(early)
        assert store.chain(early)["status"] == "COMPLETED"

        store.record_start("combined_v3", "3.2.0", NOW)
        store.heartbeat("combined_v3", NOW + timedelta(minutes=3))
        hours = store.heartbeat("combined_v3", NOW + timedelta(hours=5))  # a long silence counts 5 minutes at most
        assert hours == pytest.approx(8 / 60)
    call_command("sync_plugins")
    assert AggregatedChain.objects.get(plugin_id="combined_v3", chain_id=chain_id).status == "COMPLETED"
    assert AggregatedPluginInfo.objects.get(plugin_id="combined_v3").total_runtime_hours == pytest.approx(8 / 60)


@pytest.mark.slow
def test_a_database_in_the_seeds_shape_is_adopted_with_every_row_and_synced(tmp_path):
    env, _, _ = installed(tmp_path / "install")
    source = seed_database(tmp_path / "zepix_breakout_v1.db")
    result = manage("startplugin", "breakout_v1", "--adopt", str(source), env=env)
    assert result.returncode == 0, result.stderr
    assert "Adopted" in result.stdout and "1 plugin_info, 2 trades, 2 profit_chains, 2 chain_levels" in result.stdout
    data = Path(env["ZEPIX_DATA_DIR"])
    kept = list((data / "adopted").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == source.read_bytes()
    adopted = data / "plugins" / "breakout_v1.sqlite3"
    with closing(sqlite3.connect(adopted)) as bot, bot:  # the bot's SQL still runs on it, and is numbered
        bot.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
            "VALUES (7003, 'GBPUSD', 'BUY', 0.1, 1.27, 'OPEN')"
        )
    assert manage("sync_plugins", env=env).returncode == 0
    with closing(sqlite3.connect(data / "central.sqlite3")) as central:
        assert central.execute("SELECT COUNT(*) FROM aggregated_trades WHERE plugin_id = 'breakout_v1'").fetchone() == (
            3,
        )
        assert central.execute(
            "SELECT COUNT(*) FROM aggregated_chain_levels WHERE plugin_id = 'breakout_v1'"
        ).fetchone() == (2,)
    declared = manage("config", "get", "breakout_v1", "enabled", env=env)
    assert declared.returncode == 0 and declared.stdout.strip() == "true"


@pytest.mark.slow
def test_a_file_its_bot_still_has_open_is_refused_until_the_bot_stops(tmp_path):
    """The console reads the adopted copy: what a bot still running wrote into its file after the
    copy was made was lost. A file in WAL mode tells who has it open: refused, nothing changed."""
    env, _, _ = installed(tmp_path / "install")
    source = seed_database(tmp_path / "zepix_breakout_v1.db")
    with closing(sqlite3.connect(source)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    holding = (
        "import sqlite3, sys; bot = sqlite3.connect(sys.argv[1]); bot.execute('SELECT 1 FROM trades'); "
        "print('open', flush=True); input()"
    )
    bot = subprocess.Popen(
        [sys.executable, "-c", holding, str(source)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert bot.stdout.readline() == "open\n"
        refused = manage("startplugin", "breakout_v1", "--adopt", str(source), env=env)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"is open in another process (pid {bot.pid}: " in refused.stderr
        assert "stop the bot's process first" in refused.stderr and "Nothing was changed" in refused.stderr
        data = Path(env["ZEPIX_DATA_DIR"])
        assert not (data / "plugins" / "breakout_v1.sqlite3").exists() and not (data / "adopted").exists()
    finally:
        bot.communicate("\n", timeout=10)
        bot.stdout.close()
    adopted = manage("startplugin", "breakout_v1", "--adopt", str(source), env=env)
    assert adopted.returncode == 0, adopted.stderr


@pytest.mark.slow
def test_a_file_not_in_the_seeds_shape_is_refused_with_what_is_wrong_and_nothing_changes(tmp_path):
    env, _, _ = installed(tmp_path / "install")
    source = tmp_path / "other.db"
    with closing(sqlite3.connect(source)) as connection:
        connection.executescript(SEED_DDL.replace("    volume_to_close REAL,\n", ""))
    before = source.read_bytes()
    result = manage("startplugin", "breakout_v1", "--adopt", str(source), env=env)
    assert result.returncode == 1
    assert (
        "table chain_levels has no column volume_to_close" in result.stderr and "Nothing was changed" in result.stderr
    )
    assert source.read_bytes() == before
    data, config = Path(env["ZEPIX_DATA_DIR"]), Path(env["ZEPIX_CONFIG_DIR"])
    assert not (data / "plugins" / "breakout_v1.sqlite3").exists()
    assert not (config / "plugins" / "breakout_v1.json").exists()


TIMES_TAKEN = [
    "2026-11-27 10:00:00",  # SQLite's CURRENT_TIMESTAMP, the seed's default
    "2026-11-27 10:00:00.123456",  # Python's sqlite3 adapter
    "2026-11-27T10:00:00+00:00",  # datetime.isoformat() of an aware time in UTC
    "2026-11-27T10:00:00.5Z",
    "2026-11-27 10:00",
    "2024-02-29 23:59:59",
]
TIMES_REFUSED = [
    "2026-02-30 10:00:00",  # SQLite's datetime() reads it as written
    "2026-04-31 10:00:00",
    "2026-11-27 24:00:00",
    "2026-11-27T01:00:00+02:00",  # the 26th in UTC: the central's days are UTC
    "2026-11-27 10:60:00",
    "0000-01-01 00:00:00",
    "2026-11-27",  # a day: the shape is a time's
    "10:00",
    "2460000.5",  # a Julian day, which datetime() reads too
    "2026-11-27 10:00:00 UTC",
    "2026-11-27 10:00garbage",
    "27/11/2026 10:00",
    "",
]


@pytest.mark.parametrize("written", TIMES_TAKEN + TIMES_REFUSED)
def test_a_time_is_taken_exactly_when_the_console_can_read_it(written, tmp_path):
    """A time the bot writes is taken in the shapes the console reads it in, and each one taken is
    one Django (which reads the central copy) reads: what SQLite's own datetime() accepts is
    wider (February 30th, 24:00, a Julian day), and Django answered 500 on those."""
    with closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as bot:
        schema.create(bot)
        insert = (
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
            "VALUES (1, 'EURUSD', 'BUY', 0.1, 1.1, ?)"
        )
        try:
            bot.execute(insert, (written,))
            taken = True
        except sqlite3.IntegrityError as refused:
            assert "entry_time must be a time in UTC written YYYY-MM-DD HH:MM" in str(refused)
            taken = False
    assert taken == (written in TIMES_TAKEN)
    if taken:
        assert parse_datetime(written).year >= 1970
