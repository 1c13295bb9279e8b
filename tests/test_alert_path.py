"""One alert path: every source is stored, counted while open, posted to the webhook above
the configured level, and resolved when its condition clears. The worker's state is shown
where operators act, and an action that needs the worker says when it is down."""

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from config_app import documents
from config_app import service as config_service
from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import backup as backups
from sync_app import sync, tasks
from sync_app.models import AggregatedTrade
from tests.helpers import installed, run, trade, webhook_server
from zepix_admin.core import worker
from zepix_admin.core.alerts import open_alerts, raise_alert, resolve_alert
from zepix_admin.core.files import file_lock
from zepix_admin.core.models import Alert, Heartbeat

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def webhook(config, webhook_receiver):
    url, posted = webhook_receiver
    config("global", "sync.alert_webhook_url", url)
    return posted


def test_a_repeated_condition_counts_one_alert_and_pages_once_then_resolves_itself(webhook):
    for attempt in range(3):
        raise_alert("backup", "plugin_combined_v3", f"Backup failed, attempt {attempt}", level="CRITICAL")
    alert = Alert.objects.get()
    assert alert.count == 3 and alert.message == "Backup failed, attempt 2" and alert.last_seen_at >= alert.created_at
    assert [hook["source"] for hook in webhook()] == ["backup"]
    assert resolve_alert("backup", "plugin_combined_v3") == 1
    assert not open_alerts().exists()
    raise_alert("backup", "plugin_combined_v3", "It failed again")
    assert Alert.objects.count() == 2 and len(webhook()) == 2  # a new occurrence after it resolved


@pytest.mark.slow  # commands: an install of its own
def test_whoever_raises_an_alert_goes_on_while_a_slow_webhook_answers_and_a_command_posts_before_it_ends(
    config, tmp_path
):
    """The webhook was posted in the thread that raised the alert, after its commit: a config save
    whose file could not be written answered, and the watcher and a sync went on, only once the
    webhook had answered (up to 5 s). Now a thread of the process's own posts; a command still
    posts its alert before it ends."""
    with webhook_server(answer_after=3.0) as (url, posted):
        config("global", "sync.alert_webhook_url", url)
        started = time.monotonic()
        raise_alert("disk", "data folder", "Almost full", level="CRITICAL")
        assert time.monotonic() - started < 1.5  # not the webhook's 3 s
        assert [hook["source"] for hook in posted()] == ["disk"]

        env, _, _ = installed(tmp_path, ZEPIX_WEBHOOK_ALLOW_PRIVATE="1")
        run(env, "config", "set", "global", "sync.alert_webhook_url", json.dumps(url))
        (tmp_path / "data" / "plugins" / "combined_v3.sqlite3").rename(tmp_path / "away.sqlite3")
        failed = run(env, "backup_databases", "--db", "plugin_combined_v3", ok=False)
        assert "its database file is missing" in failed.stdout + failed.stderr
        assert [(hook["source"], hook["subject"]) for hook in posted()[1:]] == [("backup", "plugin_combined_v3")]


def test_the_webhook_minimum_level_keeps_warnings_inside(webhook, config):
    config("global", "alerts.webhook_min_level", "CRITICAL")
    raise_alert("config", "global", "Rejected edit")
    raise_alert("disk", "data folder", "Almost full", level="CRITICAL")
    assert [hook["source"] for hook in webhook()] == ["disk"]
    assert Alert.objects.count() == 2


def test_a_failed_backup_alerts_and_the_next_good_one_resolves_it(webhook):
    path = plugins.database_path("combined_v3")
    path.rename(settings.DATA_DIR / "away.sqlite3")
    try:
        tasks.backup_task(["plugin_combined_v3"])
    finally:
        (settings.DATA_DIR / "away.sqlite3").rename(path)
    alert = Alert.objects.get(source="backup")
    assert "its database file is missing" in alert.message and webhook()[0]["subject"] == "plugin_combined_v3"
    tasks.backup_task(["plugin_combined_v3"])
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_failed_restore_drill_alerts_and_resolves_when_the_backups_pass(webhook):
    made = backups.backup_database("plugin_price_action_v6")
    packed = Path(made.path)
    original = packed.read_bytes()
    packed.write_bytes(b"garbage")
    tasks.verify_backups_task()
    assert Alert.objects.get(source="restore_drill").subject == "plugin_price_action_v6"
    assert webhook()[-1]["source"] == "restore_drill"
    packed.write_bytes(original)
    tasks.verify_backups_task()
    assert Alert.objects.get(source="restore_drill").resolved_at is not None


def test_a_rejected_outside_edit_alerts_and_the_fixed_file_resolves_it(webhook):
    path = documents.document_path("combined_v3")
    path.write_text('{"enabled": "yes please"}')
    assert config_service.ingest_file("combined_v3") is None
    assert Alert.objects.get(source="config").subject == "combined_v3" and webhook()[-1]["source"] == "config"
    path.write_text(json.dumps({**config_service.active_document("combined_v3"), "max_open_trades": 4}))
    assert config_service.ingest_file("combined_v3").version == 2
    assert Alert.objects.get(source="config").resolved_at is not None


def test_a_sync_failing_then_healthy_resolves_its_alert_and_healthz_follows(client, viewer, config):
    client.force_login(viewer)
    config("global", "sync.retry_delays_seconds", [])
    config("global", "sync.alert_after_failures", 1)
    worker.beat()
    path = plugins.database_path("price_action_v6")
    path.rename(settings.DATA_DIR / "away.sqlite3")
    try:
        sync.run_sync(trigger="command")
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["sync"]["failing_plugins"] == ["price_action_v6"]
    finally:
        (settings.DATA_DIR / "away.sqlite3").rename(path)
    assert Alert.objects.get(source="sync").resolved_at is None
    sync.run_sync(trigger="command")
    assert Alert.objects.get(source="sync").resolved_at is not None
    assert client.get("/healthz").json()["sync"]["failing_plugins"] == []


def test_a_low_disk_alerts_from_the_scheduler_tick(config):
    config("global", "alerts.min_free_disk_gb", 10**5)
    tasks.check_disk_space()
    assert Alert.objects.get(source="disk").level == "CRITICAL"
    config("global", "alerts.min_free_disk_gb", 0)
    tasks.check_disk_space()
    assert Alert.objects.get(source="disk").resolved_at is not None


def test_with_the_worker_down_pages_say_so_and_actions_say_they_wait_for_it(operator_client, config):
    Heartbeat.objects.create(name="huey", beat_at=timezone.now() - timedelta(minutes=7))
    page = operator_client.get("/").content.decode()
    assert "Worker down (since" in page and "7\xa0minutes)" in page
    assert "Worker down (since" in operator_client.get("/sync/").content.decode()
    assert "Worker down (since" in operator_client.get("/backups/").content.decode()
    answer = operator_client.post("/sync/run", headers={"HX-Request": "true"}).content.decode()
    notice = answer.split('id="sync-notice">', 1)[1].split("</p>", 1)[0]
    assert "Sync queued, but the worker is down (since" in notice and "started" not in notice
    answer = operator_client.post("/backups/start", follow=True).content.decode()
    assert "Backup of every database queued, but the worker is down (since" in answer
    worker.beat()
    answer = operator_client.post("/sync/run", headers={"HX-Request": "true"}).content.decode()
    assert "Sync queued; the worker starts it within seconds." in answer


def test_a_dead_consumers_alert_is_resolved_by_the_restarted_consumers_beat_not_by_the_last_one_it_left(config):
    """`serve`'s supervisor (the process test is in test_bad_day): the beat a killed consumer
    left stays fresh for 45 s, and resolved the alert of its death before its successor ran."""
    import io
    import time

    from zepix_admin.management.commands.serve import Command

    worker.beat(timezone.now() - timedelta(seconds=5))  # the killed consumer's last beat
    supervisor = Command(stdout=io.StringIO(), stderr=io.StringIO())
    supervisor.consumer_died(-9, restarts=0)
    restarted_at = timezone.now()
    assert supervisor.watch_heartbeat(time.monotonic(), restarted_at) is False
    assert Alert.objects.get(source="worker").resolved_at is None
    worker.beat()  # the restarted consumer's first beat
    assert supervisor.watch_heartbeat(time.monotonic(), restarted_at) is True
    assert Alert.objects.get(source="worker").resolved_at is not None


def test_healthz_is_503_while_the_worker_is_down_and_tells_anonymous_callers_names_only(client, viewer, config):
    Heartbeat.objects.create(name="huey", beat_at=timezone.now() - timedelta(minutes=2))
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 503
    assert set(anonymous.json()) == {"status", "failing"} and "worker" in anonymous.json()["failing"]
    assert str(settings.DATA_DIR) not in anonymous.content.decode()
    client.force_login(viewer)
    body = client.get("/healthz")
    assert body.status_code == 503 and "worker down (since" in body.json()["huey_consumer"]["problem"]


def test_heavy_jobs_take_turns(config):
    finished = threading.Event()

    def back_up():
        try:
            tasks.backup_task(["default"])
            finished.set()
        finally:
            connections.close_all()

    with file_lock(settings.DATA_DIR / "heavy-job.lock"):
        thread = threading.Thread(target=back_up)
        thread.start()
        assert not finished.wait(0.5)  # the backup waits for the job holding the lock
    assert finished.wait(30)
    thread.join()


def test_one_plugin_store_shared_by_eight_threads_writes_every_trade(config):
    errors = []
    with PluginStore(plugins.database_path("combined_v3")) as store:

        def write(worker_number):
            try:
                for i in range(25):
                    ticket = worker_number * 1000 + i
                    store.save_trade(**trade(ticket))
                    store.close_trade(ticket, exit_price=1.09, profit_pips=5, profit_dollars=5.0, close_reason="TP")
            except Exception as error:  # noqa: BLE001 - collected for the assertion
                errors.append(error)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        rows = store.connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT change_seq), SUM(status = 'CLOSED') FROM trades"
        )
        assert tuple(rows.fetchone()) == (200, 200, 200)
        assert (
            sum(row["total_trades"] for row in store.connection.execute("SELECT total_trades FROM daily_stats")) == 200
        )
    sync.run_sync(trigger="command")
    assert AggregatedTrade.objects.filter(plugin_id="combined_v3", status="CLOSED").count() == 200


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_an_alert_shows_its_count_and_link_and_a_snooze_takes_it_out_of_the_open_list_for_a_while(
    operator_client, config
):
    from datetime import timedelta

    from django.utils import timezone

    from zepix_admin.core.alerts import open_alerts, raise_alert
    from zepix_admin.core.models import AuditEntry

    raise_alert("sync", "combined_v3", "Sync failed")
    alert = raise_alert("sync", "combined_v3", "Sync failed again")
    page = operator_client.get("/alerts/").content.decode()
    assert '<td class="num">2</td>' in page and '<a href="/sync/">combined_v3</a>' in page
    assert 'class="badge WARNING"' in page
    assert operator_client.post(f"/alerts/{alert.pk}/snooze", {"for": "forever"}).status_code == 400
    assert operator_client.post(f"/alerts/{alert.pk}/snooze", {"for": "4h"}).status_code == 302
    assert not open_alerts().exists()
    assert 'id="snoozed-alerts"' in operator_client.get("/alerts/").content.decode()
    assert AuditEntry.objects.filter(action="alert.snooze").exists()
    type(alert).objects.filter(pk=alert.pk).update(snoozed_until=timezone.now() - timedelta(minutes=1))
    assert list(open_alerts()) == [alert]  # back once the snooze is over
