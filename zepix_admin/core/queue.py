"""Huey's queue classes (settings.HUEY's ``huey_class``), knowing when their consumer stops,
and the queue's SQLite file opened when first used and made again when damaged.

A consumer asked to stop gracefully (Ctrl-C on ``serve``, SIGINT) waits for its running tasks.
A task that waits, a sync waiting to retry a failing plugin, waits on ``consumer_stopping``
instead of sleeping, and ends at once: it held ``serve`` up until it killed the consumer,
10 s later, its run left running. Imported while the apps load: no models here.
"""

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from django.db import DatabaseError
from huey import RedisHuey, SqliteHuey
from huey.storage import SqliteStorage

from zepix_admin.core.databases import damaged
from zepix_admin.core.files import file_lock, fsync_folder
from zepix_admin.core.sqlite_backend.base import file_identity

logger = logging.getLogger("zepix.queue")


class _KnowsWhenItsConsumerStops:
    consumer_stopping = threading.Event()  # set by nothing outside a consumer's process

    def create_consumer(self, **options):
        from zepix_admin.core.home import refusal

        refused = refusal()
        if refused:
            raise SystemExit(f"The Huey consumer does not start. {refused}")
        consumer = super().create_consumer(**options)  # type: ignore[misc]
        self.consumer_stopping = consumer.stop_flag
        repeats = QuietRepeats()
        for process in ("Scheduler", "Worker"):
            logging.getLogger(f"huey.consumer.{process}").addFilter(repeats)
        return consumer


class QuietRepeats(logging.Filter):
    """The consumer's scheduler looks at the queue every second and each worker after each pause:
    with the queue unreadable (a full disk, Redis away) each look logged a whole traceback, 35 in
    8 s. The first of a failure is logged whole; the same failure again at most once a minute,
    saying how many were left out."""

    EVERY_SECONDS = 60.0

    def __init__(self):
        super().__init__()
        self.seen: dict[tuple, tuple[float, int]] = {}  # failure -> (last logged, left out since)
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        error = record.exc_info[1]
        failure = (record.name, record.getMessage(), type(error).__name__, str(error))  # a task's id included
        now = time.monotonic()
        with self.lock:
            logged_at, left_out = self.seen.get(failure, (None, 0))
            if logged_at is not None and now - logged_at < self.EVERY_SECONDS:
                self.seen[failure] = (logged_at, left_out + 1)
                return False
            self.seen[failure] = (now, 0)
        if left_out:
            record.msg = f"{record.msg} (again; {left_out} more like it in the last minute were not logged)"
        return True


class QueueFile(SqliteStorage):
    """Huey opens its file, and makes its tables, as the queue is made while the apps load: a
    damaged queue file stopped every command and the server at start-up with a traceback. Now
    the file is opened when the queue is first used, and one that is not a database (or a
    damaged one) is set aside and a new one made. What it held is tasks waiting to run (the
    periodic ones come again within a minute; a sync or a backup asked for by hand is asked
    again) and huey's locks: nothing an operator saved.

    A process keeps its connection while the file it opened is the one at the queue's path: a
    consumer kept reading a file another process had set aside (or an operator had removed),
    and the tasks queued in the new one never ran."""

    _conn: sqlite3.Connection | None  # huey's own, typed

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "create_tables": False})
        self._opened_file: tuple[int, int] | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        # Every use of the queue comes here under the storage's lock (huey's db()): a stat, 2 us.
        if self._conn is not None and file_identity(self.filename) != self._opened_file:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = self._create_connection()
            self._opened_file = file_identity(self.filename)
        return self._conn

    def _create_connection(self) -> sqlite3.Connection:
        try:
            return self._opened()
        except sqlite3.DatabaseError as error:
            if not damaged(error):
                raise
        path = Path(self.filename)
        with file_lock(path.with_name(f"{path.name}.lock")):
            try:
                return self._opened()  # another process made it again meanwhile
            except sqlite3.DatabaseError as error:
                if not damaged(error):
                    raise
                problem = str(error)
            aside = _set_aside(path)
            connection = self._opened()
        _report(path, aside, problem)
        return connection

    def _opened(self) -> sqlite3.Connection:
        connection = super()._create_connection()
        try:
            if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'task'").fetchone():
                for statement in self.ddl:
                    connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        return connection


def _set_aside(path: Path) -> Path:
    """The damaged file renamed beside it (kept for a look), its log and index gone with it: a
    new file must not be read through the old one's write-ahead log."""
    aside = path.with_name(f"{path.name}.damaged-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        leftover = path.with_name(path.name + suffix)
        if leftover.exists():
            leftover.rename(aside.with_name(aside.name + suffix))
    fsync_folder(path.parent)
    return aside


def _report(path: Path, aside: Path, problem: str) -> None:
    message = (
        f"The task queue's file {path.name} could not be read ({problem}): it was set aside as {aside.name} "
        "and a new one made. Tasks waiting in it were lost: the periodic ones run again within a minute; "
        "ask again for a sync or a backup asked for just before."
    )
    logger.error(message)
    try:
        from zepix_admin.core.alerts import raise_alert

        raise_alert("queue", path.name, message)
    except DatabaseError as refused:  # the same full disk: the log has it; the queue works either way
        logger.error("The alert about the task queue could not be raised: %s", refused)


class SqliteQueue(_KnowsWhenItsConsumerStops, SqliteHuey):
    storage_class = QueueFile


class QuietAfterFailure:
    """A server that did not answer is not asked again for ``seconds``: what would ask meanwhile
    is told at once (``quiet()``), and the first to ask after them tries it again."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.until = 0.0
        self.problem = ""

    def quiet(self) -> bool:
        return time.monotonic() < self.until

    def failed(self, problem: object = "") -> None:
        self.until, self.problem = time.monotonic() + self.seconds, str(problem)


# A queue on a Redis that does not answer (its host gone from the network, the server stopped
# without closing its connections) held every page for redis-py's default 5 s a command: the
# navigation reads the queue's size on each page, /healthz too, and "Run sync now" asked three
# times (15 s, past a proxy's patience). A command now fails after the worker's own wait for
# a task (huey's read_timeout, 1 s) plus QUEUE_TIMEOUT_SECONDS, and for QUEUE_QUIET_SECONDS after
# a failure the queue is not asked at all: the pages say at once that it does not answer.
QUEUE_TIMEOUT_SECONDS = 1.0
QUEUE_QUIET_SECONDS = 5.0


class RedisQueue(_KnowsWhenItsConsumerStops, RedisHuey):
    def get_storage(self, url=None, read_timeout=1, **kwargs):
        import redis
        from huey.storage import RedisStorage

        quiet = QuietAfterFailure(QUEUE_QUIET_SECONDS)

        class QueueServer(redis.Redis):
            def execute_command(self, *args, **options):
                if quiet.quiet():
                    again = f"a moment ago: asked again within {quiet.seconds:g} s"
                    raise redis.ConnectionError(f"{quiet.problem} ({again})")
                try:
                    return super().execute_command(*args, **options)
                except (redis.ConnectionError, redis.TimeoutError) as error:
                    quiet.failed(error)
                    raise

        class QueueStorage(RedisStorage):
            redis_client = QueueServer

        # The socket's limit must outlast the worker's blocking wait for a task (BRPOP): cut
        # short, the server could hand the task to a connection already given up, and lose it.
        pool = redis.ConnectionPool.from_url(
            url,
            socket_connect_timeout=QUEUE_TIMEOUT_SECONDS,
            socket_timeout=read_timeout + QUEUE_TIMEOUT_SECONDS,
        )
        return QueueStorage(self.name, connection_pool=pool, read_timeout=read_timeout, **kwargs)
