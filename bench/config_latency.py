"""Save-to-delivery latency of config versions to 100 SSE subscribers on a real uvicorn
server, against a bare asyncio server pushing to as many loopback clients in the same run,
and outside-edit-to-delivery latency through the Huey consumer's file watcher.

    .venv/bin/python bench/config_latency.py [--subscribers 100] [--saves 30] [--edits 10]

The console is served with production settings (DJANGO_DEBUG=0), as operators run it; ``--debug``
serves it in debug mode, as the runs before 2026-11-27 did.

Several machines: ``--nodes 2`` serves the same install from two uvicorn processes that share
no temporary folder (so no datagram wakes one from the other, as on two machines), the
subscribers spread over both and every save made on the first; ``--postgres`` puts the central
database on a throw-away PostgreSQL cluster (the nodes wake each other through NOTIFY) and
``--redis`` starts a private redis-server (through its pub/sub).

    .venv/bin/python bench/config_latency.py --nodes 2 --postgres
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _django  # noqa: E402

from tests.helpers import free_port, fresh_env, manage, start_consumer, start_redis, web_node  # noqa: E402

BARE_SERVER = """
import asyncio, sys
clients = []
async def handle(reader, writer):
    line = await reader.readline()
    if line.startswith(b"push"):
        for client in clients:
            client.write(line)
        writer.close()
        return
    clients.append(writer)
    await reader.read()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


# What operators run (DJANGO_DEBUG=0), over plain HTTP on loopback as a proxy would reach it.
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-" + "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
}


def percentiles(samples_ms):
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms  max {ordered[-1]:6.2f} ms  (n={len(ordered)})"


async def sse_client(port, token, scope, arrivals, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /config/stream?scope={scope} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    ready.release()
    while True:
        message = await reader.readuntil(b"\n\n")  # one event (the response's chunk framing: 2 lines)
        if b"event: version" in message:
            version = int(message.split(b"id: ", 1)[1].split(b"\n", 1)[0])  # a scope's stream: its version
            arrivals.setdefault(version, []).append(time.perf_counter())


async def bare_client(port, arrivals, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\n")
    await writer.drain()
    ready.release()
    while True:
        line = await reader.readline()
        if not line:
            return
        arrivals.setdefault(int(line.split()[1]), []).append(time.perf_counter())


async def wait_until(condition, timeout=10):
    deadline = time.perf_counter() + timeout
    while not condition() and time.perf_counter() < deadline:
        await asyncio.sleep(0.001)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux): what a save costs the web nodes,
    steadier than a wall-clock time on a machine shared with others."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def put(port, path, token, document, version):
    """The save, sent from the event loop that times the arrivals, as the bare push is. (Sent
    with urllib from a thread of this process, its answer competed with the arrivals for the
    interpreter: an arrival seen up to 6 ms after it was sent.)"""
    body = json.dumps(document).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f'If-Match: "{version}"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n'
            "Connection: close\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    status, _, answer = (await reader.read()).partition(b"\r\n")
    writer.close()
    assert b" 200 " in status, status + answer
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


async def main(args):
    folder = Path(tempfile.mkdtemp(prefix="zepix-bench-"))
    with contextlib.ExitStack() as engines:
        extra = {}
        if args.postgres:
            engines.enter_context(_django.central_on_postgresql())  # DATABASE_URL, inherited by fresh_env
        if args.redis:
            redis_port = free_port()
            redis_server = start_redis(redis_port, folder)
            engines.callback(redis_server.wait)
            engines.callback(redis_server.terminate)
            extra["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        if not args.debug:
            extra.update(PRODUCTION)
        await measure(args, fresh_env(folder, ZEPIX_CONFIG_DEBOUNCE_MS=str(args.debounce_ms), **extra))


def separate_node(env, port, temporary_folder):
    """A node with a temporary folder of its own: no datagram from the other node reaches it."""
    temporary_folder.mkdir()
    return web_node({**env, "TMPDIR": str(temporary_folder)}, port, quiet=False)


async def measure(args, env):
    assert manage("setup", "--no-demo", env=env).returncode == 0
    token = manage("create_token", "bench", "--role", "operator", env=env, check=True).stdout.strip().splitlines()[-1]
    ports, bare_port = [free_port() for _ in range(args.nodes)], free_port()
    port = ports[0]  # where every save is made
    separate = args.nodes > 1
    folder = Path(env["ZEPIX_DATA_DIR"]).parent
    processes = [
        *(
            separate_node(env, p, folder / f"tmp-{n}") if separate else web_node(env, p, quiet=False)
            for n, p in enumerate(ports)
        ),
        start_consumer(env),
        subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)]),
    ]
    try:
        await asyncio.sleep(3)
        scope, url = "combined_v3", f"http://127.0.0.1:{port}/api/config/combined_v3"
        arrivals, ready = {}, asyncio.Semaphore(0)
        tasks = [
            asyncio.create_task(sse_client(ports[n % args.nodes], token, scope, arrivals, ready))
            for n in range(args.subscribers)
        ]
        for _ in tasks:
            await ready.acquire()
        await asyncio.sleep(1)
        current = json.load(
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}))
        )
        document, version = current["data"], current["version"]
        bare_arrivals, bare_ready = {}, asyncio.Semaphore(0)
        bare_tasks = [
            asyncio.create_task(bare_client(bare_port, bare_arrivals, bare_ready)) for _ in range(args.subscribers)
        ]
        for _ in bare_tasks:
            await bare_ready.acquire()
        await asyncio.sleep(0.5)
        # A save, then a bare push, in turn: this machine's speed moves within a minute, and
        # measured one after the other the two series met different machines.
        save_latencies, bare_latencies = [], []
        nodes = processes[: args.nodes]
        cpu_before = sum(cpu_seconds(node.pid) for node in nodes)
        for n in range(args.saves):
            document = {**document, "max_lot_size": round(0.5 + n / 100, 2)}
            started = time.perf_counter()
            saved = await put(port, f"/api/config/{scope}", token, document, version)
            version = saved["version"]
            await wait_until(lambda v=version: len(arrivals.get(v, [])) >= args.subscribers)
            save_latencies += [(t - started) * 1000 for t in arrivals.get(version, [])]
            await asyncio.sleep(0.1)

            started = time.perf_counter()
            _, writer = await asyncio.open_connection("127.0.0.1", bare_port)
            writer.write(f"push {n}\n".encode())
            await writer.drain()
            writer.close()
            await wait_until(lambda n=n: len(bare_arrivals.get(n, [])) >= args.subscribers)
            bare_latencies += [(t - started) * 1000 for t in bare_arrivals.get(n, [])]
            await asyncio.sleep(0.1)
        cpu_per_save_ms = (sum(cpu_seconds(node.pid) for node in nodes) - cpu_before) * 1000 / args.saves
        where = "uvicorn" if args.nodes == 1 else f"{args.nodes} uvicorn nodes (saved on the first)"
        via = " and ".join(name for name, used in (("PostgreSQL", args.postgres), ("Redis", args.redis)) if used)
        print(
            f"Save (HTTP PUT) to delivery, {args.subscribers} SSE subscribers on {where}"
            f"{f' with {via}' if via else ''}: {percentiles(save_latencies)}"
        )
        print(
            f"Web nodes' CPU time per save (the save and its {args.subscribers} deliveries): {cpu_per_save_ms:.1f} ms"
        )
        print(
            f"Baseline, bare asyncio server pushing a line to {args.subscribers} clients:    "
            f"{percentiles(bare_latencies)}"
        )

        config_file = Path(env["ZEPIX_CONFIG_DIR"]) / "plugins" / "combined_v3.json"
        edit_latencies = []
        for n in range(args.edits):
            document = {**document, "max_open_trades": 100 + n}
            temporary = config_file.with_name(".bench.tmp")
            temporary.write_text(json.dumps(document))
            started = time.perf_counter()
            os.replace(temporary, config_file)
            version += 1
            await wait_until(lambda v=version: len(arrivals.get(v, [])) >= args.subscribers, timeout=5)
            edit_latencies += [(t - started) * 1000 - args.debounce_ms for t in arrivals.get(version, [])]
            await asyncio.sleep(0.3)
        if edit_latencies:
            print(
                f"Outside edit (atomic rename) to delivery, beyond the {args.debounce_ms} ms debounce: "
                f"{percentiles(edit_latencies)}"
            )
        for task in tasks + bare_tasks:
            task.cancel()
    finally:
        for process in processes:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--debounce-ms", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--debug", action="store_true", help="serve with DJANGO_DEBUG=1, as the runs before 2026-11-27")
    asyncio.run(main(parser.parse_args()))
