"""Huey tasks: thin callers of the sync, backup and archive modules."""

import logging

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, lock_task

from sync_app import scheduler
from sync_app.archive import purge_expired_archives
from sync_app.backup import BackupError, backup_database, database_aliases, verify_backup
from sync_app.models import Backup
from sync_app.retention import apply_retention
from sync_app.sync import SyncAlreadyRunning, run_sync

logger = logging.getLogger("zepix.tasks")


@db_periodic_task(crontab(minute="*"))
@lock_task("scheduler-tick")
def scheduler_tick():
    scheduler.beat()
    for job in scheduler.due_jobs():
        JOB_TASKS[job]()


@db_task()
def sync_task(trigger: str = "schedule", actor: str = "system", plugin_id: str | None = None):
    try:
        return run_sync(plugin_ids=[plugin_id] if plugin_id else None, trigger=trigger, actor=actor).pk
    except SyncAlreadyRunning:
        logger.info("A sync is already running; this one is skipped.")
        return None


@db_task()
def backup_task(aliases: list[str] | None = None):
    for alias in aliases or database_aliases():
        try:
            backup_database(alias)
        except BackupError as error:
            logger.error("Backup of %s failed: %s", alias, error)
    apply_retention()


@db_task()
def verify_backups_task():
    for backup in Backup.objects.all():
        verify_backup(backup)


@db_task()
def purge_archives_task():
    purge_expired_archives()


JOB_TASKS = {
    "sync": lambda: sync_task("schedule"),
    "trading_backup": lambda: backup_task([alias for alias in database_aliases() if alias != "default"]),
    "central_backup": lambda: backup_task(["default"]),
    "verify_backups": verify_backups_task,
    "purge_archives": purge_archives_task,
}
