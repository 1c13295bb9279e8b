"""health_check and /healthz: databases, disk, migrations, job ages and the consumer's heartbeat."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from sync_app import backup as backups
from sync_app.sync import run_sync
from zepix_admin.core import worker
from zepix_admin.core.models import Heartbeat

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def health(capsys, *args):
    with pytest.raises(SystemExit) as exited:
        call_command("health_check", *args)
        raise SystemExit(0)
    return exited.value.code, capsys.readouterr().out


def test_everything_healthy_exits_zero_and_healthz_answers_200(client, config, capsys):
    run_sync(trigger="command")
    backups.backup_database("default")
    worker.beat()
    code, out = health(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "ok"
    assert {d["alias"] for d in report["databases"]} == {"default", "plugin_combined_v3", "plugin_price_action_v6"}
    assert all(
        d["unapplied_migrations"] == 0
        and (d.get("engine") == "postgresql" or (d["journal_mode"] == "wal" and d["integrity"] == "ok"))
        for d in report["databases"]
    )
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_a_missing_consumer_or_stale_jobs_need_attention(client, config, capsys):
    run_sync(trigger="command")
    backups.backup_database("default")
    Heartbeat.objects.create(name="huey", beat_at=timezone.now() - timedelta(minutes=10))
    code, out = health(capsys)
    assert code == 1 and "FAIL huey consumer" in out
    assert client.get("/healthz").status_code == 503


@pytest.fixture
def installed_ago():
    """Makes the central database's migrations as old as asked (when it was installed), and
    gives them their own time back afterwards (a flush between tests leaves them alone)."""
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    migrations = MigrationRecorder(connection).migration_qs
    applied = dict(migrations.values_list("id", "applied"))
    yield lambda age: migrations.update(applied=timezone.now() - age)
    for pk, when in applied.items():
        migrations.filter(pk=pk).update(applied=when)


def test_never_synced_nor_backed_up_needs_attention(client, config, capsys, installed_ago):
    installed_ago(timedelta(days=30))
    worker.beat()
    code, out = health(capsys)
    assert code == 1 and "FAIL last sync: never ran" in out and "FAIL last backup: never ran" in out
    assert client.get("/healthz").json() == {"status": "attention", "failing": ["job sync", "job backup"]}


def test_a_new_install_is_healthy_before_its_first_sync_and_backup_are_due(client, config, capsys, installed_ago):
    """A console set up a moment ago has not synced or backed up yet: its monitor and load
    balancer must not take it for a broken one (they did, until the first backup was made)."""
    installed_ago(timedelta(seconds=5))
    worker.beat()
    code, out = health(capsys)
    assert code == 0, out
    assert "OK   last sync: not run yet: a new install" in out and "OK   last backup: not run yet: a new install" in out
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_metrics_speak_prometheus_to_a_token_or_an_allowed_address_only(viewer_client, config, settings):
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    from sync_app.sync import run_sync
    from zepix_admin.core.alerts import raise_alert

    run_sync(trigger="command")
    raise_alert("sync", "combined_v3", "Sync failed", level="CRITICAL")
    anonymous = Client()
    assert anonymous.get("/metrics").status_code == 401
    settings.METRICS_ALLOWED_ADDRESSES = ["127.0.0.1"]  # the test client's address
    allowed = anonymous.get("/metrics")
    assert allowed.status_code == 200 and allowed["Content-Type"].startswith("text/plain; version=")
    settings.METRICS_ALLOWED_ADDRESSES = []
    scraped = viewer_client.get("/metrics").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    assert samples[("zepix_sync_runs_total", (("status", "OK"),))] == 1
    assert samples[("zepix_sync_health", (("plugin", "combined_v3"),))] == 0
    assert samples[("zepix_config_version", (("scope", "global"),))] >= 1
    assert samples[("zepix_open_alerts", (("severity", "CRITICAL"),))] == 1
    assert ("zepix_sync_last_run_seconds", ()) in samples
