"""Which background jobs are due, by the schedules in the global configuration.

Huey runs ``tasks.scheduler_tick`` every minute; the tick asks ``due_jobs`` what to start,
so an operator changes a schedule in the config and the next tick follows it, no restart.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config_app.service import global_settings
from sync_app.models import JobState
from zepix_admin.core.alerts import raise_alert, resolve_alert
from zepix_admin.core.models import Alert

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


TICK = "scheduler-tick"
# The clock set back (an NTP step, a host's clock corrected) leaves the last starts ahead of
# now: the tick's minute was not claimed again, nor any job due, until the clock had caught up
# with them (an hour set back, an hour without a sync). A start further ahead than this counts
# as long past. (Several consumers' machines keep their clocks closer than this: NTP.)
CLOCK_SLACK = timedelta(minutes=1)


def claim_tick(now: datetime | None = None) -> bool:
    """Whether this consumer runs this minute's tick: every consumer's scheduler starts one each
    minute (several consumers share a Redis queue), the first to claim the minute runs it."""
    minute = (now or timezone.now()).replace(second=0, microsecond=0)
    unclaimed = Q(last_started_at__lt=minute) | Q(last_started_at__gt=minute + CLOCK_SLACK)
    if JobState.objects.filter(unclaimed, name=TICK).update(last_started_at=minute):
        return True
    try:
        with transaction.atomic():
            JobState.objects.create(name=TICK, last_started_at=minute)
    except IntegrityError:
        return False  # claimed already, by this minute's first tick
    return True


def due_jobs(now: datetime | None = None, *, in_flight: Callable[[JobState], bool]) -> list[str]:
    """The jobs whose interval has passed since they last started, and those whose task was lost
    (a consumer killed while it ran one, a queue restarted without its tasks: such a job waited
    its whole next interval, a day for the central backup); marks them started. A job whose task
    ``in_flight`` says is still queued or running is not due, even past its interval: a sync
    longer than its interval no longer piles the next ones up behind it.

    A lost job is started again once: lost again (a job that kills its worker, out of memory on a
    large file), it waits its interval and an alert says so, instead of taking the worker down
    with it every minute."""
    now = now or timezone.now()
    states = {state.name: state for state in JobState.objects.filter(name__in=JOBS)}
    due, relaunched = [], set()
    for job, every in intervals().items():
        state = states.get(job)
        if state is not None and state.task_id:  # started, not finished
            if in_flight(state):
                continue
            if state.relaunched:
                JobState.objects.filter(pk=state.pk).update(task_id="", relaunched=False)
                raise_alert(
                    "job",
                    job,
                    f"The {job} job was lost twice in a row with its worker (its process ended while it ran, "
                    f"or the queue lost it), last started at {state.last_started_at:%Y-%m-%d %H:%M} UTC: "
                    "it waits its next interval. The consumer's log says why its process ended.",
                    level=Alert.Level.CRITICAL,
                )
                continue
            logger.warning(
                "The %s job started at %s was lost before it finished: started again.", job, state.last_started_at
            )
            due.append(job)
            relaunched.add(job)
        elif state is None or not -CLOCK_SLACK <= now - state.last_started_at < every:  # or the clock set back
            due.append(job)
    for job in due:
        JobState.objects.update_or_create(
            name=job, defaults={"last_started_at": now, "task_id": "", "relaunched": job in relaunched}
        )
    return due


def finished(job: str, running: str) -> None:
    """A scheduled job's task has ended (whatever its outcome), ``running`` its marker while it ran."""
    if JobState.objects.filter(name=job, task_id=running).update(task_id="", relaunched=False):
        resolve_alert("job", job)


# A tick runs every minute and staggers a tick's jobs 20 s apart: a job is late once it has
# been due this long without starting (as healthchecks.io marks a check late after its grace).
LATE_AFTER = timedelta(minutes=3)


def schedule_status(now: datetime | None = None) -> list[dict]:
    """Each scheduled job: its interval, when it last started, when it is next due, and whether
    it is late (the worker down, or a job that keeps failing to start)."""
    now = now or timezone.now()
    last = dict(JobState.objects.filter(name__in=JOBS).values_list("name", "last_started_at"))
    status = []
    for job, every in intervals().items():
        started = last.get(job)
        due = started + every if started else None
        status.append(
            {
                "job": job,
                "every_minutes": int(every.total_seconds() // 60),
                "last_started_at": started,
                "next_due_at": due,
                "late": due is not None and now - due > LATE_AFTER,
            }
        )
    return status
