import contextlib
import http.cookiejar
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password-42"  # the first admin's (`boss`), made by `installed`
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def trade(ticket: int, **overrides) -> dict:
    """An open trade as the bot would save it."""
    values = {
        "mt5_ticket": ticket,
        "symbol": "EURUSD",
        "direction": "BUY",
        "lot_size": 0.1,
        "entry_price": 1.085,
        "sl_price": 1.083,
        "tp_price": 1.088,
        "entry_time": NOW - timedelta(hours=2),
        "signal_data": {"timeframe": "15m"},
    }
    values.update(overrides)
    return values


def closed_trade(ticket: int, profit: float, exit_time: datetime = NOW, **overrides) -> dict:
    return trade(
        ticket,
        status="CLOSED",
        exit_time=exit_time,
        exit_price=1.087,
        profit_pips=profit / 1.0,
        profit_dollars=profit,
        close_reason="TP" if profit > 0 else "SL",
        **overrides,
    )


def run_async(coroutine_function):
    """``async_to_sync(coroutine_function)()``, also in a test worker that ran a browser test
    before: Playwright's session (kept for the worker's life) leaves its event loop set as this
    thread's running loop between its calls, and asgiref then refuses to start (a test after
    a browser file on the same worker failed with "You cannot use AsyncToSync in the same
    thread as an async event loop"). Playwright's loop runs only inside its own calls: it is
    set aside meanwhile. The coroutine's database work still comes back to this thread."""
    import asyncio

    from asgiref.sync import async_to_sync

    playwrights_loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        return async_to_sync(coroutine_function)()
    finally:
        asyncio._set_running_loop(playwrights_loop)


@contextlib.contextmanager
def asked_for_and_still_queued(name: str, task, *args):
    """A job asked for by hand (``tasks.MANUAL_SYNC`` or ``MANUAL_BACKUP``), its task in the queue
    and not yet run: the test settings run what is queued at once, so it is put there by hand."""
    from django.utils import timezone
    from huey.contrib.djhuey import HUEY

    from sync_app.models import JobState

    queued = task.s(*args)
    HUEY.storage.enqueue(HUEY.serialize_task(queued), queued.priority)
    JobState.objects.create(name=name, last_started_at=timezone.now(), task_id=queued.id)
    try:
        yield
    finally:
        HUEY.storage.flush_queue()  # its task lost: the marker counts for nothing


def manage(*args: str, env: dict, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run manage.py in a real child process with its own data and config folders."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def put_config(url: str, token: str, scope: str, document: dict, version: int) -> tuple[int, dict | str]:
    """PUT a document on ``version`` of ``scope`` through the served API: (status, answer)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}/api/config/{scope}", method="PUT", data=json.dumps(document).encode())
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("If-Match", f'"{version}"')
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read().decode())


# Production settings on loopback: an outage's 503 is the production error handler's (debug mode
# shows Django's technical 500 page instead).
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-production-key-0123456789",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
}


def fresh_env(tmp_path: Path, **extra) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEPIX_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="zepix_admin.settings",
        ZEPIX_DATA_DIR=str(tmp_path / "data"),
        ZEPIX_CONFIG_DIR=str(tmp_path / "config"),
        # One collection of the static files for all the installs of a test worker: each would
        # compress the same 500 files again (1-2 s of every new install's setup).
        ZEPIX_STATIC_ROOT=str(ROOT / ".cache" / "test-static" / os.environ.get("PYTEST_XDIST_WORKER", "main")),
        DJANGO_DEBUG="1",
        DJANGO_SUPERUSER_USERNAME="boss",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    env.update(extra)
    return env


_installed: dict[str, tuple[Path, str, str]] = {}


def installed(tmp_path: Path, **extra) -> tuple[dict, str, str]:
    """A copy of a fresh install (`setup --no-demo`, an operator and a viewer token) in tmp_path;
    returns (env, operator token, viewer token). The install is made once per test run: a
    `setup` costs 3.5 s and every server test needs one."""
    import atexit
    import shutil
    import tempfile

    if "template" not in _installed:
        folder = Path(tempfile.mkdtemp(prefix="zepix-installed-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        env = fresh_env(folder)
        prepared = manage("setup", "--no-demo", env=env)
        assert prepared.returncode == 0, prepared.stderr
        tokens = [
            manage("create_token", f"{role}-bot", "--role", role, env=env, check=True).stdout.strip().splitlines()[-1]
            for role in ("operator", "viewer")
        ]
        _installed["template"] = (folder, *tokens)
    folder, operator_token, viewer_token = _installed["template"]
    for name in ("data", "config"):
        shutil.copytree(folder / name, tmp_path / name, ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock"))
    return fresh_env(tmp_path, **extra), operator_token, viewer_token


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    """A private redis-server on this port (no persistence), once it answers."""
    import time

    import redis

    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    client, deadline = redis.Redis(port=port), time.monotonic() + 10
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class Postgres:
    """A throw-away PostgreSQL cluster from the machine's binaries: initdb into a temporary
    folder, a free port on loopback, trust authentication, no fsync. PostgreSQL refuses to run
    as root: as root, the folder belongs to the postgres user and the binaries run as it."""

    def __init__(self):
        import os
        import shutil
        import tempfile

        if not (POSTGRES_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is missing: run `make postgresql` (make test does).")
        self.folder = Path(tempfile.mkdtemp(prefix="zepix-pg-"))
        self.as_root = os.getuid() == 0
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self.port = free_port()
        self.run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()

    def run(self, program: str, *args: str) -> None:
        command = [str(POSTGRES_BIN / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        # pg_ctl gives up waiting after 60 s by itself; the timeout is for anything else that hangs.
        subprocess.run(command, check=True, capture_output=True, cwd=self.folder, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        data, log = str(self.folder / "data"), str(self.folder / "log")
        self.run("pg_ctl", "start", "-w", "-D", data, "-l", log, "-o", options)

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.folder / "data"))

    def hang(self, hung: bool = True) -> None:
        """Every process of the cluster stopped (SIGSTOP), or going again: a server that keeps its
        connections and answers nothing, as one on a hung disk or behind a cut network."""
        import os
        import signal

        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        for pid in (postmaster, *map(int, children)):
            os.kill(pid, signal.SIGSTOP if hung else signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        import shutil

        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def web_node(env: dict, port: int, *, quiet: bool = True, log: Path | None = None) -> subprocess.Popen:
    """A web node: `python -m zepix_admin.web`, what `serve` runs (its logs hidden when quiet,
    written to ``log`` when given)."""
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL if quiet else None
        return subprocess.Popen(
            [sys.executable, "-m", "zepix_admin.web", "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )


def start_consumer(env: dict, **output) -> subprocess.Popen:
    """A Huey consumer: `manage.py run_huey`, what `serve` runs beside the web server (its output
    hidden unless ``output`` says where it goes: ``stderr=subprocess.PIPE, text=True``)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "run_huey"],
        env=env,
        cwd=ROOT,
        **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **output},
    )


def stop_node(node: subprocess.Popen) -> None:
    """A web node stopped as Ctrl-C stops it (killed if it has not stopped in 10 s); nothing
    for one that has ended already."""
    node.send_signal(signal.SIGINT)
    try:
        node.wait(timeout=10)
    except subprocess.TimeoutExpired:
        node.kill()


class ForgetfulProxy:
    """A TCP proxy on loopback to ``target_port``, standing for a firewall or NAT between two
    machines. ``forget()``: every connection made so far stays open and silent for good (nothing
    is forwarded, nothing reset: the peers' kernels see a live connection), as when such a box
    loses its table or a host vanishes; connections made after it are forwarded again."""

    def __init__(self, target_port: int):
        import socket
        import threading

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.era = 0
        self.forwarding = threading.Lock()  # forget() waits for a forwarding in progress
        self.sockets: list = []  # every socket, kept open until close()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._forward, args=(source, target, self.era), daemon=True).start()

    def _forward(self, source, target, era: int) -> None:
        import select

        while self.era == era:
            try:
                if not select.select([source], [], [], 0.05)[0]:
                    continue
                with self.forwarding:
                    if self.era != era:
                        return
                    data = source.recv(65536)
                    if not data:
                        target.close()
                        return
                    target.sendall(data)
            except (OSError, ValueError):  # closed by the other direction's end: ValueError from select
                return

    def forget(self) -> None:
        with self.forwarding:
            self.era += 1

    def close(self) -> None:
        self.listener.close()
        for connection in self.sockets:
            connection.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A real uvicorn (ASGI) server, plus optionally the Huey consumer, on a fresh data folder."""

    def __init__(self, tmp_path: Path, *, workers: int = 1, **env):
        self.env, self.token, self.viewer_token = installed(tmp_path, **env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.start()

    def start(self) -> None:
        import time
        import urllib.request

        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zepix_admin.web",  # what `manage.py serve` runs
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/login/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("uvicorn did not start")

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return manage(*args, env=self.env)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(env, *args, ok=True):
    """`manage.py` with ``args``, asserted to succeed (``ok``), to fail (False) or either (None)."""
    result = manage(*args, env=env)
    if ok is not None:
        assert (result.returncode == 0) == ok, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def central(data, sql, *params):
    """The rows ``sql`` reads from the central SQLite file under ``data``, as the operator's sqlite3 would."""
    with contextlib.closing(sqlite3.connect(data / "central.sqlite3")) as connection:
        return connection.execute(sql, params).fetchall()


def corrupt(path: Path) -> None:
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    with open(path, "r+b") as handle:
        handle.write(b"this is not a database at all, sorry")


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def heartbeat_pid(data):
    rows = central(data, "SELECT pid FROM zepix_admin_heartbeat WHERE name = 'huey'")
    return rows[0][0] if rows else None


def bearer(server, token, path, data=None):
    """A served console's answer (status, text) to a request with ``token``: a GET, or a POST of ``data``."""
    request = urllib.request.Request(server.url + path, data=data, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Served:
    """`manage.py serve`: uvicorn and the supervised Huey consumer, as `make run` starts them."""

    def __init__(self, env):
        self.env, self.port = env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        wait_for(lambda: self.status("/login/") == 200, "the server to answer")

    def status(self, path):
        return self.get(path)[0]

    def get(self, path, timeout=5.0):
        try:
            with self.opener.open(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None, ""

    def log_in(self, username="boss", password=PASSWORD, opener=None) -> int:
        """Signs in (with this browser's cookies, or ``opener``'s); returns the answer's status (a
        wrong password: 200, the form again; locked out: 429)."""
        opener = opener or self.opener
        with opener.open(self.url + "/login/", timeout=5) as response:
            page = response.read().decode()
        token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password})
        request = urllib.request.Request(
            self.url + "/login/", data=form.encode(), headers={"Referer": self.url + "/login/"}
        )
        try:
            with opener.open(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            error.close()
            return error.code

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ask_for_a_sync(url, token) -> str:
    """What "Run sync now" answers at ``url`` (the sync page's HTMX fragment, with its notice)."""
    request = urllib.request.Request(
        url + "/sync/run", data=b"", headers={"Authorization": f"Bearer {token}", "HX-Request": "true"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@contextlib.contextmanager
def webhook_server(answer_after: float = 0.0):
    """A real HTTP server on loopback that records what the alert webhook posts, answering each
    post ``answer_after`` seconds late: (url, posted). Alerts are posted by a thread of the
    process's own: ``posted()`` is what reached it once this process's queued posts are made."""
    import http.server
    import json
    import threading
    import time

    from zepix_admin.core import alerts

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            time.sleep(answer_after)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    def posted():
        alerts.wait_for_posts()
        return received

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    # A short poll: shutdown() waits for the loop's next look (half a second by default).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", posted
    finally:
        server.shutdown()
        server.server_close()
