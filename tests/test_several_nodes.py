"""Two web nodes in front of one console: 50 subscribers spread over them, one node killed in
the middle of the saves; every subscriber goes on from the other and applies every version
once, in order. Real processes (`python -m zepix_admin.web`, what `serve` runs)."""

import json
import signal
import threading
import time
import urllib.request

import pytest

from config_app.client import ConfigSubscriber
from tests.helpers import free_port, installed, start_redis, stop_node, wait_for, web_node

pytestmark = pytest.mark.slow
SCOPE = "combined_v3"


def answers(url):
    try:
        with urllib.request.urlopen(f"{url}/login/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def config_api(url, token, method="GET", body=None, version=None):
    """The served app's answer for SCOPE's config: GET it, or PUT a document on ``version``."""
    request = urllib.request.Request(f"{url}/api/config/{SCOPE}", method=method, data=body)
    request.add_header("Authorization", f"Bearer {token}")
    if version is not None:
        request.add_header("If-Match", f'"{version}"')
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def save_lot(url, token, lot):
    current = config_api(url, token)
    document = {**current["data"], "max_lot_size": lot}
    return config_api(url, token, "PUT", json.dumps(document).encode(), current["version"])["version"]


def test_a_web_node_killed_under_50_subscribers_loses_none_of_their_versions(tmp_path):
    env, operator_token, viewer_token = installed(tmp_path)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    nodes = [web_node(env, port) for port in ports]
    subscribers = []
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        applied: dict[str, list[int]] = {}
        lock = threading.Lock()
        for n in range(50):
            home, other = (urls[0], urls[1]) if n % 2 == 0 else (urls[1], urls[0])
            name = f"bot-{n}"
            applied[name] = []

            def hook(changes, name=name):
                with lock:
                    applied[name].append(changes["max_lot_size"]["new"])

            subscriber = ConfigSubscriber(
                home, viewer_token, scope=SCOPE, name=name, on_config_changed=hook, other_urls=(other,)
            )
            subscriber.reconnect_delays = (0.2, 0.5, 1)
            subscriber.start()
            subscribers.append(subscriber)
        wait_for(lambda: all(s.seen_version == 1 for s in subscribers), "every subscriber to load version 1")
        time.sleep(0.5)  # their streams open

        assert save_lot(urls[1], operator_token, 0.2) == 2
        nodes[0].send_signal(signal.SIGKILL)  # node A goes away without a word, its 25 streams with it
        nodes[0].wait()
        for lot in (0.3, 0.4, 0.5):  # saved on node B while A's subscribers find their way to it
            save_lot(urls[1], operator_token, lot)

        wait_for(lambda: all(s.seen_version == 5 for s in subscribers), "every subscriber to reach version 5")
        assert all(lots == [0.2, 0.3, 0.4, 0.5] for lots in applied.values()), applied
        assert {s.url for s in subscribers} == {urls[1]}  # all on the node that is left
    finally:
        for subscriber in subscribers:
            subscriber.stop()
        for node in nodes:
            stop_node(node)


def test_web_nodes_that_share_no_folder_wake_each_other_through_redis(tmp_path, redis_url):
    import redis

    env, operator_token, viewer_token = installed(tmp_path, REDIS_URL=redis_url)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    # Each node its own temporary folder, so no datagram reaches the other; node B's is too long a
    # path for a socket at all (108 bytes): its streams must neither hang nor miss a version.
    folders = [tmp_path / "tmp-a", tmp_path / ("tmp-b-" + "x" * 80)]
    nodes = []
    for folder, port in zip(folders, ports, strict=True):
        folder.mkdir()
        nodes.append(web_node({**env, "TMPDIR": str(folder)}, port))
    seen: list[float] = []
    subscriber = ConfigSubscriber(
        urls[1], viewer_token, scope=SCOPE, name="far-bot", on_config_changed=lambda c: seen.append(time.monotonic())
    )
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        subscriber.start()
        wait_for(lambda: subscriber.seen_version == 1, "the subscriber to load version 1")
        client = redis.Redis.from_url(redis_url)
        # Node B's hub listens on the Redis channel (node A's hub starts with its first stream).
        wait_for(lambda: client.pubsub_numsub("zepix:config-versions")[0][1] == 1, "node B to listen on Redis")
        assert save_lot(urls[0], operator_token, 0.25) == 2  # saved on node A
        wait_for(lambda: subscriber.seen_version == 2, "the save to reach node B's subscriber")
        client.close()
    finally:
        subscriber.stop()
        for node in nodes:
            stop_node(node)


def test_a_redis_that_stops_answering_holds_up_one_save_and_loses_no_version(tmp_path):
    """Redis stopped without closing its connections (a host gone from the network): the node
    that saves waits for it once, then leaves the other node to find the versions by itself;
    each subscriber, on either node, applies every version."""
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    env, operator_token, viewer_token = installed(tmp_path / "install", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    log = tmp_path / "node-a.log"
    nodes = []
    for name, node_port in zip("ab", ports, strict=True):
        (tmp_path / f"tmp-{name}").mkdir()
        node_env = {**env, "TMPDIR": str(tmp_path / f"tmp-{name}")}  # no datagram from one to the other
        nodes.append(web_node(node_env, node_port, log=log if name == "a" else None))
    applied: dict[str, list] = {"near": [], "far": []}
    subscribers = [
        ConfigSubscriber(
            url, viewer_token, scope=SCOPE, name=name, on_config_changed=lambda c, n=name: applied[n].append(c)
        )
        for name, url in (("near", urls[0]), ("far", urls[1]))
    ]
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        for subscriber in subscribers:
            subscriber.start()
        wait_for(lambda: all(s.seen_version == 1 for s in subscribers), "both subscribers to load version 1")
        redis_server.send_signal(signal.SIGSTOP)
        for lot in (0.2, 0.3, 0.4):
            save_lot(urls[0], operator_token, lot)
        wait_for(lambda: all(s.seen_version == 4 for s in subscribers), "both subscribers to reach version 4")
        assert all([c["max_lot_size"]["new"] for c in changes] == [0.2, 0.3, 0.4] for changes in applied.values())
        assert log.read_text().count("Could not announce a config version through Redis") == 1
    finally:
        redis_server.send_signal(signal.SIGCONT)
        for subscriber in subscribers:
            subscriber.stop()
        for node in nodes:
            stop_node(node)
        redis_server.terminate()
        redis_server.wait()
