"""The bad day, as an operator lives it: one step after another through `manage.py` child
processes and the served app (`serve`, uvicorn + the Huey consumer), on real files.

Each numbered case of the failures issue is here: a damaged plugin database stops nothing
else, a restore followed by a sync converges, an archived plugin stays archived while the
consumer's watcher runs, a missing database is reported and never made again, a dead worker
is restarted and visible.
"""

import http.cookiejar
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from plugins_app.schema import SEED_DDL, SEED_TABLES
from plugins_app.store import PluginStore
from sync_app.scheduler import JOBS
from tests.helpers import ROOT, closed_trade, free_port, installed, manage, start_consumer, trade

pytestmark = pytest.mark.slow
PASSWORD = "a-long-test-password-42"


@pytest.fixture
def install(tmp_path):
    """A fresh install with a few trades in each plugin."""
    env, _, _ = installed(tmp_path)
    data = tmp_path / "data"
    for plugin_id, first in (("combined_v3", 1), ("price_action_v6", 101)):
        with PluginStore(data / "plugins" / f"{plugin_id}.sqlite3") as store:
            store.save_trades([trade(first), closed_trade(first + 1, 12.5), closed_trade(first + 2, -4.0)])
    return env, data


def run(env, *args, ok=True):
    result = manage(*args, env=env)
    if ok is not None:
        assert (result.returncode == 0) == ok, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def central(data, sql, *params):
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection:
        return connection.execute(sql, params).fetchall()


def corrupt(path: Path) -> None:
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    with open(path, "r+b") as handle:
        handle.write(b"this is not a database at all, sorry")


def backup_id(data, alias):
    return str(central(data, "SELECT MAX(id) FROM sync_app_backup WHERE database = ?", alias)[0][0])


def test_a_corrupt_plugin_database_stops_no_command_and_is_restored_from_the_console(install):
    env, data = install
    run(env, "backup_databases", "--db", "plugin_price_action_v6")
    corrupt(data / "plugins" / "price_action_v6.sqlite3")

    synced = run(env, "sync_plugins", "--plugin", "combined_v3")
    assert "combined_v3: 3 inserted" in synced.stdout
    assert '"schedules"' in run(env, "config", "get", "global").stdout
    run(env, "check")
    setup = run(env, "setup", "--no-demo")
    assert "price_action_v6: its database cannot be read" in setup.stderr

    health = run(env, "health_check", "--json", ok=False)
    assert health.returncode == 1
    broken = {entry["alias"]: entry for entry in json.loads(health.stdout)["databases"]}
    assert broken["plugin_combined_v3"]["ok"] is True
    assert broken["plugin_price_action_v6"]["plugin_id"] == "price_action_v6"
    assert "file is not a database" in broken["plugin_price_action_v6"]["problem"]
    text = run(env, "health_check", ok=False).stdout
    assert "FAIL database plugin_price_action_v6: plugin price_action_v6: its database cannot be read" in text

    restored = run(env, "restore_backup", backup_id(data, "plugin_price_action_v6"))
    assert "Restored plugin_price_action_v6" in restored.stdout
    run(env, "sync_plugins")
    assert central(data, "SELECT plugin_id, COUNT(*) FROM aggregated_trades GROUP BY 1") == [
        ("combined_v3", 3),
        ("price_action_v6", 3),
    ]


def test_a_restore_followed_by_a_sync_loses_no_trade_and_keeps_none_the_restore_took_away(install):
    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    run(env, "sync_plugins")
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    before = backup_id(data, "plugin_combined_v3")
    with PluginStore(plugin) as store:
        store.save_trades([closed_trade(1000 + i, 1.0) for i in range(100)])
    run(env, "sync_plugins")
    assert central(data, "SELECT COUNT(*) FROM aggregated_trades WHERE plugin_id = 'combined_v3'") == [(103,)]

    run(env, "restore_backup", before)
    with PluginStore(plugin) as store:
        store.save_trades([trade(5000 + i) for i in range(7)])
    synced = run(env, "sync_plugins")
    assert "combined_v3: 7 inserted, 3 updated, 100 removed" in synced.stdout

    with closing(sqlite3.connect(plugin)) as connection:
        in_plugin = set(connection.execute("SELECT mt5_ticket, status, profit_dollars FROM trades"))
    in_central = set(
        central(
            data, "SELECT mt5_ticket, status, profit_dollars FROM aggregated_trades WHERE plugin_id = 'combined_v3'"
        )
    )
    assert in_central == in_plugin and len(in_plugin) == 10
    # the statistics follow: the 100 closed trades the restore took away count nowhere
    assert central(
        data, "SELECT SUM(trades_count), ROUND(SUM(profit), 2) FROM cross_plugin_stats WHERE plugin_id = 'combined_v3'"
    ) == [(2, 8.5)]
    assert "0 inserted, 0 updated, 0 removed" in run(env, "sync_plugins", "--plugin", "combined_v3").stdout


def test_a_copy_of_the_central_file_alone_holds_what_the_last_sync_copied_while_the_console_runs(install, tmp_path):
    """A disk snapshot or a plain copy takes the database file without its write-ahead log: each
    sync run ends by copying the log into the file, also while the console's connections stay
    open (the file is then never checkpointed by a last connection closing)."""
    env, data = install
    with closing(sqlite3.connect(data / "central.sqlite3")) as console:
        console.execute("SELECT COUNT(*) FROM sync_app_syncrun").fetchall()  # an open connection, as a web worker keeps
        run(env, "sync_plugins")
        snapshot = tmp_path / "snapshot.sqlite3"
        shutil.copyfile(data / "central.sqlite3", snapshot)
    with closing(sqlite3.connect(snapshot)) as copy:
        assert copy.execute("SELECT plugin_id, COUNT(*) FROM aggregated_trades GROUP BY 1 ORDER BY 1").fetchall() == [
            ("combined_v3", 3),
            ("price_action_v6", 3),
        ]
        assert copy.execute("SELECT status FROM sync_app_syncrun ORDER BY id DESC LIMIT 1").fetchall() == [("OK",)]


def test_after_the_central_database_is_restored_its_backup_list_is_what_is_on_disk(install):
    """The central database holds the backups' records: restored to an older backup, it forgets
    the backups made since (their files still there) and remembers one retention removed."""
    env, data = install
    run(env, "backup_databases", "--db", "default")
    removed_later = Path(central(data, "SELECT path FROM sync_app_backup")[0][0])
    run(env, "backup_databases", "--db", "default")
    restored = backup_id(data, "default")
    removed_later.unlink()  # as retention does
    run(env, "backup_databases", "--db", "default")
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    on_disk = {str(path) for path in (data / "backups").glob("*.zst")}
    assert len(on_disk) == 3

    run(env, "restore_backup", restored)
    assert {path for (path,) in central(data, "SELECT path FROM sync_app_backup")} == on_disk
    verified = run(env, "verify_backups")  # nothing missing, the newer ones checked too
    assert "3 backup(s) verified." in verified.stdout
    later = central(data, "SELECT id FROM sync_app_backup WHERE database = 'plugin_combined_v3'")[0][0]
    run(env, "restore_backup", str(later))  # and each can be restored from the console's list


def test_a_restore_of_the_central_database_under_a_running_console_keeps_the_bots_config_live(tmp_path):
    """Restored to a backup of version 1 while the bot runs version 3: the next save still
    reaches the bot (its numbers go on past what the bot has seen), and the console shows
    what the bot runs."""
    from config_app.client import ConfigSubscriber
    from tests.helpers import Server
    from tests.test_several_nodes import SCOPE, config_api, save_lot

    server = Server(tmp_path)
    data = tmp_path / "data"
    subscriber = ConfigSubscriber(server.url, server.token, scope=SCOPE, name="bot")
    try:
        subscriber.start()
        wait_for(lambda: subscriber.seen_version == 1, "the bot to load version 1")
        run(server.env, "backup_databases", "--db", "default")
        backup = backup_id(data, "default")
        assert save_lot(server.url, server.token, 0.2) == 2
        assert save_lot(server.url, server.token, 0.3) == 3
        wait_for(lambda: subscriber.applied_version == 3, "the bot to run version 3")

        run(server.env, "restore_backup", backup)
        save_lot(server.url, server.token, 0.4)
        wait_for(lambda: subscriber.document.get("max_lot_size") == 0.4, "the save after the restore to reach the bot")
        shown = config_api(server.url, server.token)
        assert shown["data"]["max_lot_size"] == 0.4 and shown["version"] == subscriber.applied_version
    finally:
        subscriber.stop()
        server.stop()


def test_a_restore_of_a_backup_the_worker_made_leaves_no_backup_running_and_keeps_the_runs_since(tmp_path):
    """The backup asked for from the backups page is restored (its copy was taken while its own run
    was RUNNING, by the consumer that still runs): the page said "Backing up…", the button held,
    until the next backup began, and the runs since the backup were gone from the history."""
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        status, _ = bearer(server, operator_token, "/backups/start", data=b"")
        assert status == 200
        finished = "SELECT COUNT(*) FROM sync_app_backuprun WHERE trigger = 'manual' AND status = 'OK'"
        wait_for(lambda: central(data, finished) == [(1,)], "the backup asked for to finish")
        backup = str(central(data, "SELECT MAX(id) FROM sync_app_backup WHERE database = 'default'")[0][0])
        run(env, "sync_plugins")
        runs = central(
            data, "SELECT id, status FROM sync_app_backuprun UNION ALL SELECT id, status FROM sync_app_syncrun"
        )
        run(env, "restore_backup", backup)
        page = bearer(server, operator_token, "/backups/")[1]
        button = page.split('id="start-backup"', 1)[1].split("</button>", 1)[0]
        assert button == " >Back up every database now"
        assert runs == central(
            data, "SELECT id, status FROM sync_app_backuprun UNION ALL SELECT id, status FROM sync_app_syncrun"
        )
        status, _ = bearer(server, operator_token, "/backups/start", data=b"")  # and it backs up again
        wait_for(lambda: central(data, finished) == [(2,)], "the next backup asked for to finish")
    finally:
        server.stop()


def test_a_save_while_a_restore_holds_the_configuration_answers_503_and_saves_nothing(tmp_path):
    """A restore of the central database holds the config lock throughout (minutes for a big
    one; held here by the test, as the restore holds it): a save waits for it a few seconds,
    then answers 503 saying why and saves nothing; it used to wait for as long as the lock was
    held. Once the lock is let go the same save goes through."""
    from tests.helpers import Server, put_config
    from tests.test_several_nodes import SCOPE, config_api
    from zepix_admin.core.files import file_lock

    server = Server(tmp_path)
    try:
        document = {**config_api(server.url, server.token)["data"], "max_lot_size": 0.45}
        with file_lock(tmp_path / "config" / ".zepix-config.lock"):
            started = time.monotonic()
            status, answer = put_config(server.url, server.token, SCOPE, document, 1)
            waited = time.monotonic() - started
        assert status == 503, answer
        assert "nothing was saved" in answer["error"] and "Try again" in answer["error"]
        assert 2.5 < waited < 25
        assert config_api(server.url, server.token)["version"] == 1
        status, answer = put_config(server.url, server.token, SCOPE, document, 1)
        assert status == 200 and answer["version"] == 2
    finally:
        server.stop()


def new_token(env, name, role, *plugins):
    created = run(env, "create_token", name, "--role", role, *plugins)
    return created.stdout.strip().splitlines()[-1]


def test_a_central_backup_taken_before_an_upgrade_is_restored_into_this_versions_schema(install):
    """The central database restored from a backup taken before the last upgrade comes back
    with this version's schema: not as a database the console cannot read (the tokens' table
    without its plugins), and with the bot host's token made since still shipping."""
    env, data = install
    run(env, "migrate", "zepix_admin", "0003")  # the version before plugin-host tokens
    run(env, "backup_databases", "--db", "default")
    backup = backup_id(data, "default")
    run(env, "migrate")  # the upgrade
    host = new_token(env, "host-b", "plugin-host", "--plugin", "combined_v3")
    server = Served(env)
    try:
        run(env, "restore_backup", backup)
        run(env, "migrate", "--check")  # nothing left to apply
        assert bearer(server, host, "/api/sync/combined_v3/batches")[0] == 200
        assert bearer(server, host, "/api/sync/price_action_v6/batches")[0] == 403
    finally:
        server.stop()


def test_a_plugin_backup_taken_before_an_upgrade_is_restored_into_this_versions_schema(install):
    """The same for a plugin's database: what the upgrade added (here an index of the trades)
    is there after the restore, and nothing is left to migrate."""
    env, data = install
    plugin_file = data / "plugins" / "combined_v3.sqlite3"
    run(env, "migrate", "--database", "plugin_combined_v3", "plugin_combined_v3", "0003_seed_schema")
    with closing(sqlite3.connect(plugin_file)) as connection, connection:
        connection.execute("DROP INDEX trades_status_entry_idx")  # as the version before 0004 had it
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    backup = backup_id(data, "plugin_combined_v3")
    run(env, "migrate", "--database", "plugin_combined_v3", "plugin_combined_v3")  # the upgrade

    run(env, "restore_backup", backup)
    run(env, "migrate", "--check", "--database", "plugin_combined_v3", "plugin_combined_v3")
    with closing(sqlite3.connect(plugin_file)) as connection:
        indexes = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "trades_status_entry_idx" in indexes
    synced = run(env, "sync_plugins")
    assert "combined_v3" in synced.stdout

    # Its backup file, copied from elsewhere (no record says whose it is), is not another plugin's.
    copied = data / "copied.sqlite3.zst"
    shutil.copyfile(central(data, f"SELECT path FROM sync_app_backup WHERE id = {backup}")[0][0], copied)
    refused = run(env, "restore_backup", str(copied), "--db", "plugin_price_action_v6", ok=False)
    assert "is not a backup of plugin_price_action_v6: it records none of its migrations" in refused.stderr


def test_a_central_backup_taken_by_a_newer_version_is_refused_and_nothing_changes(install):
    """A backup whose schema is ahead of this version (taken before a downgrade) is refused
    before anything is swapped: the database in use stays, with what was made since."""
    env, data = install
    newer = "INSERT INTO django_migrations (app, name, applied) VALUES ('zepix_admin', '9999_newer', '2026-12-01')"
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
        connection.execute(newer)
    run(env, "backup_databases", "--db", "default")
    backup = backup_id(data, "default")
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
        connection.execute("DELETE FROM django_migrations WHERE name = '9999_newer'")
    new_token(env, "made-since", "operator")

    refused = run(env, "restore_backup", backup, ok=False)
    assert "Nothing was restored" in refused.stderr and "newer version" in refused.stderr
    assert "zepix_admin.9999_newer" in refused.stderr
    assert central(data, "SELECT name FROM zepix_admin_apitoken WHERE name = 'made-since'") == [("made-since",)]
    assert central(data, "SELECT COUNT(*) FROM django_migrations WHERE name = '9999_newer'") == [(0,)]
    assert not list((data / "backups" / "before-restore").glob("*"))


def test_a_restore_of_the_central_database_keeps_who_may_sign_in_and_the_audit_since_its_backup(install):
    """Restored to an older backup under a running console, the central database must not bring
    back a token revoked since (a leaked one would work again), lock out a bot host whose token
    was made since, sign out the operator who restores, lift a lockout of password guesses made
    since, nor lose what the audit log recorded since the backup."""
    env, data = install
    server = Served(env)

    try:
        leaked, operator = new_token(env, "leaked", "operator"), new_token(env, "ops-script", "operator")
        run(env, "backup_databases", "--db", "default")
        backup = backup_id(data, "default")
        host = new_token(env, "host-b", "plugin-host", "--plugin", "combined_v3")
        revoke = "from zepix_admin.core.models import ApiToken; ApiToken.objects.get(name='leaked').delete()"
        run(env, "shell", "-c", revoke)  # as the admin's delete does
        seen = (
            "from zepix_admin.core import alerts; "
            "alerts.acknowledge(alerts.raise_alert('disk', 'data', 'the data disk is 91% full'), 'boss')"
        )
        run(env, "shell", "-c", seen)  # raised and acknowledged since the backup
        run(env, "config", "set", "combined_v3", "max_lot_size", "0.7")  # the restore records it again
        assert bearer(server, leaked, "/api/config/combined_v3")[0] == 401
        server.log_in()
        assert server.get("/sync/")[0] == 200
        guesser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert [server.log_in("boss", "a-wrong-guess", guesser) for _ in range(6)][-1] == 429  # locked out since
        logged = central(data, "SELECT id, action, target FROM zepix_admin_auditentry ORDER BY id")
        assert ("token.create", "host-b") in {(action, target) for _, action, target in logged}

        run(env, "restore_backup", backup)
        assert bearer(server, leaked, "/api/config/combined_v3")[0] == 401
        assert bearer(server, host, "/api/sync/combined_v3/batches")[0] == 200
        assert bearer(server, operator, "/api/config/combined_v3")[0] == 200
        assert server.opener.open(server.url + "/sync/", timeout=5).geturl().endswith("/sync/")  # still signed in
        acknowledged = "SELECT acknowledged_by FROM zepix_admin_alert WHERE source = 'disk' AND subject = 'data'"
        assert central(data, acknowledged) == [("boss",)]
        after = central(data, "SELECT id, action, target FROM zepix_admin_auditentry ORDER BY id")
        assert after[: len(logged)] == logged
        assert [action for _, action, _ in after[len(logged) :]] == ["config.save", "backup.restore"]
        assert server.log_in("boss", PASSWORD, guesser) == 429  # and the lockout holds
    finally:
        server.stop()


def test_a_consoles_kept_connections_read_the_restored_central_database_and_leave_its_wal_alone(tmp_path):
    """A web process keeps the connections its requests closed, for the next ones. Restored
    under it, the console reads the restored file (and so does the restore's own history
    carried over), and the connections it kept on the file swapped out close leaving the
    restored file's WAL alone: another process's write in it is kept."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import Server
    from tests.test_several_nodes import SCOPE, config_api, save_lot

    server = Server(tmp_path)
    data = tmp_path / "data"

    def shown_version(_=None):
        return config_api(server.url, server.token)["version"]

    try:
        run(server.env, "backup_databases", "--db", "default")
        backup = backup_id(data, "default")
        assert save_lot(server.url, server.token, 0.2) == 2
        with ThreadPoolExecutor(6) as requests:  # several requests at once: several connections kept
            assert set(requests.map(shown_version, range(30))) == {2}

        run(server.env, "restore_backup", backup)
        newest = "SELECT MAX(version) FROM config_app_configversion WHERE scope = ?"
        restored_version = central(data, newest, SCOPE)[0][0]
        assert restored_version == 3  # the backup's 1, carried over past the 2 the plugins ran
        with closing(sqlite3.connect(data / "central.sqlite3", isolation_level=None)) as writer:
            writer.execute("PRAGMA wal_autocheckpoint = 0")  # its write stays in the WAL while it is open
            writer.execute(
                "INSERT INTO zepix_admin_heartbeat (name, beat_at, pid) VALUES ('after-restore', '2026-01-01', 1)"
            )
            with ThreadPoolExecutor(6) as requests:
                assert set(requests.map(shown_version, range(30))) == {restored_version}
            assert central(data, "SELECT COUNT(*) FROM zepix_admin_heartbeat WHERE name = 'after-restore'") == [(1,)]
    finally:
        server.stop()
    assert central(data, "SELECT COUNT(*) FROM zepix_admin_heartbeat WHERE name = 'after-restore'") == [(1,)]


def test_a_plugin_archived_after_the_central_backup_stays_archived_and_can_be_brought_back(install):
    env, data = install
    run(env, "backup_databases", "--db", "default")
    backup = backup_id(data, "default")
    run(env, "archive_plugin", "price_action_v6")
    run(env, "restore_backup", backup)
    assert run(env, "config", "get", "price_action_v6", ok=False).returncode != 0  # still archived
    run(env, "archive_plugin", "price_action_v6", "--undo")  # its archive is known
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 3


def test_a_plugin_archived_before_an_upgrade_comes_back_in_this_versions_schema(install):
    """An archive is kept for weeks. One taken before an upgrade came back in the schema of the
    version that took it and stayed so until the next `setup`: here without the checks of the
    bot's values (the sync met a column it lacked, with an older one)."""
    env, data = install
    plugin = data / "plugins" / "price_action_v6.sqlite3"
    with closing(sqlite3.connect(plugin)) as old, old:  # as the version before this one left it
        for table in SEED_TABLES:
            old.execute(f"DROP TRIGGER {table}_values_held_on_insert")
            old.execute(f"DROP TRIGGER {table}_values_held_on_update")
        old.execute("DELETE FROM django_migrations WHERE name = '0005_values_held'")
    run(env, "archive_plugin", "price_action_v6")
    run(env, "archive_plugin", "price_action_v6", "--undo")
    with closing(sqlite3.connect(plugin)) as bot:
        with pytest.raises(sqlite3.IntegrityError, match="exit_price must be a number"):
            bot.execute(
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, exit_price) "
                "VALUES (900, 'EURUSD', 'BUY', 0.1, 1.1, '')"
            )
        assert bot.execute("SELECT COUNT(*) FROM trades").fetchone() == (3,)
    assert "OK   database plugin_price_action_v6" in run(env, "health_check", ok=None).stdout  # no migration due
    assert "price_action_v6: 3 inserted" in run(env, "sync_plugins").stdout


def test_a_file_copied_back_by_hand_is_noticed_from_its_change_numbers(install):
    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    run(env, "sync_plugins")
    with closing(sqlite3.connect(plugin)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    saved = plugin.read_bytes()
    with PluginStore(plugin) as store:
        store.save_trades([trade(2000 + i) for i in range(50)])
    run(env, "sync_plugins")
    plugin.write_bytes(saved)  # the same identity: only the change numbers tell
    for leftover in (Path(f"{plugin}-wal"), Path(f"{plugin}-shm")):
        leftover.unlink(missing_ok=True)
    with PluginStore(plugin) as store:
        store.save_trades([trade(3000 + i) for i in range(60)])  # past the old high-water mark
    run(env, "sync_plugins")
    tickets = {
        ticket
        for (ticket,) in central(data, "SELECT mt5_ticket FROM aggregated_trades WHERE plugin_id = 'combined_v3'")
    }
    assert tickets == {1, 2, 3, *range(3000, 3060)}


def test_a_backup_taken_while_the_bot_writes_and_copied_back_by_hand_is_noticed_from_its_identity(install, tmp_path):
    """The backup reads the live file while the bot goes on writing (a process of its own); its
    copy has an identity of its own, so put back by hand (not through restore_backup) the sync
    knows it for another file, and the central rows follow it exactly."""
    from sync_app.backup import decompress

    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    bot = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import itertools, sys, time\n"
            "from plugins_app.store import PluginStore\n"
            "from tests.helpers import trade\n"
            "with PluginStore(sys.argv[1]) as store:\n"
            "    for ticket in itertools.count(5000):\n"
            "        store.save_trade(**trade(ticket)); time.sleep(0.002)\n",
            str(plugin),
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for(lambda: trades_in_file(plugin) > 20, "the bot to write")
        run(env, "backup_databases", "--db", "plugin_combined_v3")
        wait_for(lambda: trades_in_file(plugin) > 100, "the bot to write more")
    finally:
        bot.kill()
        bot.wait()
    run(env, "sync_plugins")
    copy = tmp_path / "copy.sqlite3"
    decompress(Path(central(data, "SELECT path FROM sync_app_backup ORDER BY id DESC LIMIT 1")[0][0]), copy)
    for leftover in (Path(f"{plugin}-wal"), Path(f"{plugin}-shm")):
        leftover.unlink(missing_ok=True)
    with closing(sqlite3.connect(copy)) as backed_up:
        its_identity = backed_up.execute("SELECT incarnation FROM zepix_identity").fetchone()[0]
    known = central(data, "SELECT incarnation FROM sync_app_pluginsyncstate WHERE plugin_id = 'combined_v3'")
    assert known == [(known[0][0],)] and its_identity != known[0][0]
    shutil.copyfile(copy, plugin)  # by hand

    synced = run(env, "sync_plugins")
    assert "its database was replaced" in synced.stdout + synced.stderr
    with closing(sqlite3.connect(plugin)) as connection:
        in_file = {ticket for (ticket,) in connection.execute("SELECT mt5_ticket FROM trades")}
    in_central = "SELECT mt5_ticket FROM aggregated_trades WHERE plugin_id = 'combined_v3'"
    assert {ticket for (ticket,) in central(data, in_central)} == in_file


def trades_in_file(plugin: Path) -> int:
    with closing(sqlite3.connect(plugin)) as connection:
        return connection.execute("SELECT COUNT(*) FROM trades").fetchone()[0]


def test_a_missing_plugin_database_is_reported_by_every_command_and_never_made_again(install):
    env, data = install
    path = data / "plugins" / "price_action_v6.sqlite3"
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    run(env, "config", "set", "global", "sync.retry_delays_seconds", "[0.1]")
    synced = run(env, "sync_plugins", ok=False)
    assert "price_action_v6" in synced.stderr and "its database file is missing" in synced.stderr
    assert "combined_v3: 3 inserted" in synced.stdout
    assert "Plugin price_action_v6: its database file is missing" in run(env, "setup", "--no-demo").stderr
    health = run(env, "health_check", ok=False).stdout
    assert "plugin price_action_v6: its database file is missing" in health
    run(env, "migrate", "--database", "plugin_combined_v3")
    run(env, "showmigrations", "--database", "plugin_combined_v3")
    assert not path.exists()


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

    def get(self, path):
        try:
            with self.opener.open(self.url + path, timeout=5) as response:
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


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_with_a_broken_plugin_serves_every_page_and_names_the_broken_one(install):
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    server = Served(env)
    try:
        server.log_in()
        status, page = server.get("/")
        assert status == 200
        assert 'id="card-price_action_v6"' in page and "wrong schema: no table trades" in page
        assert "restore_backup" in page and 'id="card-combined_v3"' in page
        status, page = server.get("/admin/plugin_price_action_v6/trade/")
        assert status == 503 and "Plugin price_action_v6 is unavailable" in page
        assert server.status("/admin/plugin_combined_v3/trade/") == 200
        for path in ("/trades/", "/sync/", "/backups/", "/config/", "/config/combined_v3/", "/alerts/", "/audit/"):
            assert server.status(path) == 200, path
        assert "Its database has the wrong schema: no table trades" in server.get("/sync/")[1]
        status, body = server.get("/healthz")
        assert status == 503 and "plugin price_action_v6: its database has the wrong schema" in body
    finally:
        server.stop()


def test_a_value_the_console_cannot_hold_is_refused_at_the_bots_write_and_one_written_before_is_named(
    install, tmp_path
):
    """SQLite keeps whatever a column is given. A trade the bot wrote with an empty exit price or
    a text for its profit reached the central copy and answered 500 on the overview, the trade
    search and the charts; one with a NULL entry time stopped the plugin's sync for good."""
    env, data = install
    bot_file = data / "plugins" / "combined_v3.sqlite3"
    seed_insert = (
        "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
        "VALUES (50, 'EURUSD', 'BUY', 0.1, 1.1, 'OPEN')"
    )
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute(seed_insert)  # the bot's own statement, entry time defaulted
        bot.commit()
        for statement, column in (
            (
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, exit_price) "
                "VALUES (51, 'EURUSD', 'BUY', 0.1, 1.1, '')",
                "exit_price",
            ),
            (
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
                "VALUES (52, 'EURUSD', 'SELL', 0.1, 1.1, NULL)",
                "entry_time",
            ),
            ("UPDATE trades SET exit_time = '2026-02-30 10:00:00' WHERE mt5_ticket = 50", "exit_time"),
            ("UPDATE trades SET profit_dollars = 'lots' WHERE mt5_ticket = 50", "profit_dollars"),
            ("UPDATE trades SET lot_size = 1e300 WHERE mt5_ticket = 50", "lot_size"),
            ("UPDATE trades SET status = NULL WHERE mt5_ticket = 50", "status"),
            ("INSERT INTO daily_stats (date, total_trades) VALUES ('27/11/2026', 1)", "date"),
            (
                "INSERT INTO profit_chains (chain_id, base_trade_id, created_at) VALUES ('c-1', 1, 'yesterday')",
                "created_at",
            ),
        ):
            with pytest.raises(sqlite3.IntegrityError, match=f"row refused: {column} must be"):
                bot.execute(statement)
        # Times as Python writes them are taken: an aware one, with a 'T', on a leap day.
        bot.execute(
            "UPDATE trades SET status = 'CLOSED', exit_time = ?, exit_price = 1.2, profit_dollars = 5, "
            "close_reason = 'TP' WHERE mt5_ticket = 50",
            ("2024-02-29T10:00:00+00:00",),
        )
        bot.commit()
    assert "combined_v3: 4 inserted" in run(env, "sync_plugins").stdout  # the install's 3 and this one
    server = Served(env)
    try:
        server.log_in()
        for path in ("/", "/trades/", "/trades/?sort=-profit", "/charts/", "/trades/?format=csv", "/sync/"):
            assert server.status(path) == 200, path
        assert ">50<" in server.get("/trades/?plugin=combined_v3")[1]
    finally:
        server.stop()

    # A file written before these checks (their triggers dropped, the migration that adds them
    # not recorded) with a NULL entry time: `setup` puts the checks in, and the sync names the
    # row where it said "NOT NULL constraint failed: trade_totals.day"; the other plugin syncs.
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute("DROP TRIGGER trades_values_held_on_insert")
        bot.execute("DROP TRIGGER trades_values_held_on_update")
        bot.execute("DELETE FROM django_migrations WHERE name = '0005_values_held'")
        bot.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
            "VALUES (53, 'EURUSD', 'SELL', 0.1, 1.1, NULL)"
        )
        bot.commit()
    setup = run(env, "setup", "--no-demo")
    assert "its database holds 1 row(s) of trades whose entry_time is not a time" in setup.stderr
    with closing(sqlite3.connect(bot_file)) as bot:
        assert bot.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'trades_values_held_%'").fetchone() == (
            2,
        )
    run(env, "config", "set", "global", "sync.retry_delays_seconds", "[0.1]")
    failed = run(env, "sync_plugins", ok=False)
    said = failed.stdout + failed.stderr
    assert "1 row(s) of trades whose entry_time is not a time" in said and str(bot_file) in said
    assert "price_action_v6: 0 inserted" in failed.stdout
    with closing(sqlite3.connect(bot_file)) as bot:
        bot.execute("UPDATE trades SET entry_time = '2026-11-27 10:00:00' WHERE mt5_ticket = 53")
        bot.commit()
    assert "combined_v3: 1 inserted" in run(env, "sync_plugins").stdout

    # A bot's file with such a value is not adopted: what is wrong is said, nothing changes.
    old_file = tmp_path / "old-bot.sqlite3"
    with closing(sqlite3.connect(old_file)) as old:
        old.executescript(SEED_DDL)
        old.execute(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status, exit_price) "
            "VALUES (1, 'EURUSD', 'BUY', 0.1, 1.1, 'OPEN', '')"
        )
        old.commit()
    before = old_file.read_bytes()
    refused = run(env, "startplugin", "old_bot", "--adopt", str(old_file), ok=False)
    assert "1 row(s) of trades whose exit_price is not a number" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert old_file.read_bytes() == before and not (data / "plugins" / "old_bot.sqlite3").exists()


def test_ctrl_c_while_a_sync_waits_to_retry_a_broken_plugin_lets_the_run_finish_and_stops(install):
    """Huey's graceful shutdown waits for the running task: a sync waiting 5, 10 then 20 s to
    retry a broken plugin held `serve` up until it killed the consumer, its run left running."""
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    server = Served(env)
    try:
        wait_for(
            lambda: (
                central(
                    data,
                    "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING' AND plugins LIKE ?",
                    "%waiting to retry%",
                )
                == [(1,)]
            ),
            "a sync waiting to retry the broken plugin",
        )
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert central(data, "SELECT status FROM sync_app_syncrun") == [("PARTIAL",)]


def heartbeat_pid(data):
    rows = central(data, "SELECT pid FROM zepix_admin_heartbeat WHERE name = 'huey'")
    return rows[0][0] if rows else None


def test_a_killed_worker_is_restarted_while_the_web_server_keeps_serving_and_is_alerted(install):
    env, data = install
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        # the worker never starves the pages: every thread of the consumer runs at a lower priority
        wait_for(
            lambda: all(os.getpriority(os.PRIO_PROCESS, int(tid)) == 10 for tid in os.listdir(f"/proc/{first}/task")),
            "every thread of the consumer to run at niceness 10",
            timeout=10,
        )
        os.kill(first, signal.SIGKILL)
        assert server.status("/login/") == 200
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        assert server.status("/login/") == 200
        assert central(data, "SELECT source, subject FROM zepix_admin_alert") == [("worker", "huey consumer")]
        wait_for(
            lambda: central(data, "SELECT resolved_at IS NOT NULL FROM zepix_admin_alert") == [(1,)],
            "the worker alert to resolve itself",
            timeout=40,
        )
    finally:
        server.stop()


def ask_for_a_sync(url, token) -> str:
    """What "Run sync now" answers at ``url`` (the sync page's HTMX fragment, with its notice)."""
    request = urllib.request.Request(
        url + "/sync/run", data=b"", headers={"Authorization": f"Bearer {token}", "HX-Request": "true"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def syncs_held_up(tmp_path):
    """A fresh install whose syncs take their time: a plugin's trades are gone, retried after 60 s."""
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    run(env, "config", "set", "global", "sync.retry_delays_seconds", "[60]")
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        connection.execute("ALTER TABLE trades RENAME TO x")
    return env, operator_token, data


def test_a_sync_asked_for_whose_worker_was_killed_running_it_can_be_asked_for_again(syncs_held_up):
    """The consumer is killed in the middle of a sync asked for by hand; `serve` starts another at
    once, whose heartbeat is the same. The page held that sync as running (until the next run,
    minutes later) and as asked for (two hours); every click joined it."""
    env, operator_token, data = syncs_held_up
    # The schedule ran every job just now: only the sync asked for runs (a scheduled one, killed
    # with it, would start again at the restarted consumer's first tick, and hold the button).
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
        connection.executemany(
            "INSERT INTO sync_app_jobstate (name, last_started_at, task_id, relaunched) "
            "VALUES (?, datetime('now'), '', 0)",
            [(job,) for job in JOBS],
        )
    marker = "SELECT task_id FROM sync_app_jobstate WHERE name = 'manual_sync'"
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        assert "Sync queued" in ask_for_a_sync(server.url, operator_token)
        wait_for(lambda: str(first) in str(central(data, marker)), "the consumer to run the sync")
        running = "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING'"
        wait_for(lambda: central(data, running) == [(1,)], "the sync's run to begin")  # killed after its start
        assert "already queued or running; this request joins it" in ask_for_a_sync(server.url, operator_token)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        page = bearer(server, operator_token, "/sync/")[1]  # the killed run is shown stopped, the button free
        assert 'id="run-sync" >Run sync now' in page and '<span class="badge bad">ABORTED</span>' in page
        assert "Sync queued" in ask_for_a_sync(server.url, operator_token)
        wait_for(lambda: str(heartbeat_pid(data)) in str(central(data, marker)), "the new consumer to run it")
    finally:
        server.stop()


def test_a_scheduled_sync_whose_worker_was_killed_running_it_starts_again_at_the_next_tick(syncs_held_up):
    """The consumer is killed in the middle of the sync its scheduler started. The tick had marked
    the sync started: the next one came at its next interval, and a daily backup killed the same
    way waited a day. The jobs the tick queued for later are not queued twice."""
    env, _, data = syncs_held_up
    markers = "SELECT name, task_id FROM sync_app_jobstate WHERE name != 'scheduler-tick'"
    server = Served(env)  # its consumer ticks as it starts: every job is due on a new install
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        first = heartbeat_pid(data)
        wait_for(
            lambda: f"running {os.uname().nodename} {first}" == dict(central(data, markers)).get("sync"),
            "the sync to run",
        )
        running = "SELECT COUNT(*) FROM sync_app_syncrun WHERE status = 'RUNNING'"
        wait_for(lambda: central(data, running) == [(1,)], "the sync's run to begin")  # killed after its start
        queued_for_later = {name: task for name, task in central(data, markers) if name != "sync" and task}
        assert queued_for_later  # the backups, staggered behind the sync
        with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
            connection.execute("DELETE FROM sync_app_jobstate WHERE name = 'scheduler-tick'")  # as if a minute passed
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: heartbeat_pid(data) not in (None, first), "a restarted consumer's heartbeat")
        second = heartbeat_pid(data)
        wait_for(
            lambda: f"running {os.uname().nodename} {second}" == dict(central(data, markers)).get("sync"),
            "the new consumer's first tick to start the lost sync again",
        )
        runs = "SELECT trigger, status FROM sync_app_syncrun ORDER BY id"
        wait_for(
            lambda: central(data, runs) == [("schedule", "ABORTED"), ("schedule", "RUNNING")],
            "the killed run to be marked aborted as the new one begins",
        )
        still = dict(central(data, markers))
        assert all(still[name] in (task, "") or str(second) in still[name] for name, task in queued_for_later.items())
    finally:
        server.stop()


def test_archive_while_the_consumer_watches_stays_archived_through_setup_and_undo_brings_it_back(install):
    env, data = install
    config_dir = Path(env["ZEPIX_CONFIG_DIR"])
    document = config_dir / "plugins" / "price_action_v6.json"
    consumer = start_consumer(env)
    try:
        wait_for(lambda: heartbeat_pid(data) == consumer.pid, "the consumer to start watching")
        archived = run(env, "archive_plugin", "price_action_v6")
        assert "Undo with `python manage.py archive_plugin price_action_v6 --undo`" in archived.stdout
        time.sleep(2)  # the watcher's debounce is 200 ms: it has long seen the file go
        assert not document.exists()
    finally:
        consumer.send_signal(signal.SIGINT)
        consumer.wait(timeout=20)
    assert central(
        data, "SELECT version, retired FROM config_app_configversion WHERE scope = 'price_action_v6' ORDER BY version"
    ) == [(1, 0), (2, 1)]
    run(env, "setup")  # with demo data on: an archived plugin gets no database and no demo trades
    assert not (data / "plugins" / "price_action_v6.sqlite3").exists() and not document.exists()
    scopes = run(env, "config", "get", "price_action_v6", ok=False)
    assert "Unknown config scope" in scopes.stderr
    assert central(data, "SELECT action FROM zepix_admin_auditentry WHERE target = 'price_action_v6' ORDER BY id") == [
        ("config.save",),
        ("config.retire",),
        ("plugin.archive",),
    ]

    run(env, "archive_plugin", "price_action_v6", "--undo")
    assert document.exists()
    with closing(sqlite3.connect(data / "plugins" / "price_action_v6.sqlite3")) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone() == (3,)
    assert "max_lot_size" in run(env, "config", "get", "price_action_v6").stdout
    assert len(list((data / "archived").glob("price_action_v6-*.sqlite3.zst"))) == 1  # the archive is kept
    run(env, "sync_plugins")


def test_a_backup_killed_halfway_leaves_no_copy_for_good_and_a_running_ones_copy_is_left_alone(install):
    """A backup killed while it holds its copy of a database (a worker restarted, the OOM
    killer) could not remove that copy, as large as the database: each stayed for good. The
    next backup removes it; a backup still running (here stopped by SIGSTOP) keeps its own."""
    env, data = install
    with closing(sqlite3.connect(data / "plugins" / "combined_v3.sqlite3")) as bot, bot:
        bot.execute("CREATE TABLE bot_padding (data BLOB)")  # 64 MB: a copy that takes a moment
        bot.executemany("INSERT INTO bot_padding VALUES (zeroblob(1048576))", [()] * 64)
    backups = data / "backups"

    def backup_holding_its_copy():
        before = set(backups.glob(".work-*"))
        job = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "backup_databases", "--db", "plugin_combined_v3"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (folders := [f for f in set(backups.glob(".work-*")) - before if any(f.iterdir())]):
            assert job.poll() is None and time.monotonic() < deadline, "the backup never made its copy"
            time.sleep(0.005)
        return job, folders[0]

    killed, killed_folder = backup_holding_its_copy()
    killed.kill()
    killed.wait()
    stopped, stopped_folder = backup_holding_its_copy()
    try:
        stopped.send_signal(signal.SIGSTOP)
        assert killed_folder.exists()  # left behind, copy and all
        an_hour_ago = time.time() - 3600
        for folder in (killed_folder, stopped_folder):
            os.utime(folder, (an_hour_ago, an_hour_ago))

        run(env, "backup_databases", "--db", "plugin_combined_v3")
        assert not killed_folder.exists()
        assert stopped_folder.exists()
    finally:
        stopped.send_signal(signal.SIGCONT)
    assert stopped.wait(timeout=60) == 0  # and it finishes its backup
    assert not list(backups.glob(".work-*"))
    assert len(list(backups.glob("plugin_combined_v3-*.sqlite3.zst"))) == 2


def test_a_damaged_queue_file_stops_no_command_and_the_console_makes_a_new_one(tmp_path):
    """Huey's queue is a SQLite file too (without REDIS_URL), and every process opened it as it
    started: damaged, it stopped every command and the server at start-up with a traceback."""
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    (data / "huey.sqlite3").write_bytes(b"this is not a database at all, sorry" * 100)

    assert '"schedules"' in run(env, "config", "get", "global").stdout
    assert "combined_v3" in run(env, "sync_plugins").stdout
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        asked = urllib.request.Request(
            f"{server.url}/sync/run", data=b"", headers={"Authorization": f"Bearer {operator_token}"}
        )
        urllib.request.urlopen(asked, timeout=10).close()
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'") == [(1,)],
            "the sync asked for from the console to run through the new queue",
        )
    finally:
        server.stop()
    (aside,) = data.glob("huey.sqlite3.damaged-*")  # kept for a look, not used again
    assert aside.read_bytes().startswith(b"this is not a database")
    assert central(data, "SELECT source, subject, resolved_at FROM zepix_admin_alert WHERE source = 'queue'") == [
        ("queue", "huey.sqlite3", None)
    ]
    (message,) = central(data, "SELECT message FROM zepix_admin_alert WHERE source = 'queue'")[0]
    assert aside.name in message


def test_a_queue_file_removed_while_the_console_runs_is_made_again_and_its_consumer_follows(tmp_path):
    """The consumer kept its connection to the removed file (as it would to one another process
    set aside as damaged): the tasks queued in the new file by any other process never ran."""
    env, _, _ = installed(tmp_path)
    data = tmp_path / "data"
    server = Served(env)
    try:
        wait_for(lambda: heartbeat_pid(data), "the consumer's first heartbeat")
        for leftover in data.glob("huey.sqlite3*"):
            leftover.unlink()
        run(env, "shell", "-c", "from sync_app import tasks\ntasks.sync_task('manual', 'tester')")
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_syncrun WHERE trigger = 'manual'") == [(1,)],
            "the sync queued in the new file to run",
        )
    finally:
        server.stop()


def test_a_queue_that_cannot_be_read_is_logged_once_not_at_every_look(tmp_path):
    """The consumer's scheduler looks at the queue every second and each worker after each
    pause: with the queue unreadable (a full disk, here a folder where its file should be) each
    look logged a whole traceback, sixty a minute into the operator's logs."""
    env, _, _ = installed(tmp_path)
    (tmp_path / "data" / "huey.sqlite3").mkdir()
    consumer = start_consumer(env, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    consumer.send_signal(signal.SIGINT)
    _, logged = consumer.communicate(timeout=20)
    assert "unable to open database file" in logged
    assert logged.count("Traceback") <= 3, logged  # the scheduler's and each worker's first


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


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-production-key-0123456789",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
}


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
