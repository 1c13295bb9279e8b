"""Is the task worker (the Huey consumer) alive? Its heartbeat, and the state shown to operators.

The consumer beats every HEARTBEAT_SECONDS from a thread of its own, so a long job never
makes it look dead; a heartbeat older than STALE_AFTER means the worker is down.
"""

import logging
import os
import socket
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
    queue_problem: str = ""  # the task queue (Redis, or its SQLite file) does not answer

    @property
    def down_for(self) -> str:
        if self.last_beat is None:
            return "it has never run"
        return f"since {self.last_beat:%H:%M} UTC, {timesince(self.last_beat)}"

    @property
    def text(self) -> str:
        if self.queue_problem:
            return f"the task queue does not answer ({self.queue_problem})"
        return "worker up" if self.up else f"worker down ({self.down_for})"


def beat(now: datetime | None = None) -> None:
    Heartbeat.objects.update_or_create(name=CONSUMER, defaults={"beat_at": now or timezone.now(), "pid": os.getpid()})


def queue_problem() -> str:
    """'' when the task queue answers; what is wrong otherwise (Redis stopped, unreachable)."""
    from huey.contrib.djhuey import HUEY

    try:
        HUEY.storage.queue_size()
    except Exception as error:  # noqa: BLE001 - any failure of the queue's server is reported, not raised
        return f"{type(error).__name__}: {error}"[:200]
    return ""


def state(now: datetime | None = None) -> WorkerState:
    last = _last_beat()
    problem = queue_problem()
    return WorkerState(up=_fresh(last, now) and not problem, last_beat=last, queue_problem=problem)


def process_stamp() -> str:
    """This process, as ``still_running`` asks after it later: its host and pid."""
    return f"{socket.gethostname()} {os.getpid()}"


def still_running(stamp: str) -> bool:
    """Whether the process a ``process_stamp`` names is alive: asked of the system on its machine
    (where the console's web nodes and consumers run); elsewhere (another process namespace),
    whether a consumer beats. A job recorded before stamps ('') is taken to be running."""
    if not stamp:
        return True
    host, pid = stamp.rsplit(" ", 1)
    if host != socket.gethostname():
        return _fresh(_last_beat(), None)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _last_beat() -> datetime | None:
    return Heartbeat.objects.filter(name=CONSUMER).values_list("beat_at", flat=True).first()


def _fresh(last: datetime | None, now: datetime | None) -> bool:
    return bool(last and (now or timezone.now()) - last < STALE_AFTER)


def queued_message(what: str) -> str:
    """What an operator is told after asking the worker for something."""
    current = state()
    if current.queue_problem:
        return f"{what} could not be queued: {current.text}. Ask again once it is back."
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
