"""Seed a million trades into one plugin, then time the admin's trade changelist.

    .venv/bin/python bench/admin_changelist.py [--trades 1000000] [--repeat 9]

Prints the seeding rate (against a plain executemany of the same rows into a copy of the
table without indexes, triggers or stats) and, for several changelist pages, the median
response time next to the time of the page's own SQL run alone through sqlite3.
"""

import argparse
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime

import _django


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    _django.start()

    from django.contrib.auth import get_user_model
    from django.test import Client

    from plugins_app import plugins
    from plugins_app.demo import generate_trades, seed_plugin
    from plugins_app.store import _trade_row

    path = plugins.database_path("combined_v3")
    started = time.perf_counter()
    seed_plugin(path, "combined_v3", args.trades, with_extras=False)
    seed_seconds = time.perf_counter() - started

    # Baseline: the same rows, generated and inserted plainly into a bare table.
    started = time.perf_counter()
    now = datetime.now(UTC)
    with closing(sqlite3.connect(path.parent / "baseline.sqlite3", isolation_level=None)) as plain:
        plain.execute("PRAGMA journal_mode=WAL")
        plain.execute("PRAGMA synchronous=NORMAL")
        plain.execute("CREATE TABLE t (" + ", ".join(f"c{i}" for i in range(19)) + ")")
        plain.execute("BEGIN")
        plain.executemany(
            "INSERT INTO t VALUES (" + ", ".join("?" * 19) + ")",
            (
                _trade_row(t, "now")
                for t in generate_trades(args.trades, seed=1, plugin_id="x", first_ticket=1, now=now)
            ),
        )
        plain.execute("COMMIT")
    plain_seconds = time.perf_counter() - started
    print(
        f"Seeding {args.trades:,} trades through PluginStore: {seed_seconds:.1f} s "
        f"({args.trades / seed_seconds:,.0f} trades/s)"
    )
    print(
        f"Baseline, plain executemany into a bare table: {plain_seconds:.1f} s "
        f"({args.trades / plain_seconds:,.0f} trades/s); ratio {seed_seconds / plain_seconds:.2f}x the time"
    )

    client = Client()
    client.force_login(get_user_model().objects.get(is_superuser=True))
    url = "/admin/plugin_combined_v3/trade/"
    ticket = 100_000_001 + args.trades // 2
    pages = {
        "unfiltered (newest first)": ({}, "SELECT * FROM trades ORDER BY entry_time DESC LIMIT 100"),
        "status=OPEN": (
            {"status__exact": "OPEN"},
            "SELECT * FROM trades WHERE status='OPEN' ORDER BY entry_time DESC LIMIT 100",
        ),
        "symbol=XAUUSD": (
            {"symbol": "XAUUSD"},
            "SELECT * FROM trades WHERE symbol='XAUUSD' ORDER BY entry_time DESC LIMIT 100",
        ),
        "search ticket": ({"q": str(ticket)}, f"SELECT * FROM trades WHERE mt5_ticket={ticket}"),
        "date hierarchy, one month": (
            {"entry_time__year": now.year, "entry_time__month": now.month},
            "SELECT * FROM trades WHERE entry_time >= '2026-11-01' ORDER BY entry_time DESC LIMIT 100",
        ),
        "page 50": ({"p": 50}, "SELECT * FROM trades ORDER BY entry_time DESC LIMIT 100 OFFSET 5000"),
    }
    print(f"\nAdmin trade changelist on {args.trades:,} trades (median of {args.repeat}):")
    with closing(sqlite3.connect(path)) as raw:
        for name, (params, sql) in pages.items():
            assert client.get(url, params).status_code == 200
            timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(url, params)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            raw_timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                raw.execute(sql).fetchall()
                raw_timings.append((time.perf_counter() - started) * 1000)
            page_ms, sql_ms = _django.median(timings), _django.median(raw_timings)
            print(f"  {name:28s} page {page_ms:7.1f} ms   its rows alone in sqlite3 {sql_ms:6.2f} ms")


if __name__ == "__main__":
    main()
