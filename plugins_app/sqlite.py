"""Plain ``sqlite3`` connections with the same PRAGMAs as Django's (see settings.DATABASES):
for the bot's write API, the sync's read-only reads, backups and benchmarks."""

import sqlite3
from pathlib import Path


def connect(path: str | Path, *, timeout: float = 20.0, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        connection = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    else:
        connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
