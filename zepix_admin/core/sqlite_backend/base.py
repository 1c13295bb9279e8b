"""The central SQLite database's backend: Django's, with its connections kept for the next request.

Under ASGI every request runs in a thread of its own, so Django opened a new connection to the
central file for each one and closed it at the end: connecting, registering Django's SQL
functions, the PRAGMAs and reading the schema again cost 1.5 ms of every page and every API
call (a config save's commit came 11.5 ms after its PUT was sent, 9.7 ms with connections
kept). A closed connection is kept instead, and the next thread to open one takes it if it is
still a connection to the same file (a restore swaps another file in: the connections kept on
the old one are closed, and SQLite makes no checkpoint of a file that has moved). Only a
connection left as it was opened is kept: no transaction, nothing attached, no temporary table.
"""

import collections
import os
import sqlite3
import threading

from django.db.backends.sqlite3 import base, features

KEPT_PER_PROCESS = 8  # more threads at once than that open connections of their own, closed after


def file_identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def as_opened(connection: sqlite3.Connection) -> bool:
    if connection.in_transaction:
        return False
    return [row[1] for row in connection.execute("PRAGMA database_list")] == ["main"]


class Kept:
    """Connections put back, each with its file's path and identity (device, inode)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connections: collections.deque = collections.deque()

    def take(self, path: str, identity: tuple[int, int] | None) -> sqlite3.Connection | None:
        """A connection kept for this file as it is now; every other one kept is closed (a
        restore leaves them all on the file it swapped out)."""
        with self.lock:
            entries, self.connections = self.connections, collections.deque()
            stale = [entry[0] for entry in entries if entry[1:] != (path, identity)]
            self.connections.extend(entry for entry in entries if entry[1:] == (path, identity))
            connection = self.connections.pop()[0] if self.connections else None
        for other in stale:
            other.close()
        return connection

    def put_back(self, connection: sqlite3.Connection, path: str, identity: tuple[int, int]) -> bool:
        with self.lock:
            if len(self.connections) >= KEPT_PER_PROCESS:
                return False
            self.connections.append((connection, path, identity))
            return True


kept = Kept()
# A process made by fork neither uses nor closes its parent's connections (SQLite's are not to
# cross a fork, not even to be closed): they are kept aside, never touched again.
_inherited: list = []


def _leave_the_parents_connections() -> None:
    _inherited.extend(kept.connections)
    kept.lock, kept.connections = threading.Lock(), collections.deque()


os.register_at_fork(after_in_child=_leave_the_parents_connections)


class CentralMissing(sqlite3.OperationalError):
    """The central database's file is missing. Any command or page made an empty one in its
    place (and failed on its missing tables); then `setup` migrated it, and the console started
    over empty beside the backups that would have brought it back. It is said as missing instead
    (core.databases.outage); only `setup` makes one, on a new install (``may_create``)."""


_may_create: set[str] = set()


def may_create(path) -> None:
    """This process may make the central database's file at ``path`` (`setup`, a new install)."""
    _may_create.add(str(path))


class DatabaseFeatures(features.DatabaseFeatures):
    """Django's system checks ask a database whether it supports JSON by running a query: a
    missing file (never made but by `setup`) or a damaged one stopped `check` and every command
    that runs them. This SQLite has JSON built in (3.38+), so the answer is fixed."""

    supports_json_field = True
    can_introspect_json_field = True
    has_json_object_function = True


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    _identity: tuple[int, int] | None = None  # the file this wrapper's connection was opened on

    def get_new_connection(self, conn_params):
        if self.is_in_memory_db():
            return super().get_new_connection(conn_params)
        path = str(self.settings_dict["NAME"])
        # Before it opens: a file swapped in between is taken for another one, and not kept.
        self._identity = file_identity(path)
        if self._identity is None and not self._may_create(path):
            raise CentralMissing(f"the central database's file is missing ({path})")
        return kept.take(path, self._identity) or super().get_new_connection(conn_params)

    def _may_create(self, path: str) -> bool:
        return path in _may_create or path == str(self.settings_dict.get("TEST", {}).get("NAME"))  # the tests' own

    def _close(self):
        connection = self.connection
        if connection is None or self.is_in_memory_db():
            return super()._close()  # type: ignore[misc]  # Django's, not in the stubs
        path = str(self.settings_dict["NAME"])
        with self.wrap_database_errors:
            connection.set_progress_handler(None, 0)  # a request's time limit (zepix_admin.core.limits)
            if self._identity is None or self._identity != file_identity(path):
                return connection.close()
            if as_opened(connection) and kept.put_back(connection, path, self._identity):
                return None
            return connection.close()
