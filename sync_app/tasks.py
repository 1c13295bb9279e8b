"""Huey tasks: thin callers of the sync, backup and archive modules.

The consumer must never starve the pages: it runs at a lower CPU and I/O priority, the heavy
jobs (sync, backups, restore drill) take turns on one lock, and the jobs one tick finds due
start STAGGER_SECONDS apart. Measured: with every job starting at once after a restart, the
overview's p95 went from 79 ms to 229 ms (5 plugins x 200,000 trades) until they finished.
"""

import logging
import os
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task, lock_task

from config_app import service as config_service
from config_app.service import global_settings
from sync_app import scheduler
from sync_app.archive import purge_expired_archives
from sync_app.backup import BackupError, UnknownDatabase, backup_database, database_aliases, verify_backups
from sync_app.models import BackupRun, JobState
from sync_app.retention import apply_retention
from sync_app.sync import SyncAlreadyRunning, run_sync
from zepix_admin.core import home, worker
from zepix_admin.core.alerts import raise_alert, resolve_alert
from zepix_admin.core.databases import outage
from zepix_admin.core.errors import Unavailable
from zepix_admin.core.files import file_lock, is_locked, tried_until

logger = logging.getLogger("zepix.tasks")
STAGGER_SECONDS = 20
JOB_MARKER_STALE = timedelta(hours=2)  # a marker this old counts for nothing when the queue does not answer
CONSUMER_NICENESS = 10


@HUEY.on_startup()
def start_worker_services():
    """Once per consumer process (Huey calls this in each worker thread): start its heartbeat."""
    with _startup_lock:
        if getattr(start_worker_services, "started", False):
            return
        start_worker_services.started = True
    worker.start_heartbeat(threading.Event())


_startup_lock = threading.Lock()


def lower_priority() -> None:
    """Nice and I/O priority are per thread on Linux, and a new thread takes its creator's: called
    as the consumer process starts (``SyncAppConfig.ready``), before Huey makes its threads, so
    every thread runs lower. Done from a worker thread's start-up hook instead, a thread made
    meanwhile by a not yet lowered one kept the normal priority."""
    threads = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [str(os.getpid())]
    for thread_id in threads:
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(thread_id), CONSUMER_NICENESS)
        if shutil.which("ionice"):  # best-effort class, lowest priority within it
            subprocess.run(["ionice", "-c", "2", "-n", "7", "-p", thread_id], check=False, capture_output=True)


@contextmanager
def heavy_job():
    """One heavy job at a time, whichever consumer thread runs it."""
    with file_lock(settings.DATA_DIR / "heavy-job.lock"):
        yield


@db_periodic_task(crontab(minute="*"))
@lock_task("scheduler-tick")
def scheduler_tick():
    worker.beat()
    if not scheduler.claim_tick():
        return  # another consumer runs this minute's tick
    check_disk_space()
    # Immediate mode (the tests) runs tasks inline and never runs one scheduled for later.
    stagger = 0 if HUEY.immediate else STAGGER_SECONDS
    for position, job in enumerate(scheduler.due_jobs(in_flight=in_flight)):
        queued = scheduled_job_task.s(job, delay=position * stagger or None)
        # Marked before it is queued: in immediate mode it has run, and unmarked itself, by then.
        JobState.objects.filter(name=job).update(task_id=queued.id)
        HUEY.enqueue(queued)


def check_disk_space() -> None:
    free = shutil.disk_usage(settings.DATA_DIR).free
    minimum = global_settings("alerts")["min_free_disk_gb"] * 1024**3
    if free < minimum:
        raise_alert(
            "disk",
            "data folder",
            f"Only {free / 1024**3:.1f} GiB free under the data folder (alert below {minimum / 1024**3:g} GiB).",
            level="CRITICAL",
        )
    else:
        resolve_alert("disk", "data folder")


def retry_wait(seconds: float) -> None:
    """The wait before a sync retries its failing plugins, cut short when the consumer is asked
    to stop: the retries then come at once and the run ends (see zepix_admin.core.queue)."""
    HUEY.consumer_stopping.wait(seconds)


@db_task()
def sync_task(trigger: str = "schedule", actor: str = "system", plugin_id: str | None = None):
    try:
        with heavy_job():
            return run_sync(
                plugin_ids=[plugin_id] if plugin_id else None, trigger=trigger, actor=actor, sleep=retry_wait
            ).pk
    except SyncAlreadyRunning:
        logger.info("A sync is already running; this one is skipped.")
        return None


@db_task()
def backup_task(aliases: list[str] | None = None, trigger: str = "schedule"):
    home.check()  # before its run is recorded (each database's backup checks too)
    with heavy_job():
        aliases = aliases or database_aliases()
        run = BackupRun.begin(trigger=trigger, databases={alias: {"state": "waiting"} for alias in aliases})
        for alias in aliases:
            run.databases[alias] = {"state": "backing up"}
            run.save(update_fields=["databases"])
            started = time.perf_counter()
            try:
                backup = backup_database(alias)
            except (BackupError, UnknownDatabase) as error:
                logger.error("Backup of %s failed: %s", alias, error)
                run.databases[alias] = {"state": "failed", "error": str(error)}
            else:
                run.databases[alias] = {"state": "done", "size_bytes": backup.size_bytes}
            run.databases[alias]["seconds"] = round(time.perf_counter() - started, 2)
            run.save(update_fields=["databases"])
        apply_retention()
        failed = sum(1 for entry in run.databases.values() if entry["state"] == "failed")
        run.status = (
            BackupRun.Status.OK
            if not failed
            else BackupRun.Status.FAILED
            if failed == len(aliases)
            else BackupRun.Status.PARTIAL
        )
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])


@db_task()
def verify_backups_task():
    with heavy_job():
        verify_backups()


@db_task()
def purge_archives_task():
    purge_expired_archives()


@db_task()
def prune_config_history_task():
    config_service.prune_history()


MANUAL_BACKUP, MANUAL_SYNC = "manual_backup", "manual_sync"  # MANUAL_SYNC: a sync of every plugin


def manual_sync_marker(plugin_id: str | None) -> str:
    """The marker of a sync asked for by hand: of every plugin, or of one."""
    return f"{MANUAL_SYNC}:{plugin_id}" if plugin_id else MANUAL_SYNC


RUNNING = "running"  # a marker's task_id once a worker has taken its task: "running <process stamp>"


def in_flight(marker: JobState, *, in_hand_seconds: float | None = None) -> bool:
    """Whether the task a job's marker names (a scheduled job's, or one asked for by hand) is
    still queued or running. It is not once its task has left the queue untaken (Redis
    restarted without persistence, a damaged queue file set aside), nor once no process holds
    the job's lock (``job_lock``): its worker was killed in the middle, or a restore of the
    central database brought back a marker of the backup's time, "running" in a consumer that
    lives on. Such markers held a job asked for by hand as "queued" for two hours while nothing
    ran, and a scheduled job until its next interval. A task in the queue is in flight however
    long the worker has been down; a marker older than JOB_MARKER_STALE is not when the queue
    does not answer.

    A task between two places is in neither for a moment: taken by a worker and not yet marked
    running, or moved by a consumer from its queue to its schedule (a task for later, dequeued
    then scheduled). A consumer started beside a queue of such tasks moves them while its first
    tick looks for them: the tick took one for lost and queued the job again, to run twice (a
    killed consumer's backups queued again by the next). A task not found is looked for again
    for up to ``in_hand_seconds`` (default TASK_IN_HAND_SECONDS; a page that only shows the
    state passes 0)."""
    if marker.task_id.startswith(RUNNING):
        return is_locked(job_lock(marker.name))
    if _in_queue(marker):
        return True

    def seen_again() -> bool:  # taken or finished meanwhile (the marker changed): the next look judges
        now_marked = JobState.objects.filter(pk=marker.pk).values_list("task_id", flat=True).first()
        return now_marked != marker.task_id or _in_queue(marker)

    wait = TASK_IN_HAND_SECONDS if in_hand_seconds is None else in_hand_seconds
    return wait > 0 and tried_until(time.monotonic() + wait, seen_again)


# How long a task may be in a worker's hands between the queue and its schedule, or its marker:
# a few milliseconds, more on a loaded machine with the consumer at CONSUMER_NICENESS. Looked for
# again every few milliseconds until then: paid in full only for a task that is lost, never on
# a tick that finds every task.
TASK_IN_HAND_SECONDS = 0.5


def _in_queue(marker: JobState) -> bool:
    try:
        return any(task.id == marker.task_id for task in (*HUEY.pending(), *HUEY.scheduled()))
    except Exception:  # noqa: BLE001 - a queue that does not answer tells nothing of the task
        return marker.last_started_at > timezone.now() - JOB_MARKER_STALE


def manual_pending(name: str, *, in_hand_seconds: float | None = None) -> bool:
    marker = JobState.objects.filter(name=name).first()
    return marker is not None and in_flight(marker, in_hand_seconds=in_hand_seconds)


def job_lock(name: str) -> Path:
    """Held by the process running the job while its marker says "running"."""
    return settings.DATA_DIR / f"job-{name}.lock"


@contextmanager
def _running(name: str):
    """Runs a job under its lock, its marker saying which process runs it; gives the mark."""
    with file_lock(job_lock(name)):
        running = f"{RUNNING} {worker.process_stamp()}"
        JobState.objects.filter(name=name).update(task_id=running)
        yield running


def _request_manual(name: str, task, *args) -> bool:
    """Queue a job asked for by hand unless one is still queued or running (ten clicks once
    made thirty backups, three clicks three syncs). Returns whether one was queued."""
    if manual_pending(name):
        return False
    queued = task.s(*args)
    JobState.objects.update_or_create(name=name, defaults={"last_started_at": timezone.now(), "task_id": queued.id})
    try:
        HUEY.enqueue(queued)
    except Exception as error:  # the queue's server (Redis) is down, the disk full: say so, keep nothing half-done
        with suppress(DatabaseError):  # the same full disk: the marker counts for nothing once stale
            JobState.objects.filter(name=name).delete()
        away = outage(error)
        what, again = (
            (away.what, away.again)
            if away
            else (f"The task queue does not answer ({type(error).__name__})", "once it is back")
        )
        raise Unavailable(f"{what}: nothing was queued; ask again {again}.") from error
    return True


def request_manual_backup() -> bool:
    return _request_manual(MANUAL_BACKUP, manual_backup_task)


def request_manual_sync(actor: str, plugin_id: str | None) -> bool:
    """A sync of one plugin joins a queued sync of every plugin or of that one; asked for while
    another plugin's is queued, it is queued too (it joined it, and was never run)."""
    if plugin_id and manual_pending(MANUAL_SYNC):
        return False
    return _request_manual(manual_sync_marker(plugin_id), manual_sync_task, actor, plugin_id)


@db_task()
def manual_backup_task():
    with _running(MANUAL_BACKUP):
        try:
            backup_task.call_local(None, "manual")
        finally:
            JobState.objects.filter(name=MANUAL_BACKUP).delete()


@db_task()
def manual_sync_task(actor: str, plugin_id: str | None):
    marker = manual_sync_marker(plugin_id)
    with _running(marker):
        try:
            sync_task.call_local("manual", actor, plugin_id)
        finally:
            JobState.objects.filter(name=marker).delete()


@db_task()
def scheduled_job_task(job: str):
    """A job the tick found due (scheduler.JOBS), its marker running while it runs and finished
    (no task) after, whether it succeeded or failed."""
    with _running(job) as running:
        try:
            task, args = JOB_TASKS[job]()
            task.call_local(*args)
        finally:
            scheduler.finished(job, running)


JOB_TASKS = {  # job name: () -> (task, its arguments)
    "sync": lambda: (sync_task, ("schedule",)),
    "trading_backup": lambda: (backup_task, ([alias for alias in database_aliases() if alias != "default"],)),
    "central_backup": lambda: (backup_task, (["default"],)),
    "verify_backups": lambda: (verify_backups_task, ()),
    "purge_archives": lambda: (purge_archives_task, ()),
    "prune_config_history": lambda: (prune_config_history_task, ()),
}
