"""A deadline for a connection whose server may stop answering without closing it.

PostgreSQL stopped (SIGSTOP), stuck on a hung disk, or its host gone from the network without a
reset: the kernel keeps the connection open, and a query waits for an answer that never comes.
A request then held its thread and its pool connection for as long (the overview and /healthz
did not answer in 15 s), and the server's own ``statement_timeout`` cannot help. A cutoff shuts
the connection's socket down once its deadline passes: the wait ends in an OperationalError
(the request says the database does not answer), and the pool drops the connection. No Django
here: the settings' pool check uses it.
"""

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager, suppress

logger = logging.getLogger("zepix.databases")

# The pool checks a connection as it lends it (an empty query, well under a millisecond): one
# that does not answer this fast is dropped, and the request waits for another (or says the
# database does not answer).
CHECK_SECONDS = 1.0


class _Cutoffs:
    """One thread per process, sleeping until the earliest deadline of the connections watched."""

    def __init__(self):
        self.condition = threading.Condition()
        self.deadlines: list[tuple[float, int]] = []  # a heap of (deadline, number)
        self.watched: dict[int, object] = {}  # number -> psycopg connection
        self.numbers = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, connection, seconds: float) -> int:
        with self.condition:
            number = next(self.numbers)
            heapq.heappush(self.deadlines, (time.monotonic() + seconds, number))
            self.watched[number] = connection
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="zepix-cutoffs", daemon=True)
                self.thread.start()
            elif self.deadlines[0][1] == number:  # sooner than what the thread waits for
                self.condition.notify()
            return number

    def forget(self, number: int) -> None:
        with self.condition:
            self.watched.pop(number, None)

    def _run(self) -> None:
        with self.condition:
            while True:
                while self.deadlines and self.deadlines[0][1] not in self.watched:
                    heapq.heappop(self.deadlines)
                if not self.deadlines:
                    self.condition.wait()
                    continue
                deadline, number = self.deadlines[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self.condition.wait(left)
                    continue
                heapq.heappop(self.deadlines)
                _shut_down(self.watched.pop(number))

    def after_fork(self) -> None:  # the thread is not in the child, and the lock may be held
        self.condition = threading.Condition()
        self.deadlines, self.watched, self.thread = [], {}, None


def _shut_down(connection) -> None:
    """Ends the connection's socket (not its file descriptor, which psycopg still owns and
    closes): the query waiting on it gets an error at once. The descriptor is read now, not
    when watching began, so a connection closed meanwhile is left alone."""
    try:
        if connection.closed:
            return
        duplicate = socket.socket(fileno=os.dup(connection.pgconn.socket))
    except Exception:  # noqa: BLE001 - closed or broken meanwhile: nothing left to cut
        return
    with duplicate, suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)
    logger.warning("The central database (PostgreSQL) did not answer in time: its connection was cut")


_cutoffs = _Cutoffs()
os.register_at_fork(after_in_child=_cutoffs.after_fork)


@contextmanager
def cut_off_after(connection, seconds: float):
    """Within the block, a psycopg connection still waiting on its server ``seconds`` from now
    is cut (its socket shut down)."""
    number = _cutoffs.watch(connection, seconds)
    try:
        yield
    finally:
        _cutoffs.forget(number)


def watch(connection, seconds: float) -> int:
    """As cut_off_after, for a watch that ends elsewhere: ``forget(number)``."""
    return _cutoffs.watch(connection, seconds)


def forget(number: int) -> None:
    _cutoffs.forget(number)


def check_answering(connection) -> None:
    """psycopg-pool's check of a connection it lends (an empty query), cut off after
    CHECK_SECONDS: a server that does not answer fails the check instead of holding the request."""
    from psycopg_pool import ConnectionPool

    with cut_off_after(connection, CHECK_SECONDS):
        ConnectionPool.check_connection(connection)
