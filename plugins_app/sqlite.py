"""Plain ``sqlite3`` connections with the same PRAGMAs as Django's (see settings.DATABASES):
for the bot's write API, the sync, backups and benchmarks."""

import sqlite3
from pathlib import Path
from urllib.request import pathname2url


def connect(path: str | Path, *, timeout: float = 20.0, read_only: bool = False) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit: BEGIN IMMEDIATE ... COMMIT).

    Opened as a URI so that read-only ATTACH (``file:...?mode=ro``) works on it too."""
    uri = read_only_uri(path) if read_only else file_uri(path)
    connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    if not read_only:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def database_bytes(path: str | Path) -> int:
    """Size of a database as it stands: the main file plus its write-ahead log."""
    path = Path(path)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def file_uri(path: str | Path) -> str:
    return "file:" + pathname2url(str(Path(path).resolve()))


def read_only_uri(path: str | Path) -> str:
    return file_uri(path) + "?mode=ro"
