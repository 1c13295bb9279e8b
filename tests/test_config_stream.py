"""The SSE stream and the Python subscriber, against a real uvicorn server on loopback."""

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from config_app.client import ConfigSubscriber, parse_events
from config_app.stream import wake_folder
from tests.helpers import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's tests (a uvicorn start costs a second or two): each test counts
    versions from the one it found, and names its own subscriber."""
    running = Server(tmp_path_factory.mktemp("stream"))
    yield running
    running.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, for a test that stops it."""
    running = Server(tmp_path)
    yield running
    running.stop()


def current_version(server, scope="combined_v3"):
    return api(server, "GET", f"/api/config/{scope}")["version"]


def subscriber_named(server, name):
    subscribers = api(server, "GET", "/api/config/combined_v3/subscribers")["subscribers"]
    return next(subscriber for subscriber in subscribers if subscriber["name"] == name)


def api(server, method, path, body=None, version=None):
    request = urllib.request.Request(
        server.url + path, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    request.add_header("Authorization", f"Bearer {server.token}")
    if version is not None:
        request.add_header("If-Match", f'"{version}"')
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def save_lot(server, lot):
    current = api(server, "GET", "/api/config/combined_v3")
    return api(server, "PUT", "/api/config/combined_v3", {**current["data"], "max_lot_size": lot}, current["version"])


def open_stream(server, scope="combined_v3", last_event_id=None):
    query = f"?scope={scope}" if scope else ""
    request = urllib.request.Request(f"{server.url}/config/stream{query}")
    request.add_header("Authorization", f"Bearer {server.viewer_token}")
    if last_event_id is not None:
        request.add_header("Last-Event-ID", str(last_event_id))
    response = urllib.request.urlopen(request, timeout=10)
    return response, parse_events(response)


def next_versions(events, count):
    found = []
    for event in events:
        if event.get("event") == "version":
            found.append(event)
            if len(found) == count:
                return found
    return found


def test_a_reconnect_with_last_event_id_replays_exactly_the_missed_versions_then_live_ones(server):
    start = current_version(server)
    for lot in (0.2, 0.3, 0.4, 0.5):  # versions start + 1 .. start + 4
        save_lot(server, lot)
    # The per-scope stream numbers events by version; the all-scopes stream by change (below).
    response, events = open_stream(server, last_event_id=start + 1)
    # What a proxy in front must see to pass each event on at once, not buffered.
    assert response.headers["Content-Type"] == "text/event-stream"
    assert (response.headers["Cache-Control"], response.headers["X-Accel-Buffering"]) == ("no-cache", "no")
    replayed = next_versions(events, 3)
    assert [int(e["id"]) for e in replayed] == [start + 2, start + 3, start + 4]
    data = json.loads(replayed[0]["data"])
    assert (data["scope"], data["version"], data["author"]) == ("combined_v3", start + 2, "token:operator-bot")
    assert data["diff"] == [{"path": "max_lot_size", "old": 0.2, "new": 0.3, "change": "changed"}]
    assert data["data"]["max_lot_size"] == 0.3
    threading.Timer(0.3, save_lot, args=(server, 0.6)).start()
    [live] = next_versions(events, 1)
    assert int(live["id"]) == start + 5
    response.close()
    # The live event (the saving process hands it to its streams) is the one a reconnect replays.
    response, events = open_stream(server, last_event_id=start + 4)
    assert next_versions(events, 1) == [live]
    response.close()


def test_the_all_scopes_stream_numbers_events_by_change(server):
    response, events = open_stream(server, scope=None, last_event_id=0)
    initial = next_versions(events, 3)  # version 1 of each of the three scopes
    assert sorted(json.loads(e["data"])["scope"] for e in initial) == ["combined_v3", "global", "price_action_v6"]
    assert [int(e["id"]) for e in initial] == sorted(int(e["id"]) for e in initial)
    # A live version, on a stream of its scope and on the stream of every scope at once: each
    # numbers it its own way (the server formats each event once for all streams of a kind).
    response.close()
    scoped_response, scoped_events = open_stream(server)
    all_response, all_events = open_stream(server, scope=None)
    threading.Timer(0.3, save_lot, args=(server, 0.7)).start()
    [on_scope] = next_versions(scoped_events, 1)
    [on_all] = next_versions(all_events, 1)
    assert json.loads(on_scope["data"]) == json.loads(on_all["data"])
    assert int(on_scope["id"]) == json.loads(on_scope["data"])["version"]
    assert int(on_all["id"]) == json.loads(on_all["data"])["id"] != int(on_scope["id"])
    scoped_response.close()
    all_response.close()


def test_unknown_scopes_and_anonymous_subscribers_are_refused(server):
    for url, status in ((f"{server.url}/config/stream?scope=nosuch", 404), (f"{server.url}/config/stream", 401)):
        request = urllib.request.Request(url)
        if status == 404:
            request.add_header("Authorization", f"Bearer {server.viewer_token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()
        assert refused.value.code == status


def threads_of(process) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def test_more_streams_than_the_worker_keeps_threads_for_all_get_the_version_and_the_threads_go(own_server):
    """Each request has a thread of its own for as long as it runs (a stream: as long as it is
    open), kept afterwards for the next request; the worker keeps at most 16 of them idle."""
    before = threads_of(own_server.process)
    streams = [open_stream(own_server) for _ in range(30)]
    assert threads_of(own_server.process) >= 1 + 30  # the event loop's, and one for each stream
    threading.Timer(0.3, save_lot, args=(own_server, 0.65)).start()
    for response, events in streams:
        [got] = next_versions(events, 1)
        assert json.loads(got["data"])["data"]["max_lot_size"] == 0.65
        response.close()
    deadline = time.monotonic() + 10
    while threads_of(own_server.process) > before + 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads_of(own_server.process) <= before + 16
    assert current_version(own_server) >= 2  # and the worker answers as before


def test_a_save_in_another_process_reaches_subscribers_on_every_worker(tmp_path):
    server = Server(tmp_path, workers=2)
    try:
        streams = [open_stream(server) for _ in range(8)]
        time.sleep(0.3)
        # Each worker's hub waits on a socket of its own to be woken (no poll loop)...
        sockets = list(wake_folder(Path(server.env["ZEPIX_DATA_DIR"])).glob("*.sock"))
        assert 1 <= len(sockets) <= 2
        # ...and a third process's save wakes them through it.
        result = server.manage("config", "set", "combined_v3", "max_lot_size", "0.75")
        assert result.returncode == 0, result.stderr
        for response, events in streams:
            got = next_versions(events, 1)
            assert json.loads(got[0]["data"])["data"]["max_lot_size"] == 0.75
            response.close()
    finally:
        server.stop()
    # A socket left by a process that is gone is removed by the next save's wake-up.
    assert server.manage("config", "set", "combined_v3", "max_lot_size", "0.8").returncode == 0
    assert not any(sock.exists() for sock in sockets)


def test_the_subscriber_applies_versions_in_order_reports_failures_and_keeps_its_last_good_version(server):
    seen = []

    def on_config_changed(changes):
        lot = changes["max_lot_size"]["new"]
        if lot == 0.13:
            raise ValueError("refusing 0.13")
        seen.append(lot)

    subscriber = ConfigSubscriber(
        server.url, server.token, scope="combined_v3", name="combined_v3-live", on_config_changed=on_config_changed
    )
    start = current_version(server)
    thread = subscriber.start()
    try:
        assert wait(lambda: subscriber.applied_version == start)
        save_lot(server, 0.11)
        save_lot(server, 0.12)
        assert wait(lambda: subscriber.applied_version == start + 2)
        assert seen == [0.11, 0.12]
        save_lot(server, 0.13)
        assert wait(lambda: subscriber.seen_version == start + 3)
        assert subscriber.applied_version == start + 2 and subscriber.document["max_lot_size"] == 0.12
        assert wait(lambda: subscriber_named(server, "combined_v3-live")["state"] == "failed")
        rollout = subscriber_named(server, "combined_v3-live")
        assert (rollout["applied_version"], rollout["connected"]) == (start + 2, True)
        assert "refusing 0.13" in rollout["error"]
        save_lot(server, 0.14)
        assert wait(lambda: subscriber.applied_version == start + 4)
        assert wait(lambda: subscriber_named(server, "combined_v3-live")["state"] == "current")
    finally:
        subscriber.stop()
    thread.join(timeout=5)  # a plugin shutting down is not held up by its config stream
    assert not thread.is_alive()


def test_the_subscriber_resumes_after_the_server_went_away(own_server):
    server = own_server
    subscriber = ConfigSubscriber(
        server.url, server.token, scope="combined_v3", name="resumer", reconnect_delays=(0.2,)
    )
    subscriber.start()
    try:
        assert wait(lambda: subscriber.applied_version == 1)
        server.stop()
        assert server.manage("config", "set", "combined_v3", "max_lot_size", "0.21").returncode == 0
        assert server.manage("config", "set", "combined_v3", "max_lot_size", "0.22").returncode == 0
        server.start()
        assert wait(lambda: subscriber.applied_version == 3, timeout=15)
        assert subscriber.document["max_lot_size"] == 0.22
    finally:
        subscriber.stop()


def wait(condition, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (OSError, IndexError, KeyError):
            pass
        time.sleep(0.05)
    return False


def test_watch_config_prints_each_version_as_it_arrives(server):
    import subprocess
    import sys

    from tests.helpers import ROOT

    watcher = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "watch_config",
            "--scope",
            "combined_v3",
            "--url",
            server.url,
            "--token",
            server.viewer_token,
        ],
        env=server.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "Following combined_v3" in watcher.stdout.readline()
        time.sleep(1.5)
        before = api(server, "GET", "/api/config/combined_v3")
        save_lot(server, 0.42)
        printed = json.loads(watcher.stdout.readline())
        change = {"max_lot_size": {"old": before["data"]["max_lot_size"], "new": 0.42}}
        assert printed == {"scope": "combined_v3", "version": before["version"] + 1, "changes": change}
    finally:
        watcher.terminate()
        watcher.wait()
        watcher.stdout.close()
