"""The sync into a central database on PostgreSQL, against a plain COPY, in the same run.

    .venv/bin/python bench/sync_postgres.py [--plugins 5] [--trades 200000] [--changed 1000]

Starts a throw-away PostgreSQL cluster (the tests' helper: initdb into a temporary folder,
fsync off as in the tests; the ratio is what counts, both sides write to the same server).

(1) A full sync of every plugin against a plain COPY of the same rows, read from the same
    files, into tables made LIKE the central ones (same columns, indexes and constraints).
(2) An incremental sync of N new or changed trades per plugin, beyond a sync that finds nothing.
"""

import argparse
import sqlite3
import time
from contextlib import closing

import _django
from sync_and_backup import add_chains, report_incremental


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugins", type=int, default=5)
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--changed", type=int, default=1000)
    args = parser.parse_args()
    with _django.central_on_postgresql():
        run(args)


def run(args):
    ids = [f"bench_p{n}" for n in range(args.plugins)]
    _django.declare_plugins(ids)
    _django.start()

    from django.db import connection

    from plugins_app import plugins
    from plugins_app.demo import seed_plugin
    from sync_app.sync import STAGED, run_sync

    print(f"Seeding {args.plugins} plugins x {args.trades:,} trades, a chain of 3 levels on one trade in ten...")
    for plugin_id in ids:
        seed_plugin(plugins.database_path(plugin_id), plugin_id, args.trades, with_extras=False)
        add_chains(plugins.database_path(plugin_id))
    total = args.plugins * args.trades

    started = time.perf_counter()
    synced = run_sync(trigger="command")
    ours = time.perf_counter() - started
    assert synced.status == "OK", synced.error

    # The plain copy: the same rows, read from the same files, COPYed into tables LIKE ours.
    with connection.cursor() as cursor:
        for _, target, _ in STAGED:
            cursor.execute(f"CREATE TABLE plain_{target} (LIKE {target} INCLUDING ALL)")
    started = time.perf_counter()
    for plugin_id in ids:
        with closing(sqlite3.connect(plugins.database_path(plugin_id))) as source, connection.cursor() as cursor:
            cursor.execute("BEGIN")
            for table, target, columns in STAGED:
                targets = ", ".join(["plugin_id", *(column for column, _ in columns)])
                extra = ", synced_at" if table == "trades" else ""
                rows = source.execute(f"SELECT {', '.join(s for _, s in columns)} FROM {table}")
                with cursor.copy(f"COPY plain_{target} ({targets}{extra}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((plugin_id, *row, *(["2026-11-26 00:00:00"] if extra else [])))
            cursor.execute("COMMIT")
    baseline = time.perf_counter() - started
    print(
        f"\n(1) Full sync into PostgreSQL of {total:,} trades (and their chains, levels, daily stats): "
        f"ours {ours:.2f} s ({total / ours:,.0f} trades/s); "
        f"plain COPY {baseline:.2f} s ({total / baseline:,.0f} trades/s); "
        f"ours runs at {baseline / ours:.2f}x the plain rate"
    )

    report_incremental(args, ids, into=" into PostgreSQL")


if __name__ == "__main__":
    main()
