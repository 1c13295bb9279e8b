"""Is the task worker (the Huey consumer) alive? Its heartbeat, and the state shown to operators.

The consumer beats every HEARTBEAT_SECONDS from a thread of its own, so a long job never
makes it look dead; a heartbeat older than STALE_AFTER means the worker is down.
"""

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections
from django.utils import timezone
from django.utils.timesince import timesince

from zepix_admin.core.models import Heartbeat

logger = logging.getLogger("zepix.worker")

CONSUMER = "huey"
HEARTBEAT_SECONDS = 10
STALE_AFTER = timedelta(seconds=45)


@dataclass(frozen=True)
class WorkerState:
    up: bool
    last_beat: datetime | None

    @property
    def down_for(self) -> str:
        if self.last_beat is None:
            return "it has never run"
        return f"since {self.last_beat:%H:%M} UTC, {timesince(self.last_beat)}"

    @property
    def text(self) -> str:
        return "worker up" if self.up else f"worker down ({self.down_for})"


def beat(now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=CONSUMER, defaults={"beat_at": now or timezone.now(), "pid": os.getpid()})


def state(now: datetime | None = None) -> WorkerState:
    last = Heartbeat.objects.filter(name=CONSUMER).values_list("beat_at", flat=True).first()
    return WorkerState(up=bool(last and (now or timezone.now()) - last < STALE_AFTER), last_beat=last)


def queued_message(what: str) -> str:
    """What an operator is told after asking the worker for something."""
    current = state()
    if current.up:
        return f"{what} queued; the worker starts it within seconds."
    return (
        f"{what} queued, but the worker is down ({current.down_for}): "
        "it runs when the worker is back (`make run` restarts it)."
    )


def start_heartbeat(stop: threading.Event) -> threading.Thread:
    def run():
        while not stop.is_set():
            try:
                close_old_connections()
                beat()
            except Exception:  # a missed beat is logged; the next one tries again
                logger.exception("Could not record the worker's heartbeat")
            finally:
                close_old_connections()
            stop.wait(HEARTBEAT_SECONDS)

    thread = threading.Thread(target=run, name="zepix-heartbeat", daemon=True)
    thread.start()
    return thread
