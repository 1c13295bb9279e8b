"""Server-Sent Events for configuration versions, across every worker process.

Each process runs one ``Hub`` per event loop. A save, in whichever process it is made (a web
worker, ``config set``, the file watcher), wakes the hubs once it is committed: its own
process's at once, the others' through a datagram to each hub's socket, and the hubs of
other machines through the engine they share: PostgreSQL's NOTIFY (sent in the save's own
transaction, so it arrives exactly when the version is committed) or Redis pub/sub. A woken
hub reads the new ``ConfigVersion`` rows once (or takes the one its own process just committed,
when it is the next) and wakes every stream of its process. No poll
loop: a hub looks by itself only once a second, in case a wake-up was lost (a process killed
between its commit and its datagram). Under ASGI a stream is an async generator (no thread per
subscriber); under WSGI (runserver, the browser tests' live server) a sync one that polls.
"""

import asyncio
import collections
import contextlib
import contextvars
import functools
import hashlib
import itertools
import json
import logging
import operator
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q
from django.utils import timezone

from config_app.models import ConfigVersion, Subscriber
from plugins_app.sqlite import read_only_uri
from plugins_app.store import parse_db_datetime
from zepix_admin.core.cutoff import cut_off_after
from zepix_admin.core.databases import database_file, on_postgresql, own_connection_params
from zepix_admin.core.limits import statement_time_limit
from zepix_admin.core.queue import QuietAfterFailure
from zepix_admin.core.sqlite_backend.base import file_identity

logger = logging.getLogger("zepix.config.stream")

SAFETY_LOOK_SECONDS = 1.0  # a hub looks by itself this often, in case a wake-up was lost
HUB_READ_SECONDS = 5.0  # a hub's read of PostgreSQL (well under a millisecond) still waiting is cut
KEEPALIVE_SECONDS = 15
WSGI_POLL_SECONDS = 0.25
CACHE_SIZE = 500
CACHE_BYTES = 8 * 1024 * 1024  # 20 saves of 1 MB documents once kept 700 MB in each web process
VERSION_COLUMNS = "id, scope, version, author, via, created_at, comment, diff, document, retired"


def format_event(event: dict, scope: str | None) -> str:
    """One SSE message; the id is the version number on a scoped stream, the change id otherwise."""
    return _message(event, scope is not None, json.dumps(event))


def _message(event: dict, scoped: bool, data: str) -> str:
    return f"id: {event['version'] if scoped else event['id']}\nevent: version\ndata: {data}\n\n"


def event_from_row(row) -> dict:
    pk, scope, version, author, via, created_at, comment, diff, document, retired = row
    return {
        "id": pk,
        "scope": scope,
        "version": version,
        "author": author,
        "via": via,
        "created_at": (created_at if isinstance(created_at, datetime) else parse_db_datetime(created_at)).isoformat(),
        "comment": comment,
        "diff": json.loads(diff),
        "data": json.loads(document) if document is not None else None,
        "retired": bool(retired),
    }


def row_bytes(row) -> int:
    return len(row[7] or "") + len(row[8] or "")


def gives_the_connection_back(query):
    """A stream lives for hours: each of its queries gives a pooled PostgreSQL connection back
    when it is done. Held for the stream's life (Django returns it when the response ends), a
    connection per stream let ten subscribers take a node's whole pool: the eleventh waited 3 s
    for one and failed, and so did every page of that node. (A SQLite connection is the
    thread's own file handle, shared with no one: kept.) And each has a request's time limit,
    which a stream's queries, made after its response began, were outside of: on a connection
    gone silent the hub's keepalive, awaited in its loop, would have held every stream."""

    @functools.wraps(query)
    def run(*args):
        try:
            with statement_time_limit(settings.STATEMENT_TIME_LIMIT_SECONDS):
                return query(*args)
        finally:
            connection = connections["default"]
            if on_postgresql() and not connection.in_atomic_block:
                connection.close()

    return run


@gives_the_connection_back
def missed_events(scope: str | None, last_event_id: int | None) -> list[dict]:
    """What a subscriber reconnecting with Last-Event-ID has not seen, oldest first."""
    if last_event_id is None:
        return []
    versions = ConfigVersion.objects.order_by("pk")
    if scope:
        versions = versions.filter(scope=scope, version__gt=last_event_id)
    else:
        versions = versions.filter(pk__gt=last_event_id)
    return [version.as_event() for version in versions]


@gives_the_connection_back
def events_after(pk: int, scope: str | None) -> list[dict]:
    versions = ConfigVersion.objects.filter(pk__gt=pk).order_by("pk")
    return [version.as_event() for version in (versions.filter(scope=scope) if scope else versions)]


@gives_the_connection_back
def newest_pk() -> int:
    return ConfigVersion.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@gives_the_connection_back
def mark_subscriber(name: str, scope: str | None, connected: bool) -> None:
    if name:
        Subscriber.objects.update_or_create(
            name=name[:100], scope=scope or "*", defaults={"connected": connected, "last_seen_at": timezone.now()}
        )


@gives_the_connection_back
def mark_still_connected(subscribers: list[tuple[str, str | None]]) -> None:
    """A keepalive: the named subscribers of a process's streams are still there, in one
    statement (a write each was 100 transactions on the central database every 15 s at 100
    bots, each lock-step with the saves' writes on SQLite)."""
    named = {(name[:100], scope or "*") for name, scope in subscribers if name}
    if not named:
        return
    which = functools.reduce(operator.or_, (Q(name=name, scope=scope) for name, scope in named))
    if Subscriber.objects.filter(which).update(connected=True, last_seen_at=timezone.now()) < len(named):
        for name, scope in named:  # a row gone meanwhile (the central database restored): made again
            mark_subscriber(name, scope, True)


def wake_folder(data_dir: Path | None = None) -> Path:
    """Where every hub of this install has its socket (made if missing). Short, under the
    system's temporary folder (a socket's path is limited to 108 bytes), named after the data
    folder."""
    folder = _wake_folder_path(str(data_dir or settings.DATA_DIR))
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@functools.lru_cache(maxsize=16)
def _wake_folder_path(data_dir: str) -> Path:
    install = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"zepix-wake-{install}"


_local_hubs: set["Hub"] = set()
_hub_numbers = itertools.count()


REDIS_CHANNEL = "zepix:config-versions"
REDIS_TIMEOUT_SECONDS = 0.25
REDIS_QUIET_SECONDS = 5.0  # after a failed announcement, saves announce nothing through Redis this long
_publisher: list = []  # the Redis client a process publishes with, made on first use
_redis_quiet = QuietAfterFailure(REDIS_QUIET_SECONDS)


def _publish_to_redis() -> None:
    """Other machines' web nodes hear of the save through Redis (REDIS_URL). A save never fails
    for it: a node that misses the message looks by itself within SAFETY_LOOK_SECONDS. Nor does
    a Redis that does not answer hold up every save (and this process's own streams, woken
    after it): one save waits for it at most REDIS_TIMEOUT_SECONDS, then the saves of the next
    REDIS_QUIET_SECONDS leave the other nodes to their own look."""
    import redis

    if _redis_quiet.quiet():
        return
    try:
        if not _publisher:
            _publisher.append(
                redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                )
            )
        _publisher[0].publish(REDIS_CHANNEL, b"v")
    except redis.RedisError as error:
        _redis_quiet.failed(error)
        logger.warning(
            "Could not announce a config version through Redis (%s); the other web nodes find the "
            "versions saved in the next %.0f s by themselves",
            error,
            REDIS_QUIET_SECONDS,
        )


POSTGRES_CHANNEL = "zepix_config_versions"


def notify_in_transaction() -> None:
    """With the central database on PostgreSQL: a NOTIFY in the saving transaction, delivered to
    every hub's LISTEN connection when (and only if) it commits."""
    if on_postgresql():
        with connections["default"].cursor() as cursor:
            cursor.execute(f"NOTIFY {POSTGRES_CHANNEL}")


def announce(version: ConfigVersion | None = None) -> None:
    """A version was committed: wake the web nodes of other machines through Redis (with
    REDIS_URL), every other process's hubs on this machine with a datagram to its socket (a
    socket whose process is gone is removed), then this process's hubs, handing them the
    version (see ``Hub.wake_soon``).

    Others first: once woken, this process's hub holds the interpreter while it writes to its
    streams (uvloop writes without letting it go), and the saving thread waited for it to send
    the rest. With two nodes through Redis, the other node's hub woke 5.2 ms after the commit
    (median), once this one's had written to its 50 streams; now 1.1 ms after it. The folder
    is listed, not globbed, and its path kept: this was 0.33 ms of every save before its own
    streams were woken (a hash of the resolved data folder, a mkdir, pathlib's glob)."""
    if settings.REDIS_URL:
        _publish_to_redis()
    folder = _wake_folder_path(str(settings.DATA_DIR))
    mine = f"{os.getpid():x}-"
    try:
        others = [name for name in os.listdir(folder) if name.endswith(".sock") and not name.startswith(mine)]
    except FileNotFoundError:  # no hub on this machine
        others = []
    if others:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for name in others:
                path = folder / name
                try:
                    sender.sendto(b"v", str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except (BlockingIOError, FileNotFoundError):
                    pass  # a full queue: that hub is being woken already; a gone file: nothing to wake
    if _local_hubs:
        handed = _handed(version) if version is not None else None
        for local in list(_local_hubs):
            local.wake_soon(handed)


def _handed(version: ConfigVersion) -> tuple[dict, int, dict[tuple[int, bool], bytes]]:
    """A version this process committed, as a hub keeps it: its event, its size, and its messages
    made now (the document is the caller's object: the messages hold it as it was committed)."""
    event = version.as_event()
    data = json.dumps(event)
    messages = {(version.pk, scoped): _message(event, scoped, data).encode() for scoped in (True, False)}
    return event, len(data), messages


class Hub:
    def __init__(self):
        self.streams: dict[object, tuple[str, str | None]] = {}  # each stream's (subscriber, scope)
        # What every stream waits on, set (and cleared) when the hub has read new versions, or
        # after KEEPALIVE_SECONDS without any: one clock for all its streams (a timeout on each
        # stream's wait cost each delivery a timer). One event for all: a queue each cost every
        # delivery a put and a get in Python.
        self.streams_woken = asyncio.Event()
        self.recent: collections.deque[tuple[dict, int]] = collections.deque()  # (event, its size in bytes)
        self.recent_bytes = 0
        # Each cached event's message, made once for all the streams it goes to: {(id, scoped): bytes}
        self.messages: dict[tuple[int, bool], bytes] = {}
        self.task: asyncio.Task | None = None
        self.seen_pk = 0
        self.started = asyncio.Event()
        self.woken = asyncio.Event()
        # Versions this process committed since the hub last looked, handed over by the saving
        # thread; and whether anything else woke the hub meanwhile (another process's save).
        self.handed: list[tuple[dict, int, dict]] = []
        self.woken_from_elsewhere = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, subscriber: str = "", scope: str | None = None) -> object:
        stream = object()
        self.streams[stream] = (subscriber, scope)
        if self.task is None or self.task.done():
            self.started.clear()
            # In a context of its own: the hub outlives the request that started it (whose context
            # would have its database work done on that request's thread, gone with it).
            self.task = asyncio.get_running_loop().create_task(self.follow(), context=contextvars.Context())
        return stream

    def _wake_streams(self) -> None:
        self.streams_woken.set()  # every stream waiting now is woken
        self.streams_woken.clear()

    def wake_soon(self, handed: tuple[dict, int, dict] | None = None) -> None:
        """From any thread of the process. With the version its thread just committed (``handed``),
        the hub need not read it back from the database when it is the next one: that read let
        go of the interpreter on the event loop (SQLite's step, PostgreSQL's round trip), and the
        saving thread, busy with its file and its answer, held it again for a while."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._woken_by_this_process, handed)

    def _woken_by_this_process(self, handed) -> None:
        if handed is None:
            self.woken_from_elsewhere = True
        else:
            self.handed.append(handed)
        self.woken.set()

    def wake_from_elsewhere(self) -> None:
        """On the event loop: another process, or another machine, committed a version."""
        self.woken_from_elsewhere = True
        self.woken.set()

    def _next_versions(self) -> list[tuple[dict, int, dict]] | None:
        """The versions handed over since the last look, when they are all that is new: each the
        next one after what the hub has (saves take turns, so they commit in id order), and
        nothing else woke the hub. None: the database is read."""
        handed, self.handed = self.handed, []
        elsewhere, self.woken_from_elsewhere = self.woken_from_elsewhere, False
        if elsewhere or not handed:
            return None
        for expected, (event, _, _) in enumerate(handed, start=self.seen_pk + 1):
            if event["id"] != expected:
                return None
        return handed

    def unsubscribe(self, stream: object) -> None:
        self.streams.pop(stream, None)

    def events_after(self, pk: int, scope: str | None) -> list[dict] | None:
        """From the cache, or None when the cache no longer reaches back that far."""
        if not self.recent or pk < self.recent[0][0]["id"] - 1:
            return None
        # From the newest back to what the stream has: each of 100 streams scanning the whole
        # cache (500 events) cost 28 us, about 3 ms of every save's fan-out; now 0.9 us.
        newer = []
        for event, _ in reversed(self.recent):
            if event["id"] <= pk:
                break
            if scope is None or event["scope"] == scope:
                newer.append(event)
        newer.reverse()
        return newer

    def message(self, event: dict, scope: str | None) -> bytes:
        key = (event["id"], scope is not None)
        text = self.messages.get(key)
        if text is None:
            text = format_event(event, scope).encode()
            if self.recent and event["id"] >= self.recent[0][0]["id"]:  # a cached event's: kept with it
                self.messages[key] = text
        return text

    def remember(self, versions: list[tuple[dict, int, dict]]) -> None:
        """Keep the newest events (each with its size, and its messages when they were made
        already), at most CACHE_SIZE of them and CACHE_BYTES of their text."""
        for event, size, messages in versions:
            self.recent.append((event, size))
            self.recent_bytes += size
            self.messages.update(messages)
        while self.recent and (len(self.recent) > CACHE_SIZE or self.recent_bytes > CACHE_BYTES):
            event, size = self.recent.popleft()
            self.recent_bytes -= size
            self.messages.pop((event["id"], True), None)
            self.messages.pop((event["id"], False), None)

    async def follow(self) -> None:
        self.loop = asyncio.get_running_loop()
        _local_hubs.add(self)
        listener, address = self._datagram_socket()
        remote = self.loop.create_task(self._redis_wakeups()) if settings.REDIS_URL else None
        try:
            await self._read_new_versions()
        finally:
            self.started.set()  # never leave a stream waiting for a hub that could not start
            if remote is not None:
                remote.cancel()
            _local_hubs.discard(self)
            if listener is not None and address is not None:
                self.loop.remove_reader(listener.fileno())
                listener.close()
                address.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the last hub of the install: no folder left behind
                    address.parent.rmdir()

    def _datagram_socket(self) -> tuple[socket.socket | None, Path | None]:
        """The socket other processes wake this hub through; none when it cannot be made (a
        temporary folder whose path is too long for a socket, 108 bytes): the hub then hears of
        other processes' saves through Redis, or looks by itself every SAFETY_LOOK_SECONDS."""
        assert self.loop is not None
        address = wake_folder() / f"{os.getpid():x}-{next(_hub_numbers)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            address.unlink(missing_ok=True)
            listener.bind(str(address))
        except OSError as error:
            listener.close()
            logger.warning("No wake-up socket for config streams (%s): %s", address, error)
            return None, None
        listener.setblocking(False)
        self.loop.add_reader(listener.fileno(), self._datagrams, listener)
        return listener, address

    async def _redis_wakeups(self) -> None:
        """Woken by saves made on other machines (REDIS_URL); back by itself after Redis was away."""
        import redis.asyncio

        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(REDIS_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.wake_from_elsewhere()
            except redis.RedisError as error:
                logger.warning("Config wake-ups through Redis interrupted (%s); trying again", error)
                await asyncio.sleep(SAFETY_LOOK_SECONDS)
            finally:
                await client.aclose()

    def _datagrams(self, listener: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            while listener.recv(64):
                pass
        self.wake_from_elsewhere()

    async def _read_new_versions(self) -> None:
        versions = PostgresVersions(self.wake_from_elsewhere) if on_postgresql() else SqliteVersions()
        try:
            while True:
                try:
                    self.seen_pk = await versions.newest()
                    break
                except versions.errors as error:  # the database is away: its streams are waiting
                    logger.warning("Config versions could not be read (%s); trying again", error)
                    await asyncio.sleep(SAFETY_LOOK_SECONDS)
            self.started.set()
            clock = asyncio.get_running_loop().time
            # A keepalive (the streams' subscribers marked as still there, then a comment on each
            # stream) only after KEEPALIVE_SECONDS without a version, as a timer on each stream's
            # wait did: streams busy with saves never stop for it.
            keepalive_due = clock() + KEEPALIVE_SECONDS
            while self.streams:
                try:
                    await asyncio.wait_for(self.woken.wait(), timeout=SAFETY_LOOK_SECONDS)
                except TimeoutError:
                    self.woken_from_elsewhere = True  # its own look, in case a wake-up was lost
                self.woken.clear()
                new = self._next_versions()
                if new is None:
                    try:
                        new = [(event_from_row(row), row_bytes(row), {}) for row in await versions.after(self.seen_pk)]
                    except versions.errors as error:
                        logger.warning("Config versions could not be read (%s); looking again", error)
                        new = []
                if new:
                    self.remember(new)
                    self.seen_pk = new[-1][0]["id"]
                    keepalive_due = clock() + KEEPALIVE_SECONDS
                    self._wake_streams()
                elif clock() >= keepalive_due:
                    keepalive_due = clock() + KEEPALIVE_SECONDS
                    try:
                        await sync_to_async(mark_still_connected)(list(self.streams.values()))
                    except DatabaseError as error:  # the streams go on; their rows are written next time
                        logger.warning("Config subscribers could not be marked as connected: %s", error)
                    self._wake_streams()  # with nothing new: a keepalive
        finally:
            await versions.close()


NEWEST_SQL = "SELECT COALESCE(MAX(id), 0) FROM config_app_configversion"


class SqliteVersions:
    """The central SQLite file, read on the event loop: microseconds on a WAL database, cheaper
    than a hop to a thread."""

    errors = (sqlite3.OperationalError, OSError)

    def __init__(self):
        self.path = database_file("default")
        self.connection = self._open()

    def _open(self) -> sqlite3.Connection:
        self.opened = file_identity(str(self.path))
        return sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False)

    def _current(self) -> sqlite3.Connection:
        """A restore swaps a new file in: an open connection would go on reading the old one."""
        if file_identity(str(self.path)) != self.opened:
            self.connection.close()
            self.connection = self._open()
        return self.connection

    async def newest(self) -> int:
        return self._current().execute(NEWEST_SQL).fetchone()[0]

    async def after(self, pk: int) -> list:
        return (
            self._current()
            .execute(f"SELECT {VERSION_COLUMNS} FROM config_app_configversion WHERE id > ? ORDER BY id", (pk,))
            .fetchall()
        )

    async def close(self) -> None:
        self.connection.close()


class PostgresVersions:
    """The central PostgreSQL database through two async connections of the hub's own: one
    LISTENs for the saves' NOTIFY, one reads the versions (a connection waiting for
    notifications runs no query). A lost connection (PostgreSQL restarted) is made again at the
    next look; what was saved meanwhile is read then. Rows are read after the newest id seen:
    saves take turns on every machine (``service.config_lock``), so they commit in id order."""

    def __init__(self, wake: Callable[[], None]):
        import psycopg

        self.errors = (psycopg.Error, OSError)
        self.wake = wake
        self.connection = None
        self.listening: asyncio.Task | None = None

    async def _connect(self):
        import psycopg

        return await psycopg.AsyncConnection.connect(**own_connection_params(), autocommit=True)

    async def _connected(self):
        if self.connection is None or self.connection.closed:
            self.connection = await self._connect()
        if self.listening is None or self.listening.done():
            listener = await self._connect()
            try:
                with cut_off_after(listener, HUB_READ_SECONDS):
                    await listener.execute(f"LISTEN {POSTGRES_CHANNEL}")
            except self.errors:
                await listener.close()  # not kept by anything: it was left open each time
                raise
            self.listening = asyncio.get_running_loop().create_task(self._notifications(listener))
        return self.connection

    async def _read(self, sql: str, params=()) -> list:
        """The rows of a query on the reading connection, cut off after HUB_READ_SECONDS: a server
        that stopped answering, or a connection that went dead without a reset (a firewall or
        NAT that forgot it, a host gone), held the hub's look for good, and with it every stream
        of the node. Both connections are then made again at the next look."""
        try:
            connection = await self._connected()
            with cut_off_after(connection, HUB_READ_SECONDS):
                cursor = await connection.execute(sql, params)
                return await cursor.fetchall()
        except self.errors:
            await self.close()
            raise

    async def _notifications(self, listener) -> None:
        try:
            async for _ in listener.notifies():
                self.wake()
        except self.errors:
            pass  # the connection went: the next look makes another
        finally:
            await listener.close()
        self.wake()  # look now: a version may have been saved while it went

    async def newest(self) -> int:
        return (await self._read(NEWEST_SQL))[0][0]

    async def after(self, pk: int) -> list:
        columns = VERSION_COLUMNS.replace("diff, document", "diff::text, document::text")
        return await self._read(f"SELECT {columns} FROM config_app_configversion WHERE id > %s ORDER BY id", (pk,))

    async def close(self) -> None:
        if self.listening is not None:
            self.listening.cancel()
        if self.connection is not None:
            await self.connection.close()
        self.connection = None


_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    return _hubs.setdefault(id(asyncio.get_running_loop()), Hub())


async def async_events(scope: str | None, last_event_id: int | None, subscriber: str):
    """The ASGI stream: replay what was missed, then every new version as it is committed."""
    my_hub = hub()
    stream = my_hub.subscribe(subscriber, scope)
    try:
        await my_hub.started.wait()
        await sync_to_async(mark_subscriber)(subscriber, scope, True)
        yield b"retry: 1000\n\n"
        # Everything up to the newest change now is either replayed below or was seen before.
        sent_pk = await sync_to_async(newest_pk)()
        for event in await sync_to_async(missed_events)(scope, last_event_id):
            yield format_event(event, scope).encode()
            sent_pk = max(sent_pk, event["id"])
        while True:
            # The stream waits only when it has seen everything the hub has read (it may have
            # been busy writing when the last wake-up came). Woken with nothing new: a keepalive.
            if my_hub.seen_pk <= sent_pk:
                await my_hub.streams_woken.wait()
                if my_hub.seen_pk <= sent_pk:
                    yield b": keepalive\n\n"  # the hub has marked its subscriber as still there
                    continue
            read_up_to = my_hub.seen_pk
            fresh = my_hub.events_after(sent_pk, scope)
            if fresh is None:
                fresh = await sync_to_async(events_after)(sent_pk, scope)
            for event in fresh:
                yield my_hub.message(event, scope)
                sent_pk = event["id"]
            sent_pk = max(sent_pk, read_up_to)
    finally:
        my_hub.unsubscribe(stream)
        await asyncio.shield(sync_to_async(mark_subscriber)(subscriber, scope, False))


def sync_events(scope: str | None, last_event_id: int | None, subscriber: str):
    """The WSGI stream (one thread per subscriber): the same events, found by polling."""
    mark_subscriber(subscriber, scope, True)
    try:
        yield "retry: 1000\n\n"
        sent_pk = newest_pk()
        for event in missed_events(scope, last_event_id):
            yield format_event(event, scope)
            sent_pk = max(sent_pk, event["id"])
        idle_since = time.monotonic()
        while True:
            time.sleep(WSGI_POLL_SECONDS)
            try:
                fresh = events_after(sent_pk, scope)
            except Exception:  # noqa: BLE001 - the server is going away: end the stream, the client reconnects
                return
            for event in fresh:
                yield format_event(event, scope)
                sent_pk = event["id"]
            if fresh or time.monotonic() - idle_since > KEEPALIVE_SECONDS:
                idle_since = time.monotonic()
                yield ": keepalive\n\n"
    finally:
        with contextlib.suppress(Exception):  # as above
            mark_subscriber(subscriber, scope, False)
