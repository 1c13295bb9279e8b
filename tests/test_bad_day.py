"""The bad day, as an operator lives it: one step after another through `manage.py` child
processes and the served app (`serve`, uvicorn + the Huey consumer), on real files.

Here: a damaged plugin database restored from the console, restores followed by syncs,
backups from before an upgrade, archived plugins that stay archived, a file copied back by
hand, a missing plugin database reported and never made again. Killed workers and the queue
are in test_bad_day_workers.py; a full or read-only disk and a damaged or missing central
database in test_bad_day_disk.py.
"""

import http.cookiejar
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugins_app.schema import SEED_TABLES
from plugins_app.store import PluginStore
from tests.helpers import (
    PASSWORD,
    ROOT,
    Served,
    bearer,
    central,
    closed_trade,
    corrupt,
    heartbeat_pid,
    installed,
    run,
    trade,
    wait_for,
)

pytestmark = pytest.mark.slow


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


# The bot as a process of its own: one connection, kept open, writing a trade with the seed's
# own statement for each ticket it is given on its standard input.
BOT = """
import sqlite3, sys
bot = sqlite3.connect(sys.argv[1], isolation_level=None)
bot.execute("PRAGMA journal_mode=WAL")
for line in sys.stdin:
    bot.execute(
        "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, status) "
        "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, 'OPEN')",
        (int(line),),
    )
    print("written", flush=True)
"""


def test_a_restore_while_the_bot_still_runs_keeps_what_it_writes_after(install):
    """The operator restores a plugin's database without stopping its bot first. The restored file
    was moved over the old one, and the bot, its connection still on the old file, wrote every
    trade after the restore where nothing read it again: lost, though the bot saw each one saved."""
    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    bot = subprocess.Popen(
        [sys.executable, "-c", BOT, str(plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:

        def bot_writes(ticket):
            bot.stdin.write(f"{ticket}\n")
            bot.stdin.flush()
            assert bot.stdout.readline() == "written\n"

        bot_writes(700)  # after the backup: the restore takes it away
        restored = run(env, "restore_backup", backup_id(data, "plugin_combined_v3"))
        aside = Path(restored.stdout.split("the previous file is at ")[1].strip().rstrip("."))
        bot_writes(701)
        bot_writes(702)
    finally:
        bot.stdin.close()
        bot.wait(timeout=10)
        bot.stdout.close()
    with closing(sqlite3.connect(plugin)) as connection:
        assert {ticket for (ticket,) in connection.execute("SELECT mt5_ticket FROM trades")} == {1, 2, 3, 701, 702}
    with closing(sqlite3.connect(aside)) as connection:  # what the file held before the restore, kept
        assert {ticket for (ticket,) in connection.execute("SELECT mt5_ticket FROM trades")} == {1, 2, 3, 700}
    run(env, "sync_plugins")
    assert central(data, "SELECT mt5_ticket FROM aggregated_trades WHERE plugin_id = 'combined_v3' ORDER BY 1") == [
        (1,),
        (2,),
        (3,),
        (701,),
        (702,),
    ]


def test_a_plugin_file_vacuumed_to_another_page_size_since_its_backup_is_still_restored(install):
    """SQLite copies a backup into a live file in WAL mode only with the same page size."""
    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    run(env, "backup_databases", "--db", "plugin_combined_v3")
    with closing(sqlite3.connect(plugin, isolation_level=None)) as bot:
        bot.execute("PRAGMA journal_mode=DELETE")
        bot.execute("PRAGMA page_size=8192")
        bot.execute("VACUUM")
        bot.execute("PRAGMA journal_mode=WAL")
        bot.execute("DELETE FROM trades WHERE mt5_ticket = 1")
    run(env, "restore_backup", backup_id(data, "plugin_combined_v3"))
    with closing(sqlite3.connect(plugin)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone() == (3,)
        assert connection.execute("PRAGMA page_size").fetchone() == (4096,)


def test_an_archive_while_the_bot_still_runs_is_refused_and_changes_nothing(install):
    """Archiving removes the plugin's file: a bot still running wrote on into the removed file, where
    nothing read it again. It is refused, saying which process has the file open."""
    env, data = install
    plugin = data / "plugins" / "combined_v3.sqlite3"
    bot = subprocess.Popen(
        [sys.executable, "-c", BOT, str(plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        bot.stdin.write("700\n")
        bot.stdin.flush()
        assert bot.stdout.readline() == "written\n"
        refused = run(env, "archive_plugin", "combined_v3", ok=False)
        assert f"combined_v3's database is open in another process (pid {bot.pid}: " in refused.stderr
        assert "stop the bot's process for that plugin first" in refused.stderr and "Traceback" not in refused.stderr
        assert plugin.exists() and not list((data / "archived").glob("combined_v3-*"))
        assert "max_lot_size" in run(env, "config", "get", "combined_v3").stdout  # still in service
    finally:
        bot.stdin.close()
        bot.wait(timeout=10)
        bot.stdout.close()
    run(env, "archive_plugin", "combined_v3")
    assert not plugin.exists()


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


def test_retention_keeps_a_days_sound_backup_rather_than_a_newer_one_found_damaged(install):
    """Two backups of a plugin three days ago; the later one's file is found damaged on disk.
    Retention keeps one backup of that day: the sound one, which can still be restored (it kept
    the damaged one, the day's newest, and deleted the sound one)."""
    env, data = install
    for _ in range(3):
        run(env, "backup_databases", "--db", "plugin_combined_v3", "--no-retention")
    sound, damaged, today = (
        backup
        for (backup,) in central(
            data, "SELECT id FROM sync_app_backup WHERE database = 'plugin_combined_v3' ORDER BY id"
        )
    )
    three_days_ago = datetime.now(UTC).date() - timedelta(days=3)
    with closing(sqlite3.connect(data / "central.sqlite3")) as connection, connection:
        for backup, hour in ((sound, 1), (damaged, 13)):
            connection.execute(
                "UPDATE sync_app_backup SET created_at = ? WHERE id = ?", (f"{three_days_ago} {hour:02}:00:00", backup)
            )
    damaged_file = Path(central(data, "SELECT path FROM sync_app_backup WHERE id = ?", damaged)[0][0])
    with open(damaged_file, "r+b") as handle:  # a sector gone bad
        handle.seek(damaged_file.stat().st_size // 2)
        handle.write(b"\0" * 64)
    run(env, "verify_backups", ok=False)
    verified = dict(central(data, "SELECT id, verified FROM sync_app_backup"))
    assert verified[damaged] == 0 and verified[sound] == 1 and verified[today] == 1

    kept = run(env, "backup_databases", "--db", "plugin_combined_v3")
    assert f"deleted backup {damaged} " in kept.stdout and f"deleted backup {sound} " not in kept.stdout
    left = {
        backup for (backup,) in central(data, "SELECT id FROM sync_app_backup WHERE database = 'plugin_combined_v3'")
    }
    assert {sound, today} <= left and damaged not in left
    run(env, "restore_backup", str(sound))


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
