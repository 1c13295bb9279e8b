"""Background jobs: schedules come from the configuration; the tick is registered with Huey."""

from datetime import timedelta

import pytest
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import scheduler, tasks
from sync_app.models import AggregatedTrade, Backup, SyncRun
from tests.helpers import trade
from zepix_admin.core.models import Heartbeat

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def test_the_scheduler_tick_is_a_registered_periodic_task():
    due_now = HUEY.read_periodic(timezone.now().replace(second=0))
    assert [task.name for task in due_now if task.name.endswith("scheduler_tick")]


def test_every_job_is_due_at_first_then_only_after_its_interval(config):
    now = timezone.now()
    assert set(scheduler.due_jobs(now)) == set(scheduler.JOBS)
    assert scheduler.due_jobs(now + timedelta(minutes=4)) == []
    assert scheduler.due_jobs(now + timedelta(minutes=5)) == ["sync"]
    assert "trading_backup" in scheduler.due_jobs(now + timedelta(minutes=61))


def test_an_operator_changes_a_schedule_in_the_config_and_the_next_tick_follows_it(config):
    now = timezone.now()
    scheduler.due_jobs(now)
    config("global", "schedules.sync_minutes", 1)
    assert scheduler.due_jobs(now + timedelta(minutes=1)) == ["sync"]


def test_each_minute_is_claimed_by_one_tick_only(config):
    now = timezone.now().replace(second=5)
    assert scheduler.claim_tick(now)
    assert not scheduler.claim_tick(now + timedelta(seconds=30))  # another consumer, the same minute
    assert scheduler.claim_tick(now + timedelta(minutes=1))


def test_a_tick_runs_the_due_jobs_and_beats(config):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(1))
    tasks.scheduler_tick.call_local()
    assert Heartbeat.objects.get(name="huey")
    assert SyncRun.objects.get().trigger == "schedule"
    assert AggregatedTrade.objects.count() == 1
    assert set(Backup.objects.values_list("database", flat=True)) == {
        "default",
        "plugin_combined_v3",
        "plugin_price_action_v6",
    }
    assert Backup.objects.filter(verified=True).count() == 3
