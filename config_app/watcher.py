"""Notices edits made to the config files outside the dashboard (inotify via watchdog),
debounces them, and hands each changed document to ``service.ingest_file``. Each file is
also looked at once as the watcher starts (edits made while no consumer ran), and a look the
central database could not answer (PostgreSQL away) is made again until it can."""

import logging
import os
import threading
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from config_app import documents, service

logger = logging.getLogger("zepix.config.watcher")
CHANGES = {"modified", "created", "deleted", "moved", "closed"}
DEBOUNCE_SECONDS = settings.CONFIG_DEBOUNCE_SECONDS
RETRY_SECONDS = 5.0  # a look the central database did not answer is made again this often


class _Debouncer(FileSystemEventHandler):
    def __init__(self, on_settled, delay: float, retry_delay: float = RETRY_SECONDS):
        self.on_settled, self.delay, self.retry_delay = on_settled, delay, retry_delay
        self.timers: dict[str, threading.Timer] = {}
        self.lock = threading.Lock()

    def on_any_event(self, event):
        if event.event_type not in CHANGES:
            return  # opening or reading a file (as ingest itself does) is not an edit
        for path in (getattr(event, "dest_path", ""), event.src_path):
            scope = documents.scope_for_path(Path(os.fsdecode(path))) if path else None
            if scope:
                self.schedule(scope)

    def schedule(self, scope: str, delay: float | None = None) -> None:
        with self.lock:
            if scope in self.timers:
                self.timers[scope].cancel()
            timer = threading.Timer(self.delay if delay is None else delay, self.fire, args=[scope])
            timer.daemon = True
            self.timers[scope] = timer
            timer.start()

    def fire(self, scope: str) -> None:
        with self.lock:
            self.timers.pop(scope, None)
        if self.on_settled(scope) is False:
            with self.lock:
                if scope in self.timers:
                    return  # edited again meanwhile: that look comes first
            self.schedule(scope, self.retry_delay)


def take_in(scope: str) -> bool:
    """False when the central database did not answer: the file is looked at again later (an
    edit made while PostgreSQL was away was dropped, its file and the active version apart)."""
    close_old_connections()
    try:
        version = service.ingest_file(scope)
        if version:
            logger.info("Took in an outside edit of %s as version %s", scope, version.version)
    except (OperationalError, InterfaceError) as error:
        logger.warning(
            "Could not look at the edit of %s, the central database did not answer (%s); again in %g s",
            scope,
            error,
            RETRY_SECONDS,
        )
        return False
    except Exception:  # the watcher must outlive any one bad edit
        logger.exception("Could not take in the edit of %s", scope)
    finally:
        close_old_connections()
    return True


def start(delay: float = DEBOUNCE_SECONDS) -> BaseObserver:
    """Start watching ZEPIX_CONFIG_DIR in a background thread; returns the observer (stop() it)."""
    (settings.CONFIG_DIR / "plugins").mkdir(parents=True, exist_ok=True)
    documents.load_validator()
    observer = Observer()
    looks = _Debouncer(take_in, delay)
    observer.schedule(looks, str(settings.CONFIG_DIR), recursive=True)
    observer.daemon = True
    observer.start()
    for scope in documents.scopes():  # edits made while nothing watched
        looks.schedule(scope)
    return observer
