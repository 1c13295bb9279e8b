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
        d["journal_mode"] == "wal" and d["integrity"] == "ok" and d["unapplied_migrations"] == 0
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


def test_never_synced_nor_backed_up_needs_attention(config, capsys):
    worker.beat()
    code, out = health(capsys)
    assert code == 1 and "FAIL last sync: never ran" in out and "FAIL last backup: never ran" in out
