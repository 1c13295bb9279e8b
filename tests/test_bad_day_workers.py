"""The bad day's workers, as an operator lives it through `serve` (uvicorn + the supervised
Huey consumer) and `manage.py` child processes: a broken plugin served beside the others,
values the console cannot hold, Ctrl-C during a retry, a killed worker and the jobs it held,
an archive while the watcher runs, a backup killed halfway, a damaged or missing queue file.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from plugins_app.schema import SEED_DDL
from sync_app.scheduler import JOBS
from tests.helpers import (
    ROOT,
    Served,
    ask_for_a_sync,
    bearer,
    central,
    heartbeat_pid,
    installed,
    run,
    start_consumer,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_serve_with_a_broken_plugin_serves_every_page_and_names_the_broken_one(install):
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    server = Served(env)
    try:
        server.log_in()
        status, page = server.get("/")
        assert status == 200
        assert 'id="card-price_action_v6"' in page and "wrong schema: no table trades" in page
        assert "restore_backup" in page and 'id="card-combined_v3"' in page
        status, page = server.get("/admin/plugin_price_action_v6/trade/")
        assert status == 503 and "Plugin price_action_v6 is unavailable" in page
        assert server.status("/admin/plugin_combined_v3/trade/") == 200
        for path in ("/trades/", "/sync/", "/backups/", "/config/", "/config/combined_v3/", "/alerts/", "/audit/"):
            assert server.status(path) == 200, path
        assert "Its database has the wrong schema: no table trades" in server.get("/sync/")[1]
        status, body = server.get("/healthz")
        assert status == 503 and "plugin price_action_v6: its database has the wrong schema" in body
    finally:
        server.stop()


def test_a_value_the_console_cannot_hold_is_refused_at_the_bots_write_and_one_written_before_is_named(
    install, tmp_path
):
    """SQLite keeps whatever a column is given. A trade the bot wrote with an empty exit price or
    a text for its profit reached the central copy and answered 500 on the overview, the trade
    search and the charts; one with a NULL entry time stopped the plugin's sync for good."""
    env, data = install
    bot_file = data / "plugins" / "combined_v3.sqlite3"
    seed_insert = (
        "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
        "VALUES (50, 'EURUSD', 'BUY', 0.1, 1.1, 'OPEN')"
    )
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute(seed_insert)  # the bot's own statement, entry time defaulted
        bot.commit()
        for statement, column in (
            (
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, exit_price) "
                "VALUES (51, 'EURUSD', 'BUY', 0.1, 1.1, '')",
                "exit_price",
            ),
            (
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
                "VALUES (52, 'EURUSD', 'SELL', 0.1, 1.1, NULL)",
                "entry_time",
            ),
            ("UPDATE trades SET exit_time = '2026-02-30 10:00:00' WHERE mt5_ticket = 50", "exit_time"),
            ("UPDATE trades SET profit_dollars = 'lots' WHERE mt5_ticket = 50", "profit_dollars"),
            ("UPDATE trades SET lot_size = 1e300 WHERE mt5_ticket = 50", "lot_size"),
            ("UPDATE trades SET status = NULL WHERE mt5_ticket = 50", "status"),
            ("INSERT INTO daily_stats (date, total_trades) VALUES ('27/11/2026', 1)", "date"),
            (
                "INSERT INTO profit_chains (chain_id, base_trade_id, created_at) VALUES ('c-1', 1, 'yesterday')",
                "created_at",
            ),
        ):
            with pytest.raises(sqlite3.IntegrityError, match=f"row refused: {column} must be"):
                bot.execute(statement)
        # Times as Python writes them are taken: an aware one, with a 'T', on a leap day.
        bot.execute(
            "UPDATE trades SET status = 'CLOSED', exit_time = ?, exit_price = 1.2, profit_dollars = 5, "
            "close_reason = 'TP' WHERE mt5_ticket = 50",
            ("2024-02-29T10:00:00+00:00",),
        )
        bot.commit()
    assert "combined_v3: 4 inserted" in run(env, "sync_plugins").stdout  # the install's 3 and this one
    server = Served(env)
    try:
        server.log_in()
        for path in ("/", "/trades/", "/trades/?sort=-profit", "/charts/", "/trades/?format=csv", "/sync/"):
            assert server.status(path) == 200, path
        assert ">50<" in server.get("/trades/?plugin=combined_v3")[1]
    finally:
        server.stop()

    # A file written before these checks (their triggers dropped, the migration that adds them
    # not recorded) with a NULL entry time: `setup` puts the checks in, and the sync names the
    # row where it said "NOT NULL constraint failed: trade_totals.day"; the other plugin syncs.
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute("DROP TRIGGER trades_values_held_on_insert")
        bot.execute("DROP TRIGGER trades_values_held_on_update")
        bot.execute("DELETE FROM django_migrations WHERE name = '0005_values_held'")
        bot.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
            "VALUES (53, 'EURUSD', 'SELL', 0.1, 1.1, NULL)"
        )
        bot.commit()
    setup = run(env, "setup", "--no-demo")
    assert "its database holds 1 row(s) of trades whose entry_time is not a time" in setup.stderr
    with closing(sqlite3.connect(bot_file)) as bot:
        assert bot.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'trades_values_held_%'").fetchone() == (
            2,
        )
    run(env, "config", "set", "global", "sync.retry_delays_seconds", "[0.1]")
    failed = run(env, "sync_plugins", ok=False)
    said = failed.stdout + failed.stderr
    assert "1 row(s) of trades whose entry_time is not a time" in said and str(bot_file) in said
    assert "price_action_v6: 0 inserted" in failed.stdout
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute("UPDATE trades SET entry_time = '2026-11-27 10:00:00' WHERE mt5_ticket = 53")
        bot.commit()
    assert "combined_v3: 1 inserted" in run(env, "sync_plugins").stdout

    # A bot's file with such a value is not adopted: what is wrong is said, nothing changes.
    old_file = tmp_path / "old-bot.sqlite3"
    with closing(sqlite3.connect(old_file)) as old:
        old.executescript(SEED_DDL)
        old.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status, exit_price) "
            "VALUES (1, 'EURUSD', 'BUY', 0.1, 1.1, 'OPEN', '')"
        )
        old.commit()
    before = old_file.read_bytes()
    refused = run(env, "startplugin", "old_bot", "--adopt", str(old_file), ok=False)
    assert "1 row(s) of trades whose exit_price is not a number" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert old_file.read_bytes() == before and not (data / "plugins" / "old_bot.sqlite3").exists()


def test_ctrl_c_while_a_sync_waits_to_retry_a_broken_plugin_lets_the_run_finish_and_stops(install):
    """Huey's graceful shutdown waits for the running task: a sync waiting 5, 10 then 20 s to
    retry a broken plugin held `serve` up until it killed the consumer, its run left running."""
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    server = Served(env)
    try:
        wait_for(
            lambda: (
                central(
                    data,
                    "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING' AND plugins LIKE ?",
                    "%waiting to retry%",
                )
                == [(1,)]
            ),
            "a sync waiting to retry the broken plugin",
        )
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert central(data, "SELECT status FROM sync_app_syncrun") == [("PARTIAL",)]


def test_a_killed_worker_is_restarted_while_the_web_server_keeps_serving_and_is_alerted(install):
    env, data = install
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        # the worker never starves the pages: every thread of the consumer runs at a lower priority
        wait_for(
            lambda: all(os.getpriority(os.PRIO_PROCESS, int(tid)) == 10 for tid in os.listdir(f"/proc/{first}/task")),
            "every thread of the consumer to run at niceness 10",
            timeout=10,
        )
        os.kill(first, signal.SIGKILL)
        assert server.status("/login/") == 200
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        assert server.status("/login/") == 200
        assert central(data, "SELECT source, subject FROM zepix_admin_alert") == [("worker", "huey consumer")]
        wait_for(
            lambda: central(data, "SELECT resolved_at IS NOT NULL FROM zepix_admin_alert") == [(1,)],
            "the worker alert to resolve itself",
            timeout=40,
        )
    finally:
        server.stop()


@pytest.fixture
def syncs_held_up(tmp_path):
    """A fresh install whose syncs take their time: a plugin's trades are gone, retried after 60 s."""
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    run(env, "config", "set", "global", "sync.retry_delays_seconds", "[60]")
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    return env, operator_token, data


def test_a_sync_asked_for_whose_worker_was_killed_running_it_can_be_asked_for_again(syncs_held_up):
    """The consumer is killed in the middle of a sync asked for by hand; `serve` starts another at
    once, whose heartbeat is the same. The page held that sync as running (until the next run,
    minutes later) and as asked for (two hours); every click joined it."""
    env, operator_token, data = syncs_held_up
    # The schedule ran every job just now: only the sync asked for runs (a scheduled one, killed
    # with it, would start again at the restarted consumer's first tick, and hold the button).
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
        connection.executemany(
            "INSERT INTO sync_app_jobstate (name, last_started_at, task_id, relaunched) "
            "VALUES (?, datetime('now'), '', 0)",
            [(job,) for job in JOBS],
        )
    marker = "SELECT task_id FROM sync_app_jobstate WHERE name = 'manual_sync'"
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        assert "Sync queued" in ask_for_a_sync(server.url, operator_token)
        wait_for(lambda: str(first) in str(central(data, marker)), "the consumer to run the sync")
        running = "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING'"
        wait_for(lambda: central(data, running) == [(1,)], "the sync's run to begin")  # killed after its start
        assert "already queued or running; this request joins it" in ask_for_a_sync(server.url, operator_token)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        page = bearer(server, operator_token, "/sync/")[1]  # the killed run is shown stopped, the button free
        assert 'id="run-sync" >Run sync now' in page and '<span class="badge bad">ABORTED</span>' in page
        assert "Sync queued" in ask_for_a_sync(server.url, operator_token)
        wait_for(lambda: str(heartbeat_pid(data)) in str(central(data, marker)), "the new consumer to run it")
    finally:
        server.stop()


def tasks_in_the_queue_file(data: Path) -> list[bytes]:
    """Every task waiting in the consumers' queue file, now or for later (serialized: its id is in it)."""
    with closing(sqlite3.connect(data / "huey.sqlite3")) as queue:
        return [blob for table in ("task", "schedule") for (blob,) in queue.execute(f"SELECT data FROM {table}")]


def test_a_scheduled_sync_whose_worker_was_killed_running_it_starts_again_at_the_next_tick(syncs_held_up):
    """The consumer is killed in the middle of the sync its scheduler started. The tick had marked
    the sync started: the next one came at its next interval, and a daily backup killed the same
    way waited a day. The jobs the tick queued for later are not queued twice."""
    env, _, data = syncs_held_up
    markers = "SELECT name, task_id FROM sync_app_jobstate WHERE name != 'scheduler-tick'"
    server = Served(env)  # its consumer ticks as it starts: every job is due on a new install
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        wait_for(
            lambda: f"running {os.uname().nodename} {first}" == dict(central(data, markers)).get("sync"),
            "the sync to run",
        )
        running = "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING'"
        wait_for(lambda: central(data, running) == [(1,)], "the sync's run to begin")  # killed after its start
        queued_for_later = {name: task for name, task in central(data, markers) if name != "sync" and task}
        assert queued_for_later  # the backups, staggered behind the sync
        with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
            connection.execute("DELETE FROM sync_app_jobstate WHERE name = 'scheduler-tick'")  # as if a minute passed
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        second = heartbeat_pid(data)
        wait_for(
            lambda: f"running {os.uname().nodename} {second}" == dict(central(data, markers)).get("sync"),
            "the new consumer's first tick to start the lost sync again",
        )
        runs = "SELECT trigger, status FROM sync_app_syncrun ORDER BY id"
        wait_for(
            lambda: central(data, runs) == [("schedule", "ABORTED"), ("schedule", "RUNNING")],
            "the killed run to be marked aborted as the new one begins",
        )
        still, waiting = dict(central(data, markers)), tasks_in_the_queue_file(data)
        for name, task in queued_for_later.items():
            if still[name] in (task, "") or str(second) in still[name]:
                continue  # still waiting, done, or run by the new consumer
            # Queued again by the new consumer's tick: only once the first had lost its task (killed
            # between taking it from its queue and putting it in its schedule), never beside it.
            assert not any(task.encode() in blob for blob in waiting), (name, task, still[name])
    finally:
        server.stop()


def test_archive_while_the_consumer_watches_stays_archived_through_setup_and_undo_brings_it_back(install):
    env, data = install
    config_dir = Path(env["ZEPIX_CONFIG_DIR"])
    document = config_dir / "plugins" / "price_action_v6.json"
    consumer = start_consumer(env)
    try:
        wait_for(lambda: heartbeat_pid(data) == consumer.pid, "the consumer to start watching")
        archived = run(env, "archive_plugin", "price_action_v6")
        assert "Undo with `python manage.py archive_plugin price_action_v6 --undo`" in archived.stdout
        time.sleep(2)  # the watcher's debounce is 200 ms: it has long seen the file go
        assert not document.exists()
    finally:
        consumer.send_signal(signal.SIGINT)
        consumer.wait(timeout=20)
    assert central(
        data, "SELECT version, retired FROM config_app_configversion WHERE scope = 'price_action_v6' ORDER BY version"
    ) == [(1, 0), (2, 1)]
    run(env, "setup")  # with demo data on: an archived plugin gets no database and no demo trades
    assert not (data / "plugins" / "price_action_v6.sqlite3").exists() and not document.exists()
    scopes = run(env, "config", "get", "price_action_v6", ok=False)
    assert "Unknown config scope" in scopes.stderr
    assert central(data, "SELECT action FROM zepix_admin_auditentry WHERE target = 'price_action_v6' ORDER BY id") == [
        ("config.save",),
        ("config.retire",),
        ("plugin.archive",),
    ]

    run(env, "archive_plugin", "price_action_v6", "--undo")
    assert document.exists()
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone() == (3,)
    assert "max_lot_size" in run(env, "config", "get", "price_action_v6").stdout
    assert len(list((data / "archived").glob("price_action_v6-*.sqlite3.zst"))) == 1  # the archive is kept
    run(env, "sync_plugins")


def test_a_backup_killed_halfway_leaves_no_copy_for_good_and_a_running_ones_copy_is_left_alone(install):
    """A backup killed while it holds its copy of a database (a worker restarted, the OOM
    killer) could not remove that copy, as large as the database: each stayed for good. The
    next backup removes it; a backup still running (here stopped by SIGSTOP) keeps its own."""
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "combined_v3.sqlite3")) as bot, bot:
        bot.execute("CREATE TABLE bot_padding (data BLOB)")  # 64 MB: a copy that takes a moment
        bot.executemany("INSERT INTO bot_padding VALUES (zeroblob(1048576))", [()] * 64)
    backups = data / "backups"

    def backup_holding_its_copy():
        before = set(backups.glob(".work-*"))
        job = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "backup_databases", "--db", "plugin_combined_v3"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (folders := [f for f in set(backups.glob(".work-*")) - before if any(f.iterdir())]):
            assert job.poll() is None and time.monotonic() < deadline, "the backup never made its copy"
            time.sleep(0.005)
        return job, folders[0]

    killed, killed_folder = backup_holding_its_copy()
    killed.kill()
    killed.wait()
    stopped, stopped_folder = backup_holding_its_copy()
    try:
        stopped.send_signal(signal.SIGSTOP)
        assert killed_folder.exists()  # left behind, copy and all
        an_hour_ago = time.time() - 3600
        for folder in (killed_folder, stopped_folder):
            os.utime(folder, (an_hour_ago, an_hour_ago))

        run(env, "backup_databases", "--db", "plugin_combined_v3")
        assert not killed_folder.exists()
        assert stopped_folder.exists()
    finally:
        stopped.send_signal(signal.SIGCONT)
    assert stopped.wait(timeout=60) == 0  # and it finishes its backup
    assert not list(backups.glob(".work-*"))
    assert len(list(backups.glob("plugin_combined_v3-*.sqlite3.zst"))) == 2


def test_a_damaged_queue_file_stops_no_command_and_the_console_makes_a_new_one(tmp_path):
    """Huey's queue is a SQLite file too (without REDIS_URL), and every process opened it as it
    started: damaged, it stopped every command and the server at start-up with a traceback."""
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    (data / "huey.sqlite3").write_bytes(b"this is not a database at all, sorry" * 100)

    assert '"schedules"' in run(env, "config", "get", "global").stdout
    assert "combined_v3" in run(env, "sync_plugins").stdout
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        asked = urllib.request.Request(
            f"{server.url}/sync/run", data=b"", headers={"Authorization": f"Bearer {operator_token}"}
        )
        urllib.request.urlopen(asked, timeout=10).close()
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'") == [(1,)],
            "the sync asked for from the console to run through the new queue",
        )
    finally:
        server.stop()
    (aside,) = data.glob("huey.sqlite3.damaged-*")  # kept for a look, not used again
    assert aside.read_bytes().startswith(b"this is not a database")
    assert central(data, "SELECT source, subject, resolved_at FROM zepix_admin_alert WHERE source = 'queue'") == [
        ("queue", "huey.sqlite3", None)
    ]
    (message,) = central(data, "SELECT message FROM zepix_admin_alert WHERE source = 'queue'")[0]
    assert aside.name in message


def test_a_queue_file_removed_while_the_console_runs_is_made_again_and_its_consumer_follows(tmp_path):
    """The consumer kept its connection to the removed file (as it would to one another process
    set aside as damaged): the tasks queued in the new file by any other process never ran."""
    env, _, _ = installed(tmp_path)
    data = tmp_path / "data"
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        for leftover in data.glob("huey.sqlite3*"):
            leftover.unlink()
        run(env, "shell", "-c", "from sync_app import tasks\ntasks.sync_task('manual', 'tester')")
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'") == [(1,)],
            "the sync queued in the new file to run",
        )
    finally:
        server.stop()


def test_a_queue_that_cannot_be_read_is_logged_once_not_at_every_look(tmp_path):
    """The consumer's scheduler looks at the queue every second and each worker after each
    pause: with the queue unreadable (a full disk, here a folder where its file should be) each
    look logged a whole traceback, sixty a minute into the operator's logs."""
    env, _, _ = installed(tmp_path)
    (tmp_path / "data" / "huey.sqlite3").mkdir()
    consumer = start_consumer(env, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    consumer.send_signal(signal.SIGINT)
    _, logged = consumer.communicate(timeout=20)
    assert "unable to open database file" in logged
    assert logged.count("Traceback") <= 3, logged  # the scheduler's and each worker's first
