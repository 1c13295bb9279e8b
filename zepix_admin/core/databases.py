import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from zepix_admin.core.errors import NotFound

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


def central_unreachable(error: BaseException | None) -> bool:
    """Whether an error is the central PostgreSQL database not answering (down, restarting):
    said as such, by the pages (503) and the commands, rather than as a server error."""
    return isinstance(error, (OperationalError, InterfaceError)) and on_postgresql()


def checkpoint(alias: str = "default") -> None:
    """Copies what an SQLite database's write-ahead log holds into its file, as far as its
    readers allow, without waiting for them (PostgreSQL checkpoints by itself)."""
    if on_postgresql(alias):
        return
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


@contextmanager
def checkpointing(alias: str = "default") -> Iterator[None]:
    """A checkpoint in a thread of its own while the block runs, then one of what the block
    wrote: the first copies the bulk of the log while the block goes on (its writes and fsyncs
    wait on the disk with the interpreter let go), the second only the block's own pages. A
    sync run's records are written meanwhile: its checkpoint took 19-58 ms after them."""
    if on_postgresql(alias):
        yield
        return
    path = database_file(alias)

    def copy_the_log() -> None:
        try:
            with closing(sqlite3.connect(path, timeout=1)) as connection:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:  # the one after the block copies what this one could not
            logger.warning("Checkpoint of %s failed: %s", path.name, error)

    thread = threading.Thread(target=copy_the_log, name=f"checkpoint-{alias}")
    thread.start()
    try:
        yield
    finally:
        thread.join()
    checkpoint(alias)
