"""The bad day's disk and central file, as an operator lives it through `manage.py` child
processes and `serve`: a full disk, a disk made read-only, a damaged or a missing central
database, each said clearly by every command and nothing lost once it is put right.
"""

import json
import os
import sqlite3
import subprocess
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.helpers import (
    PRODUCTION,
    Served,
    central,
    corrupt,
    free_port,
    heartbeat_pid,
    installed,
    manage,
    run,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A file system of its own (a 48 MB tmpfs), to be filled. Mounting one needs root
    (CAP_SYS_ADMIN), as on these machines: a full disk cannot be made otherwise."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no small file system to fill: mount refused ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Write into a file until the disk refuses another byte."""
    filler = disk / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(handle, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(handle)
    return filler


def said_clearly(result, *words):
    """Exit 1 with the operator's words, never a traceback."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert all(word in result.stdout + result.stderr for word in words), result.stdout + result.stderr


def test_a_full_disk_is_said_by_the_console_and_its_commands_and_nothing_is_lost_once_there_is_room(small_disk):
    """Whether a save's commit finds room depends on what the database's log had grown to: a
    save is then either refused (503, exit 1: nothing saved) or saved with its file left behind
    (said, and written again once there is room). Either way what the operator is told is true,
    and the file follows the active version once there is room."""
    from tests.helpers import put_config

    env, operator_token, _ = installed(small_disk)
    data, config_file = small_disk / "data", small_disk / "config" / "plugins" / "combined_v3.json"
    env.update(PRODUCTION)  # the outage's 503 is the production error handler's (debug mode shows Django's page)
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        request = urllib.request.Request(
            f"{server.url}/api/config/combined_v3", headers={"Authorization": f"Bearer {operator_token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            document = json.load(answer)["data"]
        filler = fill(small_disk)

        status, answer = put_config(server.url, operator_token, "combined_v3", {**document, "max_lot_size": 0.7}, 1)
        assert status in (200, 503), answer
        if status == 503:
            assert "is full" in answer["error"] and "not saved" in answer["error"]
        else:  # its commit found room in the database's log, its file none: saved, and said
            assert "could not be written (No space left on device)" in answer["warning"]
        set_by_command = manage("config", "set", "combined_v3", "max_lot_size", "0.8", env=env)
        assert "Traceback" not in set_by_command.stderr, set_by_command.stderr
        if set_by_command.returncode == 0:
            assert "could not be written (No space left on device)" in set_by_command.stderr
        else:
            said_clearly(set_by_command, "is full")
        said_clearly(manage("health_check", env=env), "the disk is full")
        overview = urllib.request.Request(f"{server.url}/", headers={"Authorization": f"Bearer {operator_token}"})
        with urllib.request.urlopen(overview, timeout=10) as answer:  # the operator can still look around
            assert answer.status == 200 and 'id="card-combined_v3"' in answer.read().decode()
        filler.unlink()

        told_saved = [lot for lot, saved in ((0.7, status == 200), (0.8, set_by_command.returncode == 0)) if saved]
        history = central(data, "SELECT version, document FROM config_app_configversion WHERE scope = 'combined_v3'")
        assert [json.loads(kept)["max_lot_size"] for _, kept in history[1:]] == told_saved
        status, saved = put_config(
            server.url, operator_token, "combined_v3", {**document, "max_lot_size": 0.9}, len(history)
        )
        assert status == 200, saved
        assert json.loads(config_file.read_text())["max_lot_size"] == 0.9
        wait_for(
            lambda: (
                not central(
                    data, "SELECT 1 FROM zepix_admin_alert WHERE subject = ? AND resolved_at IS NULL", config_file.name
                )
            ),
            "the alert of a file left behind to be resolved by the watcher's look at the file",
        )
    finally:
        server.stop()
    assert "combined_v3" in run(env, "sync_plugins").stdout  # (beside the consumer, its own might be running)
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    (plugin_backup,) = (data / "backups").glob("plugin_combined_v3-*.sqlite3.zst")
    plugin_file = data / "plugins" / "combined_v3.sqlite3"

    # The disk full with nothing holding the databases open: none of them can be opened then (the
    # last connection to close a database removes its index file, which cannot be made again).
    for database in [*data.glob("*.sqlite3"), *data.glob("plugins/*.sqlite3")]:
        with closing(sqlite3.connect(database)) as connection:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        assert not Path(f"{database}-shm").exists(), database
    filler = fill(small_disk)
    for args in (("config", "get", "global"), ("sync_plugins",), ("backup_databases",)):
        said_clearly(manage(*args, env=env), "is full")
    said_clearly(manage("health_check", env=env), "the disk is full")
    said_clearly(manage("serve", "--port", str(free_port()), env=env), "is full")  # a console started meanwhile
    before = plugin_file.read_bytes()
    said_clearly(manage("restore_backup", str(plugin_backup), env=env), "Nothing was restored: The disk", "is full")
    assert plugin_file.read_bytes() == before and not list((data / "plugins").glob(".restore-*"))
    filler.unlink()
    assert '"schedules"' in run(env, "config", "get", "global").stdout


def test_a_damaged_central_database_stops_every_command_with_what_to_do_and_is_restored_from_its_file(install):
    """The central database damaged: every command died with a traceback, and so did the one
    that repairs it (`restore_backup` looked the file up in the damaged database first)."""
    env, data = install
    run(env, "sync_plugins")
    run(env, "backup_databases", "--db", "default")
    (backup_file,) = (data / "backups").glob("default-*.sqlite3.zst")
    run(env, "config", "set", "combined_v3", "max_lot_size", "0.6")
    corrupt(data / "central.sqlite3")

    for args in (("config", "get", "global"), ("sync_plugins",), ("serve", "--port", str(free_port()))):
        said_clearly(manage(*args, env=env), "The central database is damaged", "restore_backup")
    said_clearly(manage("health_check", env=env), "file is not a database", "restore_backup")
    said_clearly(manage("restore_backup", "1", env=env), "give the backup's file", str(data / "backups"))

    restored = run(env, "restore_backup", str(backup_file))
    assert "Restored default" in restored.stdout
    assert central(data, "SELECT plugin_id, COUNT(*) FROM aggregated_trades GROUP BY 1") == [
        ("combined_v3", 3),
        ("price_action_v6", 3),
    ]
    # The version saved after the backup went with the damaged file; its config file still holds
    # it, taken in by `setup` (which `make run` runs first) as the next version.
    run(env, "setup", "--no-demo")
    assert json.loads(run(env, "config", "get", "combined_v3", "max_lot_size").stdout) == 0.6
    run(env, "sync_plugins")
    health = json.loads(manage("health_check", "--json", env=env).stdout)
    assert all(entry["ok"] for entry in health["databases"]), health["databases"]


def test_a_disk_made_read_only_is_said_by_every_command_and_writing_goes_on_once_it_is_writable(small_disk):
    """What the system does to a disk after errors (ext4's errors=remount-ro): every write fails."""
    env, _, _ = installed(small_disk)
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0
    try:
        for args in (("config", "set", "combined_v3", "max_lot_size", "0.4"), ("sync_plugins",), ("backup_databases",)):
            said_clearly(manage(*args, env=env), "is read-only", "once it can be written again")
        said_clearly(manage("health_check", env=env), "the disk is read-only")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert "saved version 2" in run(env, "config", "set", "combined_v3", "max_lot_size", "0.4").stdout
    assert "combined_v3" in run(env, "sync_plugins").stdout


def test_a_missing_central_database_is_said_never_made_again_empty_and_is_restored_from_its_file(install):
    """Every command made an empty central database in place of a missing one (then failed on
    its tables), and `setup` migrated it: the console started over empty beside its backups."""
    env, data = install
    run(env, "sync_plugins")
    run(env, "backup_databases", "--db", "default")
    (backup_file,) = (data / "backups").glob("default-*.sqlite3.zst")
    for leftover in data.glob("central.sqlite3*"):
        leftover.unlink()

    for args in (("config", "get", "global"), ("sync_plugins",)):
        said_clearly(manage(*args, env=env), "The central database's file is missing", "restore_backup")
    said_clearly(manage("health_check", env=env), "database default: file missing", "restore_backup")
    said_clearly(manage("setup", "--no-demo", env=env), "backup(s) of it are in", str(backup_file))
    assert not (data / "central.sqlite3").exists()

    run(env, "restore_backup", str(backup_file))
    run(env, "setup", "--no-demo")
    assert central(data, "SELECT plugin_id, COUNT(*) FROM aggregated_trades GROUP BY 1") == [
        ("combined_v3", 3),
        ("price_action_v6", 3),
    ]


def test_a_save_while_another_writer_holds_the_central_database_is_refused_as_busy_and_saves_nothing(tmp_path):
    """The central file's write lock held past the busy timeout (a large sync, a restore; held
    here by the test, the timeout cut to 1 s): a config save answered 500 and `config set` ended
    in a traceback. Both now say the database is busy and that nothing was saved; once it is free
    the same save goes through."""
    from tests.helpers import Server, put_config
    from tests.test_several_nodes import SCOPE, config_api

    server = Server(tmp_path, ZEPIX_SQLITE_BUSY_TIMEOUT="1", **PRODUCTION)
    try:
        document = {**config_api(server.url, server.token)["data"], "max_lot_size": 0.45}
        with closing(sqlite3.connect(tmp_path / "data" / "central.sqlite3", isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            status, answer = put_config(server.url, server.token, SCOPE, document, 1)
            assert status == 503 and "held by another writer" in answer["error"], answer
            assert "was not saved" in answer["error"]
            said_clearly(server.manage("config", "set", SCOPE, "max_lot_size", "0.5"), "held by another writer")
            holder.execute("ROLLBACK")
        assert config_api(server.url, server.token)["version"] == 1
        status, answer = put_config(server.url, server.token, SCOPE, document, 1)
        assert status == 200 and answer["version"] == 2
    finally:
        server.stop()
