"""Shipping a bot host's changes to the central console over loopback HTTP (ship_changes →
POST /api/sync/<plugin>/batches), against the local sync of the same rows in the same run.

    .venv/bin/python bench/shipping.py [--trades 200000] [--changed 1000]

Three installs in throw-away folders: the bot host (the plugin's database, seeded), the
central (served by `python -m zepix_admin.web`, what `serve` runs) and, for the baseline, a
console that syncs a copy of the same file from its own disk. Each figure is a `manage.py`
process's wall time less that of the same command with nothing to do (Python and Django's
start), so the two sides pay the same fixed cost.
"""

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, fresh_env, manage  # noqa: E402

PLUGIN = "combined_v3"


def timed(*args, env, said: list | None = None) -> float:
    started = time.perf_counter()
    result = manage(*args, env=env, timeout=3600)
    assert result.returncode == 0, result.stderr
    if said is not None:
        said.append(result.stdout)
    return time.perf_counter() - started


def batch_requests_ms(output: str) -> int:
    """What ship_changes reports its batches' requests took: "in 1 batch(es) (45 ms)"."""
    return int(output.split(" batch(es) (", 1)[1].split(" ms)", 1)[0])


def bot_trades_on(host_file: Path, changed: int, round_number: int) -> int:
    """The bot goes on trading on the host: up to half the changes update its newest open
    trades, the rest are new trades (open, so later rounds update more). Returns how many it updated."""
    from plugins_app.store import PluginStore

    with PluginStore(host_file) as store:
        top = store.max_ticket()
        open_tickets = [
            t
            for (t,) in store.connection.execute(
                "SELECT mt5_ticket FROM trades WHERE status = 'OPEN' ORDER BY mt5_ticket DESC LIMIT ?",
                (changed // 2,),
            )
        ]
        for ticket in open_tickets:
            store.update_trade(ticket, swap=-1.5 - round_number / 100)
        new = changed - len(open_tickets)
        store.save_trades(
            [
                {
                    "mt5_ticket": top + 1 + n,
                    "symbol": "EURUSD",
                    "direction": "BUY",
                    "lot_size": 0.1,
                    "entry_price": 1.1,
                    "entry_time": "2026-11-26 10:00:00",
                }
                for n in range(new)
            ]
        )
    return len(open_tickets)


def install(folder: Path) -> dict:
    env = fresh_env(folder)
    assert manage("setup", "--no-demo", env=env).returncode == 0
    return env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--changed", type=int, default=1000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="zepix-bench-ship-"))
    host, hub, local = (install(base / name) for name in ("host", "central", "local"))
    manage("seed_demo", "--trades", str(args.trades), "--plugin", PLUGIN, env=host, timeout=3600)
    host_file = base / "host" / "data" / "plugins" / f"{PLUGIN}.sqlite3"
    with closing(sqlite3.connect(host_file)) as source:
        rows = {
            table: source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("trades", "profit_chains", "chain_levels")
        }
    print(
        f"The host's plugin: {rows['trades']:,} trades, {rows['profit_chains']:,} chains, "
        f"{rows['chain_levels']:,} levels"
    )

    # Baseline: the same file synced by a console from its own disk.
    local_file = base / "local" / "data" / "plugins" / f"{PLUGIN}.sqlite3"
    with closing(sqlite3.connect(host_file)) as source, closing(sqlite3.connect(local_file)) as copy:
        source.backup(copy)
    local_full = timed("sync_plugins", "--plugin", PLUGIN, env=local)
    local_idle = timed("sync_plugins", "--plugin", PLUGIN, env=local)

    token = manage("create_token", "bench-host", "--role", "plugin-host", "--plugin", PLUGIN, env=hub).stdout.split()[
        -1
    ]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "zepix_admin.web", "--port", str(port), "--log-level", "warning"],
        env=hub,
        cwd=ROOT,
    )
    try:
        time.sleep(4)
        ship = ("ship_changes", "--central", f"http://127.0.0.1:{port}", "--token", token, "--plugin", PLUGIN)
        shipped_full = timed(*ship, env=host)
        shipped_idle = timed(*ship, env=host)
        print(f"\nFull, {rows['trades']:,} trades and their chains and levels, beyond a command with nothing to do:")
        ours, baseline = shipped_full - shipped_idle, local_full - local_idle
        print(f"  shipped over loopback HTTP: {ours:6.2f} s, {rows['trades'] / ours:,.0f} trades/s")
        print(
            f"  baseline, synced from the console's own disk: {baseline:6.2f} s, "
            f"{rows['trades'] / baseline:,.0f} trades/s"
        )
        print(f"  shipping runs at {baseline / ours:.2f}x the local sync's rate (goal: at least 0.5x)")

        # Each a whole `ship_changes` process (about a second) less one with nothing to ship:
        # the medians of five of each, since one pair's difference moved by +-200 ms here.
        with_changes, with_nothing, updates, said = [], [], [], []
        for round_number in range(5):
            updates.append(bot_trades_on(host_file, args.changed, round_number))
            with_changes.append(timed(*ship, env=host, said=said))
            with_nothing.append(timed(*ship, env=host))
        incremental = statistics.median(with_changes) - statistics.median(with_nothing)
        print(
            f"\nIncremental, {args.changed:,} changes ({min(updates)}-{max(updates)} updates, the rest new), "
            f"one batch, beyond one with nothing: {incremental * 1000:.0f} ms, median of 5 (goal: under 100 ms)"
        )
        # The batch's own request, as the host times it (sent, applied, answered): steadier
        # than the difference of two whole commands, each with a process start of its own.
        requests = sorted(batch_requests_ms(output) for output in said)
        print(f"  the batch's request itself, as ship_changes reports it: {requests} ms, median {requests[2]} ms")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
