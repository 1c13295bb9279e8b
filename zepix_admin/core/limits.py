"""No single request may stall the server: every query a request makes runs under a time limit.

SQLite calls a progress handler every few thousand virtual-machine steps; ours stops the
statement once the request's deadline has passed, and the request answers a clear error.
The handler stays installed while rows are fetched (SQLite steps lazily), until the request
ends. On PostgreSQL the server does the same with ``statement_timeout``, set to what is left
of the deadline (again only once a second has gone since it was last set, not before every
statement) and reset when the request ends; a server that does not answer at all (stopped, its
host gone) cannot stop anything, so the connection is cut CUTOFF_GRACE_SECONDS after the deadline
(zepix_admin.core.cutoff). Only SQL is bounded this way: a Python function
called by a query (Django's REGEXP) cannot be interrupted, so the admin refuses such lookups
outright (plugins_app.admin).
"""

import contextlib
import time
from contextlib import ExitStack, contextmanager
from functools import wraps

from django.conf import settings
from django.db import OperationalError, connections
from django.utils.deprecation import MiddlewareMixin

from zepix_admin.core import cutoff
from zepix_admin.core.errors import error_response

PROGRESS_STEPS = 20_000  # about every millisecond of SQLite work
# A server that answers stops a statement at its statement_timeout within milliseconds.
CUTOFF_GRACE_SECONDS = 2.0


@contextmanager
def statement_time_limit(seconds: float):
    deadline = time.monotonic() + seconds
    touched = []
    server_limits: dict = {}  # PostgreSQL connection: the statement_timeout it was given, in ms
    watches: dict = {}  # PostgreSQL connection: its cutoff

    def over_time() -> int:
        return 1 if time.monotonic() > deadline else 0

    def wrapper(execute, sql, params, many, context):
        raw = context["connection"].connection
        if hasattr(raw, "set_progress_handler"):
            if raw not in touched:
                raw.set_progress_handler(over_time, PROGRESS_STEPS)
                touched.append(raw)
        elif context["connection"].vendor == "postgresql":
            if raw not in watches:
                watches[raw] = cutoff.watch(raw, deadline - time.monotonic() + CUTOFF_GRACE_SECONDS)
            left = max(1, int((deadline - time.monotonic()) * 1000))
            if left < server_limits.get(raw, left + 1000) - 999:
                # Django's error (a connection lost here is an outage, said as a 503), not psycopg's (a 500)
                with context["connection"].wrap_database_errors:
                    raw.execute(f"SET statement_timeout = {left}")
                server_limits[raw] = left
        return execute(sql, params, many, context)

    try:
        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(wrapper))
            yield
    finally:
        for raw in touched:
            with contextlib.suppress(Exception):  # a connection closed meanwhile needs no cleanup
                raw.set_progress_handler(None, 0)
        for raw in server_limits:
            with contextlib.suppress(Exception):  # as above; the pool hands it on without the limit
                raw.execute("RESET statement_timeout")
        for number in watches.values():
            cutoff.forget(number)


def timed_out(exception: BaseException) -> bool:
    if not isinstance(exception, OperationalError):
        return False
    if str(exception) == "interrupted":  # SQLite's progress handler
        return True
    cause = exception.__cause__
    return type(cause).__name__ == "QueryCanceled"  # PostgreSQL's statement_timeout


class StatementTimeLimitMiddleware(MiddlewareMixin):
    """Every request's queries share one deadline; a request that hits it answers 400 saying so.
    (A MiddlewareMixin, so the event stream's async view stays async under uvicorn.)"""

    def process_request(self, request):
        request._statement_time_limit = ExitStack()
        request._statement_time_limit.enter_context(statement_time_limit(settings.STATEMENT_TIME_LIMIT_SECONDS))

    def process_response(self, request, response):
        self.lift(request)
        return response

    @staticmethod
    def lift(request) -> None:
        limit = getattr(request, "_statement_time_limit", None)
        if limit is not None:
            limit.close()

    def process_exception(self, request, exception):
        if not timed_out(exception):
            return None
        # The answer's own queries (the navigation's) run without the limit: they were stopped
        # too once it had passed (on PostgreSQL the server kept a 1 ms statement_timeout), and
        # the 400 became a 500.
        self.lift(request)
        message = (
            f"This request was stopped after {settings.STATEMENT_TIME_LIMIT_SECONDS:g} s so that it could "
            "not slow the console down for everyone: narrow the filters or the date range."
        )
        return error_response(request, 400, "Request too expensive", message)


def without_statement_time_limit(view):
    """A view whose work is long by nature and asked for on purpose runs its queries unbounded:
    an admin's restore (a large file checked and decompressed, a PostgreSQL dump read back) and a
    bot host's whole file (checked, mirrored and synced: 200,000 trades take 4-6 s). Under the
    limit, the first statement after it had passed was stopped: on PostgreSQL the central
    database's restore was undone ("Nothing was restored") and a host's file refused with 400 (it
    sent it again at every interval). Such a request holds its own thread, not the server."""

    @wraps(view)
    def unbounded(request, *args, **kwargs):
        StatementTimeLimitMiddleware.lift(request)
        return view(request, *args, **kwargs)

    return unbounded
