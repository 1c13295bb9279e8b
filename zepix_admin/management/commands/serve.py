import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the dashboard through uvicorn (ASGI) together with the Huey consumer, in the foreground. "
        "Ctrl-C stops both; if either one dies, the other is stopped too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))

    def handle(self, *args, host, port, workers, **options):
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "web": [sys.executable, "-m", "uvicorn", "zepix_admin.asgi:application", "--host", host,
                    "--port", str(port), "--workers", str(workers), "--no-access-log",
                    # open event streams would otherwise hold a shutdown forever
                    "--timeout-graceful-shutdown", "3"],
            "huey": [sys.executable, manage, "run_huey"],
        }  # fmt: skip
        children = {name: subprocess.Popen(command, cwd=settings.BASE_DIR) for name, command in commands.items()}
        self.print_welcome(host, port)
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with status {child.returncode}; stopping.")
                    exit_code, stopping = child.returncode or 1, True
            time.sleep(0.2)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children.values():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(exit_code)

    def print_welcome(self, host, port):
        admins = list(get_user_model().objects.filter(is_superuser=True).values_list("username", flat=True)[:3])
        self.stdout.write(self.style.SUCCESS(f"\nZepix Admin: http://{host}:{port}/"))
        if admins:
            self.stdout.write(f"Log in as {', '.join(admins)} (the password was printed by the first setup, or "
                              "set with DJANGO_SUPERUSER_PASSWORD; change it with "
                              "`python manage.py changepassword <user>`).")  # fmt: skip
        self.stdout.write("Press Ctrl-C to stop the web server and the Huey consumer.\n")
