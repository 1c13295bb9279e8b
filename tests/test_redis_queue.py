"""Huey on Redis (REDIS_URL): three consumers share one queue, and the scheduler tick that every
consumer starts each minute runs once for all of them. Real redis-server, real consumers."""

import json
import signal
import subprocess
import time
from datetime import datetime

import pytest

from tests.helpers import (
    Served,
    ask_for_a_sync,
    bearer,
    central,
    free_port,
    installed,
    manage,
    start_consumer,
    start_redis,
    stop_node,
    wait_for,
    web_node,
)
from tests.test_several_nodes import answers

pytestmark = pytest.mark.slow


def test_three_consumers_share_the_queue_and_a_minute_is_ticked_once(tmp_path, redis_url):
    env = installed(tmp_path, REDIS_URL=redis_url)[0]
    data = tmp_path / "data"
    # Every tick that runs checks the disk; with this threshold each one counts the disk alert once more.
    assert manage("config", "set", "global", "alerts.min_free_disk_gb", "100000", env=env).returncode == 0
    # Each consumer's scheduler ticks as it starts too (then every 60 s): started just before a
    # minute began, theirs and the test's ticks were two minutes' ticks, each run (the disk
    # alert counted twice). Begin well inside a minute.
    while datetime.now().second > 40:
        time.sleep(1)
    consumers = [start_consumer(env) for _ in range(3)]
    try:
        # As each consumer's scheduler does at the top of a minute: three ticks, at once.
        enqueued = manage(
            "shell", "-c", "from sync_app import tasks\nfor _ in range(3): tasks.scheduler_tick()", env=env
        )
        assert enqueued.returncode == 0, enqueued.stderr
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE status != 'RUNNING'")[0][0] >= 1,
            "the tick's sync to run",
        )
        time.sleep(2)  # time enough for a second tick to have started a second sync, had it run
        assert central(data, "SELECT COUNT(*) FROM sync_app_syncrun")[0][0] == 1
        assert central(data, "SELECT count FROM zepix_admin_alert WHERE source = 'disk'") == [(1,)]  # one tick ran
        # Work asked for by hand goes to whichever consumer is free, once.
        asked = manage("sync_plugins", env=env)  # a direct run, for comparison: it needs no queue
        assert asked.returncode == 0
        manage("shell", "-c", "from sync_app import tasks\ntasks.sync_task('manual', 'tester')", env=env)
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'")[0][0] == 1,
            "the queued sync to run",
        )
        assert all(consumer.poll() is None for consumer in consumers)
    finally:
        for consumer in consumers:
            consumer.send_signal(signal.SIGINT)
        for consumer in consumers:
            try:
                consumer.wait(timeout=15)
            except subprocess.TimeoutExpired:
                consumer.kill()


def test_redis_hung_then_stopped_is_said_at_once_refused_clearly_and_recovered_from_by_itself(tmp_path):
    """Hung first (SIGSTOP: the connections stay open, nothing answers, as with a host gone from
    the network): every page asks the queue (the navigation's worker badge) and each waited
    redis-py's 5 s a command, "Run sync now" 15 s. The first to ask waits for the queue's short
    limit; the pages after it are told at once, until the queue is asked again a few seconds
    later. Then stopped, and started again empty."""
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    env, operator_token, _ = installed(tmp_path / "install", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    served = Served(env)
    try:
        served.log_in()
        wait_for(lambda: 'Worker: <span class="badge OK">up' in served.get("/sync/")[1], "the worker to be up")
        redis_server.send_signal(signal.SIGSTOP)
        status, report = served.get("/healthz", timeout=4)  # within a monitor's patience (it was 5 s a command)
        assert status == 503 and "queue" in json.loads(report)["huey_consumer"]
        for path in ("/", "/sync/", "/backups/", "/sync/", "/"):
            status, page = served.get(path, timeout=1.5)
            assert status == 200 and "The task queue does not answer" in page, path
        assert served.get("/config/", timeout=1.5)[0] == 200  # a page that shows no worker does not ask
        status, answer = bearer(served, operator_token, "/sync/run", data=b"")
        assert status == 503 and "nothing was queued" in answer
        redis_server.send_signal(signal.SIGCONT)
        redis_server.terminate()
        redis_server.wait()
        page = served.get("/sync/")[1]
        assert "The task queue does not answer" in page  # the pages say so...
        report = json.loads(served.get("/healthz")[1])
        assert report["huey_consumer"]["ok"] is False and "queue" in report["huey_consumer"]
        status, answer = bearer(served, operator_token, "/sync/run", data=b"")  # ...and refuse clearly
        assert status == 503 and "nothing was queued" in answer
        redis_server = start_redis(port, tmp_path)  # back, empty (no persistence)
        wait_for(lambda: 'Worker: <span class="badge OK">up' in served.get("/sync/")[1], "the worker to recover")
        status, _ = bearer(served, operator_token, "/sync/run", data=b"")
        assert status in (200, 302)
        manual_runs = "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'"
        wait_for(
            lambda: central(tmp_path / "install" / "data", manual_runs) == [(1,)],
            "the consumers to take work again by themselves",
        )
    finally:
        redis_server.send_signal(signal.SIGCONT)
        served.stop()
        redis_server.terminate()
        redis_server.wait()


def test_two_consoles_given_one_redis_database_never_run_each_others_jobs(tmp_path, redis_url):
    """A staging and a production console on the same Redis database: each console's queue is its
    own (named after its data folder's id), so a consumer of one never takes the other's sync."""
    production = installed(tmp_path / "production", REDIS_URL=redis_url)[0]
    staging = installed(tmp_path / "staging", REDIS_URL=redis_url)[0]
    (tmp_path / "staging" / "data" / "console-id").write_text("a-staging-console\n")  # another install's id
    manual_runs = "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'"
    staging_consumer = start_consumer(staging)
    production_consumer = None
    try:
        asked = manage("shell", "-c", "from sync_app import tasks\ntasks.sync_task('manual', 'tester')", env=production)
        assert asked.returncode == 0, asked.stderr
        time.sleep(5)  # time enough for the staging consumer to have taken it, had it seen it
        assert central(tmp_path / "staging" / "data", manual_runs) == [(0,)]
        assert central(tmp_path / "production" / "data", manual_runs) == [(0,)]
        production_consumer = start_consumer(production)  # production's own consumer runs it
        wait_for(lambda: central(tmp_path / "production" / "data", manual_runs) == [(1,)], "production's sync")
        assert central(tmp_path / "staging" / "data", manual_runs) == [(0,)]
    finally:
        for consumer in (staging_consumer, production_consumer):
            if consumer is not None:
                stop_node(consumer)


def test_a_sync_asked_for_whose_task_redis_lost_can_be_asked_for_again(tmp_path):
    """The worker down, a sync asked for waits in the queue; Redis restarts without persistence
    and loses it. Asking again queues a new one (it "joined" the lost one for two hours, while
    the page said it was queued), and the worker, once back, runs it."""
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    env, operator_token, _ = installed(tmp_path / "install", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    web_port = free_port()
    url = f"http://127.0.0.1:{web_port}"
    node = web_node(env, web_port)
    consumer = None

    manual_runs = "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'"
    try:
        wait_for(lambda: answers(url), "the web node to answer")
        assert "Sync queued, but the worker is down" in ask_for_a_sync(url, operator_token)
        joined = ask_for_a_sync(url, operator_token)
        assert "already queued or running; this request joins it" in joined  # the task is still there
        redis_server.terminate()
        redis_server.wait()
        redis_server = start_redis(port, tmp_path)  # back, empty
        assert "Sync queued, but the worker is down" in ask_for_a_sync(url, operator_token)
        consumer = start_consumer(env)
        wait_for(lambda: central(tmp_path / "install" / "data", manual_runs) == [(1,)], "the sync asked for to run")
    finally:
        for process in (consumer, node):
            if process is not None:
                stop_node(process)
        redis_server.terminate()
        redis_server.wait()
