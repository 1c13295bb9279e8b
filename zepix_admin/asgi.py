import asyncio
import collections
import gc
import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, closing

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import DatabaseError
from django.http import FileResponse
from django.urls import Resolver404, resolve, set_script_prefix

from zepix_admin.startup import skip_unused_drivers

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zepix_admin.settings")
skip_unused_drivers()
django.setup(set_prefix=False)  # what get_asgi_application() does

from config_app import documents  # noqa: E402 - needs the settings
from zepix_admin.core.access import bearer_token, user_for_token  # noqa: E402
from zepix_admin.core.http import EventStreamResponse  # noqa: E402

IDLE_REQUEST_THREADS = 16  # kept for the next requests; more are made while more run at once
_idle_request_threads: collections.deque[ThreadPoolExecutor] = collections.deque()

# Every request leaves its objects in reference cycles (Django's request with its lazy user, its
# session, its messages; uvicorn's connection; the task group's exception), freed only by the
# garbage collector, which Python runs after every 2,000 new objects: every few requests, in the
# middle of whatever runs then. Measured inside the served console, one config save in five or
# six had a pass of 0.7-2.6 ms, and one in twenty to forty a pass of 3-7 ms, between its commit
# and its last stream's event. The worker now also collects once it has answered and no request
# came for a moment: a save leaves some 330 new objects, so it starts with room for its own.
COLLECT_AFTER_IDLE_SECONDS = 0.05
FULL_COLLECTION_AFTER = 100
_idle_collection: asyncio.TimerHandle | None = None


def _put_off_collection() -> None:
    """On the event loop, as a request comes: no collection of the idle moment's while it runs."""
    if _idle_collection is not None:
        _idle_collection.cancel()


def _collect_when_idle() -> None:
    """On the event loop, once a request is answered: a collection after
    COLLECT_AFTER_IDLE_SECONDS, unless another request comes first (which puts it off)."""
    global _idle_collection
    _put_off_collection()
    _idle_collection = asyncio.get_running_loop().call_later(COLLECT_AFTER_IDLE_SECONDS, _collect)


def _collect() -> None:
    """The two young generations; all three after FULL_COLLECTION_AFTER such passes, so that what
    outlived them and became garbage later (a stream's objects once it ends) is freed too. A
    whole pass took 12-20 ms here: not after every request."""
    gc.collect(2 if gc.get_count()[2] >= FULL_COLLECTION_AFTER else 1)


def _park(executor: ThreadPoolExecutor) -> None:
    """Run by a request's thread once everything its request gave it is done (a request whose
    client went away leaves its view running there): the thread waits for the next request."""
    if len(_idle_request_threads) < IDLE_REQUEST_THREADS:
        _idle_request_threads.append(executor)
    else:
        executor.shutdown(wait=False)


class RequestProcessed(Exception):
    """Ends the task group of a request whose response was sent (as in Django's handler)."""


class Handler(ASGIHandler):
    """Django's ASGI handler, with two shortcuts, a limit and a thread kept.

    A request is started, made, and answered by its middleware and view in one hop to the
    request's thread, as under WSGI. Every view and nearly every middleware here is sync, so
    Django's async chain went to that thread for the middleware, back to the event loop for its
    async view layer, and to the thread again for the view: 6-7 ms more per request than the
    same request under WSGI (a config save 17-19 against 11-12 ms in-process). Django also went
    to the thread for the request_started signal before making the request, and once more to
    log an answer of 400 or more: a config save reached its view 0.45 ms sooner (median, timed
    inside the served console) once those went in the one hop.

    An EventStreamResponse's events are written straight to the server. Django's own path passes
    each part through three async generators and a chunker before the ASGI send. Measured inside
    the server with 100 subscribers: from the commit to the last stream's send took 17 ms (a
    stream's delivery 70 us, 45 us of it there); now 10.6 ms.

    A request's body is read no further than it may be long. Django reads the whole body (into
    memory, then a temporary file) before any middleware or view runs, so a client without any
    credentials could fill the disk with one upload. Past DATA_UPLOAD_MAX_MEMORY_SIZE, or the
    larger limit a view declares for the requests it allows (``view.body_limit(user, **kwargs)``:
    a bot host's snapshot), the rest is read and dropped; Django then answers as to any body over
    its limit (400), unless the request is refused first (401, 403).

    A request's thread is kept for a later request. Django gives each request a thread of its
    own (its database connections are the thread's), made for it, and another made to join it
    when the request ends: about 1 ms of every request here (an API GET of a config 5.0 -> 4.2
    ms, a save 9.1 -> 8.2 ms, the worker's CPU a request 6.7 -> 5.8 ms). A thread still serves
    one request at a time, as Django expects."""

    def __init__(self):
        super().__init__()
        self.load_middleware(is_async=False)  # the sync chain, which get_response() runs

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # refused there, as Django does
        _put_off_collection()
        try:
            executor = _idle_request_threads.pop()
        except IndexError:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            executor.submit(_park, executor)
            _collect_when_idle()

    async def handle(self, scope, receive, send):
        """Django's ``ASGIHandler.handle``, with the request's start, its making and its response
        in one hop to its thread (``respond``)."""
        receive = self.body_within_limit(scope, receive)
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            response = None
            try:
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self.listen_for_disconnect(receive))
                        response = await sync_to_async(self.respond, thread_sensitive=True)(scope, body_file)
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as exception_group:
                if len(exception_group.exceptions) == 1:
                    raise exception_group.exceptions[0] from None
                raise
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                await sync_to_async(response.close)()

    def respond(self, scope, body_file):
        """In the request's thread: what Django's handler does in three hops to it."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            return error_response
        response = self.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # the sender of request_finished, as Django sets it
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # the server chunks files itself
        return response

    def body_within_limit(self, scope, receive):
        """``receive`` as Django's handler reads the body with it, cut at the request's limit."""
        limit, received, cut = settings.DATA_UPLOAD_MAX_MEMORY_SIZE, 0, False
        length_header = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        declared = int(length_header) if length_header.isdigit() else 0  # the server refuses one not a number
        larger_limit_asked = False

        async def receive_within_limit():
            nonlocal limit, received, cut, larger_limit_asked
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                if cut:
                    continue  # the rest of a body over its limit: read and dropped
                received += len(message.get("body", b""))
                size = max(received, declared)
                if size > limit and not larger_limit_asked:
                    larger_limit_asked = True
                    limit = max(limit, await sync_to_async(self.larger_body_limit)(scope) or 0)
                if size <= limit:
                    return message
                cut = True
                scope["headers"] = [  # the length Django's limit then refuses
                    *(h for h in scope["headers"] if h[0] != b"content-length"),
                    (b"content-length", str(size).encode()),
                ]
                return {"type": "http.request", "body": b"", "more_body": False}

        return receive_within_limit

    def larger_body_limit(self, scope) -> int | None:
        """The limit the request's view declares for it, if any (its token's user decides)."""
        try:
            match = resolve(scope["path"])
        except Resolver404:
            return None
        body_limit = getattr(match.func, "body_limit", None)
        if body_limit is None:
            return None
        authorization = next((v.decode("latin1") for n, v in scope["headers"] if n == b"authorization"), "")
        raw_token = bearer_token(authorization)
        try:
            user = user_for_token(raw_token) if raw_token else None
        except DatabaseError:  # the request goes on with the common limit, and meets the error there
            return None
        return body_limit(user, **match.kwargs) if user is not None else None

    async def send_response(self, response, send):
        if not isinstance(response, EventStreamResponse) or not response.is_async:
            return await super().send_response(response, send)
        headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
        headers += [(b"Set-Cookie", cookie.OutputString().encode("ascii")) for cookie in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        async with aclosing(response.events) as events:
            async for message in events:
                await send({"type": "http.response.body", "body": message, "more_body": True})
        await send({"type": "http.response.body"})


application = Handler()
# What the first requests would import is imported now, and frozen with the rest below: every
# view (through the URLconf) and the validator of config saves.
importlib.import_module(settings.ROOT_URLCONF)
documents.load_validator()
# What start-up made (Django, the apps and their modules: about 100,000 objects) stays out of
# the garbage collector's full passes. A full pass over them took 67 ms with the whole process
# stopped, every stream and request of the worker with it; 1.3 ms without them.
gc.freeze()
