"""The overview page with several plugins of a million trades each, served by uvicorn:
median and p95 response time, then requests per second with 8 concurrent clients while a
writer inserts trades and syncs run; a trivial page (/login/) is the baseline in the same run.

    .venv/bin/python bench/overview_load.py [--plugins 5] [--trades 1000000] [--seconds 20] [--workers 2]
        [--postgres]

--postgres: the central database on a throw-away PostgreSQL cluster (the tests' helper).
"""

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time

import _django


def timed_get(connection, path, cookie):
    started = time.perf_counter()
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    body = response.read()
    return (time.perf_counter() - started) * 1000, response.status, body


def sequential(port, path, cookie, count):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    for _ in range(count):
        elapsed, status, _ = timed_get(connection, path, cookie)
        assert status == 200, status
        samples.append(elapsed)
    connection.close()
    return samples


def load(port, path, cookie, clients, seconds):
    stop = time.perf_counter() + seconds
    results = {"ok": 0, "failed": 0, "locked": 0, "samples": []}
    lock = threading.Lock()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop:
            elapsed, status, body = timed_get(connection, path, cookie)
            with lock:
                results["samples"].append(elapsed)
                results["ok" if status == 200 else "failed"] += 1
                results["locked"] += b"database is locked" in body
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def trade_pages(total: int) -> list[tuple[str, str]]:
    """/trades/ at its first, a middle and its last page (keyset links), and two filtered sorts."""
    from urllib.parse import urlencode

    from sync_app import trade_search
    from sync_app.models import AggregatedTrade

    newest = trade_search.SORTS["newest"]
    middle = trade_search._ordered(AggregatedTrade.objects.all(), newest)[total // 2]
    return [
        ("first page", "/trades/"),
        ("a middle page", "/trades/?" + urlencode({"after": trade_search._cursor(middle, newest)})),
        ("last page", "/trades/?page=last"),
        ("one plugin by profit", "/trades/?plugin=load_p1&sort=profit"),
        ("closed EUR* by ticket", "/trades/?status=CLOSED&symbol=EUR&sort=ticket_desc"),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugins", type=int, default=5)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    if not args.postgres:
        return run(args)
    with _django.central_on_postgresql():
        run(args)


def run(args):
    ids = [f"load_p{n}" for n in range(args.plugins)]
    _django.declare_plugins(ids)
    _django.start()

    from django.contrib.auth import get_user_model
    from django.test import Client

    from plugins_app import plugins
    from plugins_app.demo import seed_plugin
    from plugins_app.store import PluginStore
    from sync_app.models import SyncRun
    from sync_app.sync import run_sync

    started = time.perf_counter()
    from sync_and_backup import add_chains

    for plugin_id in ids:
        seed_plugin(plugins.database_path(plugin_id), plugin_id, args.trades)
        add_chains(plugins.database_path(plugin_id))
    print(
        f"Seeded {args.plugins} x {args.trades:,} trades, a chain of 3 levels on one trade in ten, "
        f"in {time.perf_counter() - started:.0f} s"
    )
    run_sync(trigger="command")
    browser = Client()
    browser.force_login(get_user_model().objects.get(is_superuser=True))
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "zepix_admin.settings"}
    port = 8700 + os.getpid() % 200
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zepix_admin.web",  # what `manage.py serve` runs
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=_django.ROOT,
    )
    try:
        time.sleep(4)
        sequential(port, "/", cookie, 5)  # warm up every worker
        overview = sequential(port, "/", cookie, 60)
        login = sequential(port, "/login/", "", 60)
        print(f"\nOverview ({args.plugins} plugins x {args.trades:,} trades), one client:  {_django.summary(overview)}")
        print(f"Baseline, /login/ (a page without data), one client: {_django.summary(login)}")
        for label, path in trade_pages(args.plugins * args.trades):
            print(f"Trades page, {label}: {_django.summary(sequential(port, path, cookie, 40))}")

        stop = threading.Event()

        def writer():
            with PluginStore(plugins.database_path(ids[0])) as store:
                ticket = store.max_ticket() + 1
                while not stop.is_set():
                    store.save_trade(
                        mt5_ticket=ticket,
                        symbol="EURUSD",
                        direction="BUY",
                        lot_size=0.1,
                        entry_price=1.1,
                        entry_time="2026-11-25 10:00:00",
                    )
                    ticket += 1
                    time.sleep(0.01)

        def syncer():
            while not stop.is_set():
                subprocess.run(
                    [sys.executable, str(_django.ROOT / "manage.py"), "sync_plugins"], env=env, capture_output=True
                )
                stop.wait(1)

        background = [threading.Thread(target=writer), threading.Thread(target=syncer)]
        for thread in background:
            thread.start()
        time.sleep(2)
        one_while_busy = sequential(port, "/", cookie, 60)
        print(
            "\nOverview, one client, while a writer inserts every 10 ms and syncs run: "
            + _django.summary(one_while_busy)
        )
        busy = load(port, "/", cookie, 8, args.seconds)
        stop.set()
        for thread in background:
            thread.join()
        quiet_login = load(port, "/login/", "", 8, max(5, args.seconds // 4))
        print(f"\n8 concurrent clients for {args.seconds} s, a writer inserting every 10 ms and syncs running:")
        print(
            f"  overview: {busy['ok'] / args.seconds:,.1f} requests/s, {busy['failed']} failed, "
            f"{busy['locked']} 'database is locked'; {_django.summary(busy['samples'])}"
        )
        print(f"  baseline /login/ (no writer): {quiet_login['ok'] / max(5, args.seconds // 4):,.1f} requests/s")
        runs = SyncRun.objects.count(), SyncRun.objects.filter(status=SyncRun.Status.OK).count()
        print(f"  syncs during the run: {runs[0] - 1} ({runs[1] - 1} OK)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
