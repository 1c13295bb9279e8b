import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import close_old_connections
from django.utils import timezone

from zepix_admin.core import home, worker
from zepix_admin.core.alerts import raise_alert, resolve_alert
from zepix_admin.core.commands import ZepixCommand

WORKER_SUBJECT = "huey consumer"
RESTART_DELAYS = (1, 2, 5, 10, 30)  # seconds before each restart of a consumer that keeps dying
STEADY_SECONDS = 60  # a consumer up this long starts the delays over
WATCH_SECONDS = 15  # how often the heartbeat is looked at
STARTING_WATCH_SECONDS = 1  # ... until a consumer just (re)started first beats


class Command(ZepixCommand):
    help = (
        "Serve the dashboard through uvicorn (ASGI) together with the Huey consumer, in the foreground. "
        "A consumer that dies is restarted (the web server keeps serving meanwhile) and alerted; Ctrl-C "
        "stops both; if the web server dies, the consumer is stopped too."
    )
    requires_system_checks = "__all__"  # see ZepixCommand

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.SERVE_HOST)
        parser.add_argument("--port", type=int, default=settings.SERVE_PORT)
        parser.add_argument("--workers", type=int, default=settings.SERVE_WORKERS)

    def handle(self, *args, host, port, workers, **options):
        # Before anything is started: a central database that cannot be read (missing, damaged,
        # a full disk) stops `serve` here, with nothing left running. It stopped it after the
        # web server and the consumer had started, and both ran on, orphaned.
        admins = list(get_user_model().objects.filter(is_superuser=True).values_list("username", flat=True)[:3])
        home.check()  # and folders that are not the console's
        children: list[subprocess.Popen] = []
        try:
            exit_code = self.serve(host, port, workers, admins, children)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        sys.exit(exit_code)

    def serve(self, host, port, workers, admins: list[str], children: list[subprocess.Popen]) -> int:
        """Runs the web server and a supervised consumer (each put in ``children`` as it starts)
        until Ctrl-C or the web server's end; returns the exit status."""
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zepix_admin.web",  # uvicorn, with TCP_NODELAY on its socket
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            cwd=settings.BASE_DIR,
        )
        children.append(web)
        consumer = self.start_consumer()
        children.append(consumer)
        self.print_welcome(host, port, admins)
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code, restarts, started_at, next_watch, restart_at = 0, -1, time.monotonic(), 0.0, None
        beats_since = timezone.now()
        while not stopping:
            if web.poll() is not None:
                self.stderr.write(f"The web server exited with status {web.returncode}; stopping.")
                exit_code, stopping = web.returncode or 1, True
                break
            if restart_at is None and consumer.poll() is not None:
                restarts = 0 if time.monotonic() - started_at > STEADY_SECONDS else restarts + 1
                restart_at = time.monotonic() + self.consumer_died(consumer.returncode, restarts)
            if restart_at is not None and time.monotonic() >= restart_at:
                children.remove(consumer)  # ended: nothing to stop (kept, the list grew with every restart)
                consumer, started_at, restart_at = self.start_consumer(), time.monotonic(), None
                children.append(consumer)
                beats_since, next_watch = timezone.now(), time.monotonic() + STARTING_WATCH_SECONDS
            if time.monotonic() >= next_watch:
                beating = self.watch_heartbeat(started_at, beats_since)
                # A restarted consumer's first beat resolves its alert within a second (it was
                # up to WATCH_SECONDS later); a consumer that does not beat is looked at as usual.
                starting = not beating and time.monotonic() - started_at < worker.STALE_AFTER.total_seconds()
                next_watch = time.monotonic() + (STARTING_WATCH_SECONDS if starting else WATCH_SECONDS)
            time.sleep(0.2)
        return exit_code

    def start_consumer(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_huey"], cwd=settings.BASE_DIR
        )

    def consumer_died(self, status: int, restarts: int) -> int:
        """Say so, raise the worker alert; returns how long to wait before the restart."""
        delay = RESTART_DELAYS[min(restarts, len(RESTART_DELAYS) - 1)]
        message = (
            f"The Huey consumer exited with status {status}; restarting it in {delay} s (the web server keeps serving)."
        )
        self.stderr.write(message)
        self.quietly(raise_alert, "worker", WORKER_SUBJECT, message)
        return delay

    def watch_heartbeat(self, started_at: float, beats_since) -> bool:
        """Resolve the worker alert once the consumer beats again; raise it when it stops
        beating while alive. Only a beat since ``beats_since`` (the consumer's last start)
        counts: the beat a killed consumer left stays fresh for STALE_AFTER, and resolved the
        alert of its death before the restarted one had started, or when it never did.
        Returns whether the consumer beats."""
        state = self.quietly(worker.state)
        if state is None:
            return False
        beating = state.up and state.last_beat is not None and state.last_beat >= beats_since
        if beating:
            self.quietly(resolve_alert, "worker", WORKER_SUBJECT)
        elif time.monotonic() - started_at > worker.STALE_AFTER.total_seconds():
            self.quietly(raise_alert, "worker", WORKER_SUBJECT, f"The {state.text}.", level="CRITICAL")
        return beating

    def quietly(self, function, *args, **kwargs):
        """The supervisor outlives a central database that is briefly unavailable."""
        try:
            close_old_connections()
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - reported, and the supervisor goes on
            self.stderr.write(f"Could not record the worker's state: {error}")
            return None

    def print_welcome(self, host, port, admins: list[str]):
        self.stdout.write(self.style.SUCCESS(f"\nZepix Admin: http://{host}:{port}/"))
        if admins:
            self.stdout.write(
                f"Log in as {', '.join(admins)} (the password was printed by the first setup, or "
                "set with DJANGO_SUPERUSER_PASSWORD; change it with "
                "`python manage.py changepassword <user>`)."
            )
        if settings.DEBUG:
            self.stdout.write(
                self.style.WARNING(
                    "Serving in DEBUG mode: error pages show code and local variables. Fine on this machine only; "
                    "production runs with DJANGO_DEBUG=0 and DJANGO_SECRET_KEY (see README, Production)."
                )
            )
        self.stdout.write("Press Ctrl-C to stop the web server and the Huey consumer.\n")
