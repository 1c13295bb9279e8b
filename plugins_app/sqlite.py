"""Plain ``sqlite3`` connections with the same PRAGMAs as Django's (see settings.DATABASES):
for the bot's write API, the sync, backups and benchmarks."""

import fcntl
import os
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.request import pathname2url


def connect(
    path: str | Path, *, timeout: float = 20.0, read_only: bool = False, closable_anywhere: bool = False
) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit: BEGIN IMMEDIATE ... COMMIT).

    Opened as a URI so that read-only ATTACH (``file:...?mode=ro``) works on it too. A
    missing file is an error, never a new empty database (see ``create``). A connection
    ``closable_anywhere`` may be closed by another thread than the one that used it."""
    uri = read_only_uri(path) if read_only else writable_uri(path)
    connection = sqlite3.connect(
        uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=not closable_anywhere
    )
    if not read_only:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


@contextmanager
def immediate_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """``BEGIN IMMEDIATE`` (the write lock, taken now rather than at the first write, so that a
    busy database fails here, before any work) … ``COMMIT``, or ``ROLLBACK`` on any error."""
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        yield cursor
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    else:
        connection.execute("COMMIT")
    finally:
        cursor.close()


# A plugin database's identity: a random value that every backup copy and every restore
# stamps anew. The sync remembers the identity it last read; a different one means the
# file was replaced (restored, copied back by hand) and its rows must be reconciled.
IDENTITY_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS zepix_identity (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "incarnation TEXT NOT NULL, stamped_at TEXT NOT NULL)"
)
STAMP_IDENTITY_SQL = (
    "INSERT OR REPLACE INTO zepix_identity (id, incarnation, stamped_at) "
    "VALUES (1, lower(hex(randomblob(16))), datetime('now'))"
)


def stamp_identity(path: str | Path) -> None:
    """Give the (offline) database file at ``path`` a new identity."""
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(IDENTITY_TABLE_SQL)
        connection.execute(STAMP_IDENTITY_SQL)


def database_bytes(path: str | Path) -> int:
    """Size of a database as it stands: the main file plus its write-ahead log."""
    path = Path(path)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def file_uri(path: str | Path) -> str:
    return "file:" + pathname2url(str(Path(path).resolve()))


def read_only_uri(path: str | Path) -> str:
    return file_uri(path) + "?mode=ro"


def writable_uri(path: str | Path) -> str:
    """Opens an existing database for writing and never creates a missing one."""
    return file_uri(path) + "?mode=rw"


def create(path: str | Path) -> bool:
    """Make a new, empty database file in WAL mode; False when it exists already.

    The only way a plugin database comes into being: ``setup`` on a new install and
    ``startplugin`` call it, nothing else does (a missing file is reported as missing)."""
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    return True


# SQLite's "dead man switch" in a WAL database's shared-memory file: every connection to the
# database holds a read lock on this byte while it is open (os_unix.c: UNIX_SHM_DMS, 120 + 8).
SHM_DEAD_MAN_SWITCH = 128


def open_elsewhere(path: str | Path) -> int | None:
    """The id of a process other than this one with the database at ``path`` open (one of them,
    as the system tells it), or None. Asks without taking any lock, so nothing waits on it."""
    try:
        shm = os.open(f"{path}-shm", os.O_RDONLY)
    except FileNotFoundError:
        return None  # no connection has it open in WAL mode (or it is not in WAL mode)
    try:
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, SHM_DEAD_MAN_SWITCH, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(shm, fcntl.F_GETLK, probe))
    finally:
        os.close(shm)
    return None if kind == fcntl.F_UNLCK else pid


def in_use_by(path: str | Path) -> str:
    """'pid N: its command line' of a process other than this one with the database at ``path``
    open (in WAL mode: a database in rollback-journal mode tells nothing between its
    transactions), or ''."""
    pid = open_elsewhere(path)
    if pid is None:
        return ""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"pid {pid}: {command[:120]}" if command else f"pid {pid}"
