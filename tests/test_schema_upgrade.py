"""A plugin database made by an earlier version of the console is rebuilt in the bot's schema by
`setup` (plugin migration 0003), every row kept, and the sync carries on from where it was."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from plugins_app import sqlite as plugin_sqlite
from tests.helpers import fresh_env, installed, manage, run

pytestmark = pytest.mark.slow

FIRST_SHAPE_ROWS = [
    "INSERT INTO profit_chains (id, symbol, direction, status, base_lot, current_level, max_level, total_profit, "
    "created_at, updated_at) VALUES (1, 'EURUSD', 'BUY', 'STOPPED', 0.1, 1, 3, 4.5, '2026-11-01 10:00:00', "
    "'2026-11-01 12:00:00')",
    "INSERT INTO chain_levels (chain_id, level, lot_size, target_pips, trade_ticket, status, profit) VALUES "
    "(1, 1, 0.1, 20, NULL, 'CLOSED', 4.5), (1, 2, 0.15, 30, NULL, 'OPEN', 0)",
    "INSERT INTO trades (ticket, symbol, direction, lot_size, entry_price, entry_time, exit_time, exit_price, "
    "profit_pips, profit_dollars, commission, swap, status, close_reason, signal_data, chain_id, updated_at, "
    "change_seq) VALUES (501, 'EURUSD', 'BUY', 0.1, 1.085, '2026-11-01 09:00:00', '2026-11-01 11:00:00', 1.087, "
    "20, 20.0, 0, 0, 'CLOSED', 'TP', '{}', 1, '2026-11-01 11:00:00', 7), "
    "(502, 'XAUUSD', 'SELL', 0.2, 2350, '2026-11-02 09:00:00', NULL, NULL, NULL, NULL, 0, 0, 'OPEN', NULL, '{}', "
    "NULL, '2026-11-02 09:00:00', 9)",
    "INSERT INTO daily_stats (date, total_trades, wins, losses, breakeven, total_profit, max_drawdown, largest_win, "
    "largest_loss) VALUES ('2026-11-01', 1, 1, 0, 0, 20.0, 0, 20.0, 0)",
    "INSERT INTO plugin_info (plugin_id, version, last_started, runtime_hours) "
    "VALUES ('combined_v3', '3.0.0', '2026-11-01 08:00:00', 12.5)",
]


def test_setup_rebuilds_a_first_shape_database_in_the_bots_schema_keeping_every_row(tmp_path):
    env = fresh_env(tmp_path)
    assert manage("setup", "--no-demo", env=env).returncode == 0
    path = Path(env["ZEPIX_DATA_DIR"]) / "plugins" / "combined_v3.sqlite3"
    path.unlink()  # made again as the first version of the console made it: migrations 0001 and 0002 only
    plugin_sqlite.create(path)
    made = manage("migrate", "plugin_combined_v3", "0002_identity", "--database", "plugin_combined_v3", env=env)
    assert made.returncode == 0, made.stderr
    with closing(sqlite3.connect(path)) as connection, connection:
        for statement in FIRST_SHAPE_ROWS:
            connection.execute(statement)

    upgraded = manage("setup", "--no-demo", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    with closing(sqlite3.connect(path)) as connection:
        trades = connection.execute(
            "SELECT mt5_ticket, status, profit_dollars, change_seq FROM trades ORDER BY mt5_ticket"
        ).fetchall()
        assert trades == [(501, "CLOSED", 20.0, 7), (502, "OPEN", None, 9)]  # change numbers kept for the sync
        chain = connection.execute(
            "SELECT chain_id, status, current_level, max_levels, total_profit_booked, "
            "(SELECT mt5_ticket FROM trades WHERE id = base_trade_id) FROM profit_chains"
        ).fetchall()
        assert chain == [("1", "CANCELLED", 1, 3, 4.5, 501)]
        levels = connection.execute(
            "SELECT level_number, volume_to_close, profit_dollars, executed_at IS NOT NULL FROM chain_levels "
            "ORDER BY level_number"
        ).fetchall()
        assert levels == [(1, 0.1, 4.5, 1), (2, 0.15, None, 0)]
        day = connection.execute(
            "SELECT winning_trades, total_profit_pips, total_profit_dollars FROM daily_stats"
        ).fetchall()
        assert day == [(1, 20.0, 20.0)]
        assert connection.execute("SELECT total_runtime_hours FROM plugin_info").fetchall() == [(12.5,)]
        # The bot's plain SQL runs on the upgraded file
        connection.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
            "VALUES (503, 'EURUSD', 'BUY', 0.1, 1.08, 'OPEN')"
        )
        connection.commit()
    synced = manage("sync_plugins", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "combined_v3: 3 inserted" in synced.stdout


def test_setup_rewrites_the_times_an_earlier_sync_copied_as_the_bot_wrote_them(tmp_path):
    """Syncs before sync_app 0012 copied 2026-11-27T09:00:00 as written, which sorted after
    2026-11-27 15:00:00 in the central copy on SQLite: the upgrade's `setup` rewrites them."""
    env, _, _ = installed(tmp_path)
    data = tmp_path / "data"
    with closing(sqlite3.connect(data / "plugins" / "combined_v3.sqlite3")) as bot, bot:
        bot.executemany(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
            "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, ?)",
            [(1, "2026-11-27T09:00:00Z"), (2, "2026-11-27 15:00:00"), (3, "2026-11-27T20:30:00.25")],
        )
        bot.execute(
            "INSERT INTO profit_chains (chain_id, base_trade_id, created_at) VALUES ('c', 1, '2026-11-27T09:00')"
        )
    run(env, "migrate", "sync_app", "0011")
    run(env, "sync_plugins")
    with closing(sqlite3.connect(data / "central.sqlite3")) as central, central:  # as an earlier sync left them
        central.execute(
            "UPDATE aggregated_trades SET entry_time = CASE mt5_ticket WHEN 1 THEN '2026-11-27T09:00:00Z' "
            "WHEN 3 THEN '2026-11-27T20:30:00.25' ELSE entry_time END"
        )
        central.execute("UPDATE aggregated_chains SET created_at = '2026-11-27T09:00'")
    run(env, "setup", "--no-demo")
    with closing(sqlite3.connect(data / "central.sqlite3")) as central:
        assert central.execute(
            "SELECT mt5_ticket, entry_time FROM aggregated_trades ORDER BY entry_time"
        ).fetchall() == [
            (1, "2026-11-27 09:00:00"),
            (2, "2026-11-27 15:00:00"),
            (3, "2026-11-27 20:30:00.250000"),
        ]
        assert central.execute("SELECT created_at FROM aggregated_chains").fetchall() == [("2026-11-27 09:00:00",)]
