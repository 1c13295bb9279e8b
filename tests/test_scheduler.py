"""Background jobs: schedules come from the configuration; the tick is registered with Huey."""

import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import scheduler, tasks
from sync_app.models import AggregatedTrade, Backup, JobState, SyncRun
from tests.helpers import trade
from zepix_admin.core import worker
from zepix_admin.core.files import file_lock
from zepix_admin.core.models import Alert, Heartbeat

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def test_the_scheduler_tick_is_a_registered_periodic_task():
    due_now = HUEY.read_periodic(timezone.now().replace(second=0))
    assert [task.name for task in due_now if task.name.endswith("scheduler_tick")]


def test_every_job_is_due_at_first_then_only_after_its_interval(config):
    now = timezone.now()
    assert set(scheduler.due_jobs(now, in_flight=tasks.in_flight)) == set(scheduler.JOBS)
    assert scheduler.due_jobs(now + timedelta(minutes=4), in_flight=tasks.in_flight) == []
    assert scheduler.due_jobs(now + timedelta(minutes=5), in_flight=tasks.in_flight) == ["sync"]
    assert "trading_backup" in scheduler.due_jobs(now + timedelta(minutes=61), in_flight=tasks.in_flight)


def test_an_operator_changes_a_schedule_in_the_config_and_the_next_tick_follows_it(config):
    now = timezone.now()
    scheduler.due_jobs(now, in_flight=tasks.in_flight)
    config("global", "schedules.sync_minutes", 1)
    assert scheduler.due_jobs(now + timedelta(minutes=1), in_flight=tasks.in_flight) == ["sync"]


def test_a_task_a_consumer_is_moving_from_its_queue_to_its_schedule_is_not_taken_for_lost(config):
    """A task for later is dequeued by a worker, then put in the schedule: in neither for a moment.
    A tick looking then queued its job again (to run twice); a task gone for good is lost."""
    now = timezone.now()
    scheduler.due_jobs(now, in_flight=tasks.in_flight)
    later = tasks.scheduled_job_task.s("trading_backup", delay=40)
    HUEY.storage.enqueue(HUEY.serialize_task(later), later.priority)
    JobState.objects.filter(name="trading_backup").update(task_id=later.id)
    gone = tasks.scheduled_job_task.s("central_backup")
    JobState.objects.filter(name="central_backup").update(task_id=gone.id)
    taken = HUEY.storage.dequeue()  # a worker holds it ...
    mover = threading.Timer(0.05, HUEY.storage.add_to_schedule, (taken, later.eta))  # ... and schedules it
    mover.start()
    try:
        due = scheduler.due_jobs(now + timedelta(minutes=1), in_flight=tasks.in_flight)
    finally:
        mover.join()
        HUEY.storage.flush_all()
    assert "trading_backup" not in due and "central_backup" in due
    assert JobState.objects.get(name="trading_backup").task_id == later.id


def test_a_job_whose_task_was_lost_is_due_at_the_next_tick_and_one_still_running_is_not(config):
    now = timezone.now()
    scheduler.due_jobs(now, in_flight=tasks.in_flight)
    dead = subprocess.Popen(["true"])
    dead.wait()
    JobState.objects.filter(name="sync").update(task_id=f"running {socket.gethostname()} {dead.pid}")
    JobState.objects.filter(name="central_backup").update(task_id="a task no queue holds")
    JobState.objects.filter(name="trading_backup").update(task_id=f"running {worker.process_stamp()}")
    JobState.objects.filter(name="verify_backups").update(task_id=f"running {worker.process_stamp()}")
    later = now + timedelta(minutes=1)
    with file_lock(tasks.job_lock("trading_backup")):  # as the process running it holds it
        # The restore drill's marker names a live process that no longer runs it (a restore of
        # the central database brought it back): lost too.
        assert scheduler.due_jobs(later, in_flight=tasks.in_flight) == ["sync", "central_backup", "verify_backups"]
        # Still running past its interval: not started again behind itself.
        assert "trading_backup" not in scheduler.due_jobs(now + timedelta(minutes=61), in_flight=tasks.in_flight)
    assert not JobState.objects.filter(name="sync").values_list("task_id", flat=True).get()  # started anew


def test_a_job_lost_twice_in_a_row_waits_its_interval_and_is_alerted_instead_of_taking_the_worker_down_again(config):
    """A job that kills its worker (out of memory on a large file) was started again at every tick."""
    now = timezone.now()
    scheduler.due_jobs(now, in_flight=tasks.in_flight)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dies_running = f"running {socket.gethostname()} {gone.pid}"
    JobState.objects.filter(name="central_backup").update(task_id=dies_running)
    assert "central_backup" in scheduler.due_jobs(now + timedelta(minutes=1), in_flight=tasks.in_flight)
    JobState.objects.filter(name="central_backup").update(task_id=dies_running)  # and again
    assert "central_backup" not in scheduler.due_jobs(now + timedelta(minutes=2), in_flight=tasks.in_flight)
    alert = Alert.objects.get(source="job", subject="central_backup", resolved_at=None)
    assert "lost twice in a row" in alert.message and alert.page == "/sync/"
    assert "central_backup" not in scheduler.due_jobs(now + timedelta(minutes=3), in_flight=tasks.in_flight)
    # Its next interval: it runs, and once it ends the alert resolves itself.
    assert "central_backup" in scheduler.due_jobs(now + timedelta(days=1, minutes=1), in_flight=tasks.in_flight)
    JobState.objects.filter(name="central_backup").update(task_id="running here")
    scheduler.finished("central_backup", "running here")
    assert not Alert.objects.filter(source="job", resolved_at=None).exists()


def test_a_job_queued_while_the_worker_was_down_for_hours_is_not_queued_again(config):
    now = timezone.now()
    waiting = tasks.scheduled_job_task.s("sync")
    HUEY.storage.enqueue(HUEY.serialize_task(waiting), waiting.priority)  # the tests run queued tasks at once
    try:
        JobState.objects.create(name="sync", task_id=waiting.id, last_started_at=now - timedelta(hours=3))
        assert "sync" not in scheduler.due_jobs(now, in_flight=tasks.in_flight)
    finally:
        HUEY.storage.flush_queue()


def test_a_clock_set_back_an_hour_leaves_no_minute_unticked_and_no_job_waiting_for_it(config):
    now = timezone.now().replace(second=5)
    assert scheduler.claim_tick(now)
    scheduler.due_jobs(now, in_flight=tasks.in_flight)
    back = now - timedelta(hours=1)
    assert scheduler.claim_tick(back)
    assert not scheduler.claim_tick(back + timedelta(seconds=30))  # still one tick a minute
    assert set(scheduler.due_jobs(back, in_flight=tasks.in_flight)) == set(scheduler.JOBS)
    assert scheduler.due_jobs(back + timedelta(minutes=4), in_flight=tasks.in_flight) == []
    # A few seconds between two machines' clocks are not a clock set back.
    assert scheduler.due_jobs(back - timedelta(seconds=20), in_flight=tasks.in_flight) == []


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
