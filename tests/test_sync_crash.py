"""A sync process killed at random moments, then run again, leaves the central rows equal to
the union of the plugin rows: nothing lost, nothing doubled (real processes, SIGKILL), through a
restore of a plugin's database in the middle."""

import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from plugins_app.store import PluginStore
from tests.helpers import ROOT, fresh_env, manage

pytestmark = pytest.mark.slow
PLUGINS = ("combined_v3", "price_action_v6")


def plugin_rows(data, plugin_ids=PLUGINS):
    rows = set()
    for plugin_id in plugin_ids:
        with closing(sqlite3.connect(data / "plugins" / f"{plugin_id}.sqlite3")) as connection:
            rows |= {
                (plugin_id, *row)
                for row in connection.execute(
                    "SELECT mt5_ticket, status, exit_time, profit_dollars, swap, change_seq FROM trades"
                )
            }
    return rows


def central(data, sql):
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection:
        return connection.execute(sql).fetchall()


def central_count(data, plugin_id):
    return central(data, f"SELECT COUNT(*) FROM aggregated_trades WHERE plugin_id = '{plugin_id}'")[0][0]


def dirty_some_trades(data, rng):
    """What the bot does between syncs: closes some trades, changes others, opens new ones."""
    for plugin_id in PLUGINS:
        with PluginStore(data / "plugins" / f"{plugin_id}.sqlite3") as store:
            # A writer other than PluginStore: the triggers number its changes.
            store.connection.execute("UPDATE trades SET swap = swap - 0.01 WHERE id % ? = 0", (rng.randint(3, 7),))
            next_ticket = store.max_ticket() + 1
            store.save_trades(
                [
                    {
                        "mt5_ticket": next_ticket + i,
                        "symbol": "EURUSD",
                        "direction": "BUY",
                        "lot_size": 0.1,
                        "entry_price": 1.1,
                        "entry_time": "2026-11-20 10:00:00",
                    }
                    for i in range(200)
                ]
            )
            for trade in store.open_trades()[:20]:
                store.close_trade(
                    trade["mt5_ticket"], exit_price=1.2, profit_pips=10, profit_dollars=10.0, close_reason="TP"
                )


def wait_until_a_run_started(data, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING'")[0][0]:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.002)


def test_killed_syncs_leave_central_rows_equal_to_the_plugin_rows(tmp_path):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    # Transactions of 3,000 trades: a first sync of 20,000 is seven, and a kill lands inside one
    # or between two; so does the reconcile of the plugin restored half way.
    env = fresh_env(tmp_path, ZEPIX_SYNC_TRADES_PER_TRANSACTION="3000")
    data = tmp_path / "data"
    prepared = manage("setup", "--demo-trades", "20000", env=env)
    assert prepared.returncode == 0, prepared.stderr
    backed_up = manage("backup_databases", "--db", "plugin_combined_v3", env=env)
    assert backed_up.returncode == 0, backed_up.stderr
    for round_number in range(8):
        if round_number == 4:  # what the bot wrote since the backup leaves the file, and must leave the central copy
            synced = manage("sync_plugins", env=env)
            assert synced.returncode == 0, f"seed {seed}: {synced.stderr}"
            backup_id = central(data, "SELECT MAX(id) FROM sync_app_backup")[0][0]
            restored = manage("restore_backup", str(backup_id), env=env)
            assert restored.returncode == 0, restored.stderr
            taken_away = central_count(data, "combined_v3") - len(plugin_rows(data, ("combined_v3",)))
            assert taken_away >= 800, f"seed {seed}"  # the rounds' new trades
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "sync_plugins"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_a_run_started(data, process)
        time.sleep(rng.uniform(0, 0.15))
        process.send_signal(signal.SIGKILL)
        process.wait()
        dirty_some_trades(data, rng)
    finished = manage("sync_plugins", env=env)
    assert finished.returncode == 0, f"seed {seed}: {finished.stderr}"

    synced = set(
        central(
            data,
            "SELECT plugin_id, mt5_ticket, status, exit_time, profit_dollars, swap, change_seq FROM aggregated_trades",
        )
    )
    expected = plugin_rows(data)
    assert len(synced) == len(expected), f"seed {seed}"
    assert synced == expected, f"seed {seed}"
    assert central(data, "SELECT COUNT(*) FROM aggregated_trades")[0][0] == len(expected)
    killed_inside = central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'ABORTED'")[0][0]
    assert killed_inside >= 1, f"seed {seed}: no kill landed inside a sync; the test proved nothing"
    stats = set(central(data, "SELECT plugin_id, date, trades_count, profit FROM cross_plugin_stats"))
    recomputed = set(
        central(
            data,
            "SELECT plugin_id, substr(exit_time, 1, 10), COUNT(*), "
            "ROUND(SUM(profit_dollars), 2) FROM aggregated_trades WHERE status = 'CLOSED' "
            "GROUP BY 1, 2",
        )
    )
    assert stats == recomputed, f"seed {seed}"
    totals = set(
        central(data, "SELECT plugin_id, day, symbol, direction, status, trades_count, profit FROM trade_totals")
    )
    recounted = set(
        central(
            data,
            "SELECT plugin_id, substr(entry_time, 1, 10), symbol, direction, status, COUNT(*), "
            "ROUND(SUM(COALESCE(profit_dollars, 0)), 2) FROM aggregated_trades GROUP BY 1, 2, 3, 4, 5",
        )
    )
    assert totals == recounted, f"seed {seed}"
