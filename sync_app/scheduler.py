"""Which background jobs are due, by the schedules in the global configuration.

Huey runs ``tasks.scheduler_tick`` every minute; the tick asks ``due_jobs`` what to start,
so an operator changes a schedule in the config and the next tick follows it, no restart.
"""

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from config_app.service import global_settings
from sync_app.models import JobState

logger = logging.getLogger("zepix.scheduler")

# job name: the schedules key giving its interval in minutes
JOBS = {
    "sync": "sync_minutes",
    "trading_backup": "trading_backup_minutes",
    "central_backup": "central_backup_minutes",
    "verify_backups": "verify_backups_minutes",
    "purge_archives": "central_backup_minutes",
    "prune_config_history": "central_backup_minutes",
}


def intervals() -> dict[str, timedelta]:
    schedules = global_settings("schedules")
    return {job: timedelta(minutes=schedules[key]) for job, key in JOBS.items()}


def due_jobs(now: datetime | None = None) -> list[str]:
    """The jobs whose interval has passed since they last started; marks them started."""
    now = now or timezone.now()
    last = dict(JobState.objects.values_list("name", "last_started_at"))
    due = [job for job, every in intervals().items() if job not in last or now - last[job] >= every]
    for job in due:
        JobState.objects.update_or_create(name=job, defaults={"last_started_at": now})
    return due
