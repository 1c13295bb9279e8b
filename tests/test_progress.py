"""Long commands show a progress bar (rate, time left) on a terminal and stay line-oriented
when piped, as the worker and scripts read them. Real manage.py processes, a real pseudo-terminal."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, installed, manage

pytestmark = pytest.mark.slow


def on_a_terminal(*args: str, env: dict) -> tuple[int, str]:
    """Run manage.py with its standard error on a pseudo-terminal; (exit status, what the terminal showed)."""
    controller, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120
    while True:
        if not select.select([controller], [], [], max(0.0, deadline - time.monotonic()))[0]:
            child.kill()
            raise AssertionError(f"manage.py {' '.join(args)} was still writing after 120 s: {shown[-500:]!r}")
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return child.wait(timeout=120), shown.decode(errors="replace")


@pytest.fixture
def env(tmp_path):
    return installed(tmp_path)[0]


def test_seed_sync_and_backup_show_rates_and_time_left_on_a_terminal(env):
    status, shown = on_a_terminal("seed_demo", "--trades", "3000", "--plugin", "combined_v3", env=env)
    assert status == 0 and "3000/3000" in shown and "trades/s" in shown and "\r" in shown
    status, shown = on_a_terminal("sync_plugins", env=env)
    assert status == 0 and "/3000" in shown and "trades/s" in shown
    status, shown = on_a_terminal("backup_databases", env=env)
    assert status == 0 and "100%" in shown and "B/s" in shown
    status, shown = on_a_terminal("verify_backups", env=env)
    assert status == 0 and "B/s" in shown


def test_piped_commands_print_their_lines_and_no_bar(env):
    seeded = manage("seed_demo", "--trades", "3000", "--plugin", "combined_v3", env=env)
    assert seeded.returncode == 0 and "combined_v3: added 3000 trades" in seeded.stdout
    backed_up = manage("backup_databases", env=env)
    synced = manage("sync_plugins", env=env)
    for finished in (seeded, backed_up, synced):
        assert "\r" not in finished.stderr and "/s]" not in finished.stderr + finished.stdout
    assert "combined_v3: 3000 inserted" in synced.stdout
