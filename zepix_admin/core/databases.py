import errno
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from zepix_admin.core.errors import NotFound
from zepix_admin.core.sqlite_backend.base import CentralMissing

logger = logging.getLogger("zepix.databases")


def database_file(alias: str) -> Path:
    """The SQLite file behind a database alias (the test database's under tests): the one way
    from an alias to its path, for the sync, backups, health and the config stream."""
    if alias not in settings.DATABASES:
        raise NotFound(f"Unknown database {alias!r}.")
    return Path(settings.DATABASES[alias]["NAME"])


def own_connection_params(alias: str = "default") -> dict:
    """Django's connection parameters of a PostgreSQL alias, for a psycopg connection of one's
    own outside Django's pool (the config hubs' LISTEN, pg_dump's snapshot): less Django's
    cursor class."""
    params = connections[alias].get_connection_params()
    params.pop("cursor_factory", None)
    return params


def on_postgresql(alias: str = "default") -> bool:
    """Whether a database alias is on PostgreSQL (only the central one can be: DATABASE_URL); an
    unknown alias is not (the caller refuses it by name)."""
    return alias in settings.DATABASES and connections[alias].vendor == "postgresql"


@dataclass(frozen=True)
class Outage:
    """Something the console needs is away, not a bug: said by the pages (a 503) and the
    commands as such, never as a server error or a traceback."""

    title: str  # the 503 page's heading
    what: str  # "The central database (PostgreSQL) does not answer"
    again: str  # when to send it again: "once it is back"
    recovers: str  # what the console does meanwhile


# Under this much free space, a disk error is the disk being full (see _disk_outage).
FULL_BELOW_BYTES = 1 << 20


def outage(error: BaseException | None) -> Outage | None:
    """The outage an error comes from: the central PostgreSQL database not answering (down,
    restarting), the disk of the data or the config folder full or read-only, the central
    SQLite database damaged, or a SQLite database held by another writer past the busy timeout
    (a config save answered 500 for it); None for anything else."""
    if error is None:
        return None
    if isinstance(error.__cause__ or error, CentralMissing):
        return Outage(
            "The console's database is missing",
            f"The central database's file is missing ({database_file('default')})",
            f"once it is restored from its latest backup: {central_restore_hint()}; on a new install, "
            "`python manage.py setup` makes it",
            "Every page needs it.",
        )
    if _central_damaged(error):
        return Outage(
            "The console's database is damaged",
            "The central database is damaged",
            f"once it is restored from its latest backup: {central_restore_hint()}",
            "Every page needs it.",
        )
    disk = _disk_outage(error)
    if disk is not None:
        return disk
    if sqlite_code(error) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # its busy timeout passed
        return Outage(
            "The console's database is busy",
            "A database the console needs was held by another writer for longer than it waits "
            "(a large sync, a restore, or the bot's own write)",
            "once it is free",
            "Nothing was lost.",
        )
    if isinstance(error, (OperationalError, InterfaceError)) and on_postgresql():
        return Outage(
            "The console cannot reach its database",
            "The central database (PostgreSQL) does not answer",
            "once it is back",
            "The console reconnects by itself.",
        )
    return None


def central_restore_hint() -> str:
    return (
        f"`python manage.py restore_backup <backup file>` (its backups are {settings.BACKUP_DIR}/default-*.sqlite3.zst)"
    )


def sqlite_code(error: BaseException) -> int | None:
    """The primary result code of a SQLite error, or of the one a Django error was raised from;
    None for any other error."""
    cause = error if isinstance(error, sqlite3.Error) else error.__cause__
    if not isinstance(cause, sqlite3.Error):
        return None
    return (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF


def damaged(error: BaseException) -> bool:
    """Whether a SQLite error (or a Django one it caused) says a file is not a database or is
    damaged, rather than busy, locked or out of room."""
    return sqlite_code(error) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _central_damaged(error: BaseException) -> bool:
    """A damaged-file error whose file is the central SQLite database (its schema cannot be read:
    a page deep in it can be damaged and its schema read, which is then not said as such)."""
    if not damaged(error) or on_postgresql():
        return False
    try:
        with closing(sqlite3.connect(f"{database_file('default').as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as reading:
        return damaged(reading)
    return False


def _disk_outage(error: BaseException) -> Outage | None:
    """A full or read-only disk under the data or the config folder (a SQLite error through
    Django is the cause of Django's). SQLite says either as several errors (a WAL database
    cannot even be opened without room for its index file, or on a read-only disk: "disk I/O
    error", "unable to open database file"), so the folders themselves are looked at."""
    cause = error if isinstance(error, OSError) else error.__cause__
    code = sqlite_code(error)
    if isinstance(cause, OSError):
        if cause.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return None
        certain = cause.errno != errno.EROFS
    elif code is not None:
        if code not in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            return None
        certain = code == sqlite3.SQLITE_FULL
    else:
        return None
    disk = disk_state()
    if disk.read_only:
        return Outage(
            "The console's disk is read-only",
            f"The disk holding {disk.read_only[0]} is read-only",
            "once it can be written again (a disk the system made read-only after errors is to be checked first)",
            "The console goes on by itself once it can write.",
        )
    if not certain and disk.free_bytes >= FULL_BELOW_BYTES:
        return None
    return Outage(
        "The console's disk is full",
        f"The disk holding {disk.fullest} is full ({disk.free_bytes:,} bytes free)",
        f"once there is room (old backups are in {settings.BACKUP_DIR})",
        "The console goes on by itself once there is room.",
    )


def console_folders() -> list[Path]:
    """The folders the console writes in (the data folder, the config folder), those there are."""
    return [folder for folder in (settings.DATA_DIR, settings.CONFIG_DIR) if folder.is_dir()]


def read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


@dataclass
class DiskState:
    read_only: list[Path]  # the console's folders on a read-only disk
    fullest: Path  # the folder with the least room, and its free bytes
    free_bytes: int


def disk_state() -> DiskState:
    """Where the console writes (``console_folders``): what health reports, and what tells a
    full or read-only disk from another database error."""
    folders = console_folders()
    fullest, free = min(((folder, shutil.disk_usage(folder).free) for folder in folders), key=lambda entry: entry[1])
    return DiskState([folder for folder in folders if read_only(folder)], fullest, free)


def checkpoint(alias: str = "default") -> None:
    """Copies what an SQLite database's write-ahead log holds into its file, as far as its
    readers allow, without waiting for them (PostgreSQL checkpoints by itself)."""
    if on_postgresql(alias):
        return
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


@contextmanager
def checkpointing(alias: str = "default") -> Iterator[Callable[[], None]]:
    """Checkpoints in a thread of their own while the block runs, then one of what is left. The
    block calls what it is given each time it has committed something, and the thread copies
    that into the file while the block goes on (its writes and fsyncs wait on the disk with the
    interpreter let go): the last checkpoint has only the block's last pages to copy. A sync run
    calls it after each plugin: a round of 1,000 random changes in each of 5 plugins waited 46
    ms for its checkpoint when the run's end copied every plugin's pages."""
    if on_postgresql(alias):
        yield lambda: None
        return
    path = database_file(alias)
    wanted, ended = threading.Event(), threading.Event()
    wanted.set()  # the log as the block finds it

    def copy_the_log() -> None:
        try:
            # mode=rw: a file gone meanwhile is an error, never a new empty database
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=1)) as connection:
                while wanted.wait() and not ended.is_set():
                    wanted.clear()  # before the checkpoint: a commit made during it asks for the next
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:  # the one after the block copies what this one could not
            logger.warning("Checkpoint of %s failed: %s", path.name, error)

    thread = threading.Thread(target=copy_the_log, name=f"checkpoint-{alias}")
    thread.start()
    try:
        yield wanted.set
    finally:
        ended.set()
        wanted.set()
        thread.join()
    checkpoint(alias)
