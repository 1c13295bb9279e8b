"""The subscriber client for the bot's processes: follows a config scope over SSE.

Standard library only, so a plugin process imports it without Django::

    subscriber = ConfigSubscriber("http://127.0.0.1:8000", token, scope="combined_v3",
                                  name="combined_v3-live", on_config_changed=plugin.on_config_changed)
    subscriber.run_forever()        # or start() for a background thread

With several web nodes, ``other_urls`` names the others: when the stream drops, the client
reconnects to the next node, resuming with ``Last-Event-ID`` like any reconnection.
Versions are applied strictly in order: a gap (a version missed while the stream was
down) makes it reconnect with ``Last-Event-ID`` so the server replays what is missing.
After each version the client reports to ``/api/config/<scope>/ack`` whether the hook
applied it (from a thread of its own, in order); a hook that raises leaves the process on its
last good version.
"""

import contextlib
import http.client
import json
import logging
import queue
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("zepix.config.client")


@dataclass
class ConfigSubscriber:
    base_url: str
    token: str
    scope: str
    name: str
    on_config_changed: Callable[[dict], None] | None = None
    other_urls: tuple[str, ...] = ()  # the other web nodes, tried in turn when one drops
    reconnect_delays: tuple = (0.5, 1, 2, 5, 10)
    seen_version: int | None = None  # the newest version handled, applied or not: the stream resumes after it
    applied_version: int | None = None  # the version the plugin runs: the last one its hook accepted
    document: dict = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stream: http.client.HTTPConnection | None = None
    _reports: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # (version, ok, error), or None: stop
    _reporter: threading.Thread | None = None
    _node: int = 0  # which of base_url and other_urls the client talks to

    # Lifecycle ---------------------------------------------------------------

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name=f"config-{self.scope}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Returns at once: the stream's socket is shut down under the reading thread (closing the
        response instead waited for the reader's lock, up to the next keepalive: 15 s)."""
        self._stop.set()
        self._reports.put(None)
        stream = self._stream
        if stream is not None and stream.sock is not None:
            with contextlib.suppress(OSError):
                stream.sock.shutdown(socket.SHUT_RDWR)

    def run_forever(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.follow_stream()
                failures = 0
            except Exception as error:
                if self._stop.is_set():
                    break  # stop() closed the stream under the reader: whatever it raised is expected
                if not isinstance(error, (OSError, http.client.HTTPException, ValueError)):
                    raise
                delay = self.reconnect_delays[min(failures, len(self.reconnect_delays) - 1)]
                dropped = self.url
                self._node = (self._node + 1) % (1 + len(self.other_urls))
                logger.warning(
                    "Config stream for %s from %s dropped (%s); reconnecting to %s in %s s",
                    self.scope,
                    dropped,
                    error,
                    self.url,
                    delay,
                )
                failures += 1
                self._stop.wait(delay)

    @property
    def url(self) -> str:
        return (self.base_url, *self.other_urls)[self._node]

    # The stream --------------------------------------------------------------

    def _request(self, path: str, *, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method="POST" if data else "GET")
        for key, value in {**self._auth(), **(headers or {})}.items():
            request.add_header(key, value)
        return urllib.request.urlopen(request, timeout=60)

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def follow_stream(self) -> None:
        if self.seen_version is None:
            self.load_current()
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.seen_version)}
        query = f"?scope={urllib.parse.quote(self.scope)}&subscriber={urllib.parse.quote(self.name)}"
        parts = urllib.parse.urlsplit(self.url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        stream = self._stream = connection_class(parts.netloc, timeout=60)
        try:
            stream.request(
                "GET", parts.path.rstrip("/") + f"/config/stream{query}", headers={**headers, **self._auth()}
            )
            response = stream.getresponse()
            if response.status != 200:
                raise http.client.HTTPException(f"the stream answered {response.status} {response.reason}")
            for event in parse_events(response):
                if self._stop.is_set():
                    return
                if event.get("event") == "version":
                    self.handle_version(json.loads(event["data"]))
        finally:
            self._stream = None
            stream.close()
        raise ConnectionResetError("the server closed the stream")

    def load_current(self) -> None:
        with self._request(f"/api/config/{urllib.parse.quote(self.scope)}") as response:
            current = json.load(response)
        self.document = current["data"]
        self.seen_version = self.applied_version = current["version"]
        self.report(self.applied_version, ok=True)

    def handle_version(self, event: dict) -> None:
        version = event["version"]
        seen = self.seen_version or 0
        if version <= seen:
            return  # already handled (a replay overlapping what we had)
        if version != seen + 1:
            raise ValueError(f"missed versions {seen + 1}..{version - 1}")  # reconnect and replay
        changes = {change["path"]: {"old": change["old"], "new": change["new"]} for change in event["diff"]}
        try:
            if self.on_config_changed is not None:
                self.on_config_changed(changes)
        except Exception as error:  # the plugin keeps running on its last good version
            logger.exception("on_config_changed failed for %s version %s", self.scope, version)
            self.seen_version = version
            self.report(version, ok=False, error=f"{type(error).__name__}: {error}")
            return
        self.document, self.seen_version, self.applied_version = event["data"], version, version
        self.report(version, ok=True)

    def report(self, version: int, *, ok: bool, error: str = "") -> None:
        """Queued for the reporting thread: a node slow to take a report (up to the request's
        60 s) held the stream's thread, and with it the next versions."""
        if self._reporter is None:
            self._reporter = threading.Thread(
                target=self._send_reports, name=f"config-{self.scope}-reports", daemon=True
            )
            self._reporter.start()
        self._reports.put((version, ok, error))

    def _send_reports(self) -> None:
        while (report := self._reports.get()) is not None:
            self._send_report(*report)

    def _send_report(self, version: int, ok: bool, error: str) -> None:
        body = json.dumps({"subscriber": self.name, "version": version, "ok": ok, "error": error}).encode()
        try:
            with self._request(
                f"/api/config/{urllib.parse.quote(self.scope)}/ack",
                data=body,
                headers={"Content-Type": "application/json"},
            ):
                pass
        except (OSError, http.client.HTTPException) as problem:
            logger.warning("Could not report version %s of %s: %s", version, self.scope, problem)


def parse_events(stream):
    """Yields {"id", "event", "data"} dicts from an SSE byte stream."""
    event: dict = {}
    data: list[str] = []
    for raw in stream:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                event["data"] = "\n".join(data)
                yield event
            event, data = {}, []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "data":
            data.append(value)
        elif key in ("id", "event", "retry"):
            event[key] = value
