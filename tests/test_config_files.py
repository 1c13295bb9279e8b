"""Outside edits are noticed by the real file watcher; a killed saver never leaves a torn file;
the config command follows the same rules as the browser."""

import json
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from config_app import service, watcher
from tests.helpers import ROOT, installed, manage
from zepix_admin.core.models import Alert

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_watcher_takes_in_an_outside_edit_within_a_second(config, settings):
    observer = watcher.start(delay=0.1)
    try:
        path = settings.CONFIG_DIR / "plugins" / "combined_v3.json"
        document = {**json.loads(path.read_text()), "enabled": False}
        started = time.monotonic()
        path.write_text(json.dumps(document))
        assert wait_for(lambda: service.current("combined_v3").version == 2, timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert service.current("combined_v3").author == "file"
        path.write_text("{oops")
        assert wait_for(lambda: Alert.objects.filter(subject="combined_v3").exists(), timeout=5)
        assert service.active_document("combined_v3")["enabled"] is False
    finally:
        observer.stop()
        observer.join()


def test_an_edit_made_while_no_watcher_ran_is_taken_in_when_one_starts(config, settings):
    """The consumer was down (killed, restarting) while the operator edited the file: the watcher
    that starts looks at every file once, instead of waiting for the next edit."""
    path = settings.CONFIG_DIR / "plugins" / "combined_v3.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_open_trades": 7}))
    observer = watcher.start(delay=0.1)
    try:
        assert wait_for(lambda: service.current("combined_v3").version == 2, timeout=5.0)
        assert service.active_document("combined_v3")["max_open_trades"] == 7
        assert service.current("combined_v3").author == "file"
        assert service.current("price_action_v6").version == 1  # an unedited file changes nothing
    finally:
        observer.stop()
        observer.join()


def in_a_thread(target, *args) -> threading.Thread:
    def run():
        try:
            target(*args)
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_watchers_look_at_a_file_holding_the_active_version_waits_for_no_save(config, settings):
    """Every save writes its file, and the watcher looks at it a moment later: that look, with
    nothing to take, answers without the config lock (under it, the next save waited for it). An
    edit is still taken in under the lock, once the save holding it is done."""
    path = settings.CONFIG_DIR / "plugins" / "combined_v3.json"
    holding, done = threading.Event(), threading.Event()

    def a_save_in_progress():
        with service.config_lock():
            holding.set()
            done.wait(30)

    save = in_a_thread(a_save_in_progress)
    try:
        assert holding.wait(5)
        look = in_a_thread(service.ingest_file, "combined_v3")
        look.join(10)
        assert not look.is_alive(), "the look at an unchanged file waited for the save"
        path.write_text(json.dumps({**json.loads(path.read_text()), "max_open_trades": 7}))
        edit = in_a_thread(service.ingest_file, "combined_v3")
        edit.join(0.5)
        assert edit.is_alive() and service.current("combined_v3").version == 1  # the edit waits its turn
    finally:
        done.set()
        save.join(30)
    edit.join(30)
    assert service.current("combined_v3").version == 2
    assert service.active_document("combined_v3")["max_open_trades"] == 7


SAVE_LOOP = """
import itertools
from config_app import service
for n in itertools.count():
    latest = service.current("combined_v3")
    document = {**latest.document, "max_lot_size": round(0.01 + (n % 500) / 100, 2), "max_open_trades": n % 400}
    service.save("combined_v3", document, base_version=latest.version, author="loop", via="test")
"""


@pytest.mark.slow
def test_a_saver_killed_at_random_moments_always_leaves_a_valid_recorded_file(tmp_path):
    import sqlite3
    from contextlib import closing

    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    env, _, _ = installed(tmp_path)
    path = tmp_path / "config" / "plugins" / "combined_v3.json"

    def recorded(what: str = "document") -> list:
        with closing(sqlite3.connect(tmp_path / "data" / "central.sqlite3")) as central:
            return [
                value
                for (value,) in central.execute(
                    f"SELECT {what} FROM config_app_configversion WHERE scope = 'combined_v3'"
                )
            ]

    for _ in range(6):
        saved_before = recorded("COUNT(*)")[0]
        saver = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "shell", "-c", SAVE_LOOP],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # killed at a random moment once it saves (however long this machine takes to start it)
        assert wait_for(lambda before=saved_before: recorded("COUNT(*)")[0] > before, timeout=30), "it never saved"
        time.sleep(rng.uniform(0, 0.3))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        document = json.loads(path.read_text())  # never torn: always parses
        assert document in map(json.loads, recorded()), f"seed {seed}: the file holds a document no version recorded"
        assert document["max_lot_size"] > 0
    result = manage("config", "validate", env=env)
    assert result.returncode == 0, result.stderr


def test_config_get_prints_json(config, capsys):
    call_command("config", "get", "global", "risk_tiers.5000.per_trade_cap")
    assert capsys.readouterr().out.strip() == "50"
    call_command("config", "get", "combined_v3", "symbols")
    assert json.loads(capsys.readouterr().out) == ["EURUSD", "GBPUSD", "XAUUSD"]
    with pytest.raises(CommandError, match="no setting"):
        call_command("config", "get", "global", "risk_tiers.9999")


def test_config_set_saves_a_version_and_refuses_bad_values(config, capsys):
    call_command("config", "set", "combined_v3", "max_lot_size", "0.25")
    assert "saved version 2" in capsys.readouterr().out
    assert service.active_document("combined_v3")["max_lot_size"] == 0.25
    with pytest.raises(CommandError, match="max_lot_size"):
        call_command("config", "set", "combined_v3", "max_lot_size", "-3")
    with pytest.raises(CommandError, match="must be JSON"):
        call_command("config", "set", "combined_v3", "mode", "paper")
    with pytest.raises(CommandError, match="Unknown config scope"):
        call_command("config", "set", "../x", "a", "1")
    assert service.current("combined_v3").version == 2


def test_config_history_and_rollback(config, capsys):
    call_command("config", "set", "global", "trading_enabled", "false")
    call_command("config", "rollback", "global", "1")
    call_command("config", "history", "global")
    out = capsys.readouterr().out
    assert "version 3 now has the content of version 1" in out
    assert "v2" in out and "trading_enabled: true -> false" in out
    assert service.active_document("global")["trading_enabled"] is True
    with pytest.raises(CommandError, match="no version 42"):
        call_command("config", "rollback", "global", "42")


def test_config_validate_a_file(config, tmp_path, capsys):
    good = tmp_path / "combined_v3.json"
    good.write_text(json.dumps({"enabled": True, "max_lot_size": 1}))
    call_command("config", "validate", str(good))
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"risk_tiers": {"5000": {"per_trade_cap": 0, "daily_loss_cap": 1}}, "schedules": {}}))
    with pytest.raises(CommandError, match="Validation failed"):
        call_command("config", "validate", str(bad))
    assert "risk_tiers.5000.per_trade_cap" in capsys.readouterr().err
    call_command("config", "validate")  # every active file
