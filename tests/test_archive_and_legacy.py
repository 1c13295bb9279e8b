"""archive_plugin takes a plugin out of service; migrate_legacy imports the old single database."""

import json
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import backup as backups
from sync_app.archive import archive_plugin, purge_expired_archives
from sync_app.models import AggregatedTrade
from sync_app.sync import run_sync
from tests.helpers import closed_trade, trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def restore_files(settings):
    """Archiving moves real files of the test databases: put them back afterwards."""
    database = plugins.database_path("price_action_v6")
    document = settings.CONFIG_DIR / "plugins" / "price_action_v6.json"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole database in the main file
    saved = database.read_bytes()
    yield
    connections["plugin_price_action_v6"].close()
    for leftover in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        leftover.unlink(missing_ok=True)
    database.write_bytes(saved)
    if not document.exists():
        document.write_text(json.dumps({"enabled": True, "max_lot_size": 1.0}))


def test_archiving_a_plugin_compresses_its_database_and_keeps_central_rows(config, restore_files, settings):
    with PluginStore(plugins.database_path("price_action_v6")) as store:
        store.save_trades([trade(1), closed_trade(2, 3.0)])
    run_sync(trigger="command")
    archive = archive_plugin("price_action_v6")
    assert not plugins.database_path("price_action_v6").exists()
    assert not (settings.CONFIG_DIR / "plugins" / "price_action_v6.json").exists()
    assert Path(archive.path).parent == settings.ARCHIVE_DIR
    assert (archive.expires_at - archive.archived_at).days == 90
    assert AggregatedTrade.objects.filter(plugin_id="price_action_v6").count() == 2
    with __import__("tempfile").TemporaryDirectory() as work:
        restored = backups.check_backup_file(
            Path(archive.path), alias="plugin_price_action_v6", sha256=archive.sha256, work_dir=Path(work)
        )
        with closing(sqlite3.connect(restored)) as connection:
            assert connection.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 2


def test_archives_are_purged_after_their_keep_time(config, restore_files):
    archive = archive_plugin("price_action_v6")
    assert purge_expired_archives(now=timezone.now() + timedelta(days=89)) == []
    assert [a.pk for a in purge_expired_archives(now=timezone.now() + timedelta(days=91))] == [archive.pk]
    assert not Path(archive.path).exists()


@pytest.mark.parametrize("bad", ["../x", "nosuch"])
def test_archive_refuses_a_bad_or_unknown_plugin(bad, config):
    with pytest.raises(CommandError):
        call_command("archive_plugin", bad)


def make_legacy_db(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(
            "CREATE TABLE trades (id INTEGER PRIMARY KEY, ticket INTEGER UNIQUE, symbol TEXT, direction TEXT, "
            "lot_size REAL, entry_price REAL, sl_price REAL, tp_price REAL, entry_time TEXT, exit_time TEXT, "
            "exit_price REAL, profit_pips REAL, profit_dollars REAL, commission REAL, swap REAL, status TEXT, "
            "close_reason TEXT, signal_data TEXT, comment TEXT, migrated_to_plugin TEXT)"
        )
        rows = [
            (5001, "combined_v3 entry", "2026-01-10 10:00:00", "CLOSED"),
            (5002, "combined_v3 chain L2", "2026-03-01 10:00:00", "CLOSED"),
            (5003, "price_action_v6", "2026-03-02 10:00:00", "CLOSED"),
            (5004, "combined_v3 entry", "2026-04-01 10:00:00", "OPEN"),
        ]
        for ticket, comment, entry_time, status in rows:
            closed = status == "CLOSED"
            connection.execute(
                "INSERT INTO trades (ticket, symbol, direction, lot_size, entry_price, entry_time, exit_time, "
                "exit_price, profit_dollars, commission, swap, status, close_reason, signal_data, comment) "
                "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, ?, ?, ?, ?, 0, 0, ?, ?, '{\"old\": true}', ?)",
                (
                    ticket,
                    entry_time,
                    entry_time if closed else None,
                    1.2 if closed else None,
                    10.0 if closed else None,
                    status,
                    "TP" if closed else None,
                    comment,
                ),
            )
        connection.commit()
    return path


def legacy_marks(path):
    with closing(sqlite3.connect(path)) as connection:
        return dict(connection.execute("SELECT ticket, migrated_to_plugin FROM trades"))


def test_migrate_legacy_copies_matching_trades_marks_them_and_copies_nothing_twice(tmp_path, config, capsys):
    source = make_legacy_db(tmp_path / "zepix_bot.db")
    call_command("migrate_legacy", "--source", str(source), "--plugin", "combined_v3", "--match", "combined_v3%")
    assert "Copied 3 of 3 matching trades" in capsys.readouterr().out
    with PluginStore(plugins.database_path("combined_v3")) as store:
        assert [t["mt5_ticket"] for t in store.open_trades()] == [5004]
        assert store.trade_by_ticket(5001)["signal_data"] == {"old": True}
        assert store.daily_stats(__import__("datetime").date(2026, 1, 10))["total_trades"] == 1
    assert legacy_marks(source) == {5001: "combined_v3", 5002: "combined_v3", 5003: None, 5004: "combined_v3"}
    call_command("migrate_legacy", "--source", str(source), "--plugin", "combined_v3", "--match", "combined_v3%")
    assert "Copied 0 of 0 matching trades" in capsys.readouterr().out
    with closing(sqlite3.connect(source)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 4  # nothing deleted


def test_migrate_legacy_after_a_crash_between_copy_and_mark_copies_nothing_twice(tmp_path, config):
    source = make_legacy_db(tmp_path / "zepix_bot.db")
    from sync_app.legacy import migrate_legacy

    migrate_legacy(source, "combined_v3", "combined_v3%")
    with closing(sqlite3.connect(source)) as connection:  # as if the marks were never written
        connection.execute("UPDATE trades SET migrated_to_plugin = NULL")
        connection.commit()
    report = migrate_legacy(source, "combined_v3", "combined_v3%")
    assert (report.matched, report.copied, report.already_in_plugin, report.marked) == (3, 0, 3, 3)


def test_migrate_legacy_dry_run_and_since_change_nothing_or_filter(tmp_path, config, capsys):
    source = make_legacy_db(tmp_path / "zepix_bot.db")
    call_command(
        "migrate_legacy",
        "--source",
        str(source),
        "--plugin",
        "combined_v3",
        "--match",
        "combined%",
        "--since",
        "2026-02-01",
        "--dry-run",
    )
    assert "Dry run: would copy 2 of 2" in capsys.readouterr().out
    assert set(legacy_marks(source).values()) == {None}
    with PluginStore(plugins.database_path("combined_v3")) as store:
        assert store.max_ticket() == 0


def test_migrate_legacy_refuses_bad_sources_clearly(tmp_path, config):
    with pytest.raises(CommandError, match="No legacy database"):
        call_command("migrate_legacy", "--source", str(tmp_path / "nope.db"), "--plugin", "combined_v3", "--match", "%")
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE trades (ticket INTEGER)")
    with pytest.raises(CommandError, match="lacks"):
        call_command("migrate_legacy", "--source", str(other), "--plugin", "combined_v3", "--match", "%")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CommandError, match="not a readable SQLite"):
        call_command("migrate_legacy", "--source", str(tmp_path / "junk.db"), "--plugin", "combined_v3", "--match", "%")


def make_seed_shaped_legacy_db(path: Path) -> Path:
    """The seed's legacy shape: the ticket as mt5_ticket, no migrated_to_plugin column yet."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(
            "CREATE TABLE trades (id INTEGER PRIMARY KEY AUTOINCREMENT, mt5_ticket INTEGER UNIQUE, symbol TEXT, "
            "direction TEXT, lot_size REAL, entry_price REAL, sl_price REAL, tp_price REAL, entry_time TEXT, "
            "exit_time TEXT, exit_price REAL, profit_pips REAL, profit_dollars REAL, commission REAL, swap REAL, "
            "status TEXT, close_reason TEXT, signal_data TEXT, comment TEXT)"
        )
        connection.executemany(
            "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time, status, comment) "
            "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, '2026-05-01 10:00:00', 'OPEN', ?)",
            [(6001, "combined_v3 entry"), (6002, "price_action_v6 entry"), (6003, "combined_v3 entry")],
        )
        connection.commit()
    return path


def test_migrate_legacy_takes_the_seeds_shape_and_a_dry_run_changes_nothing(tmp_path, config, capsys):
    source = make_seed_shaped_legacy_db(tmp_path / "zepix_bot.db")
    before = source.read_bytes()
    args = ["migrate_legacy", "--source", str(source), "--plugin", "combined_v3", "--match", "combined_v3%"]
    call_command(*args, "--dry-run")
    assert "Dry run: would copy 2 of 2" in capsys.readouterr().out
    assert source.read_bytes() == before  # not even the migrated_to_plugin column
    call_command(*args)
    assert "Copied 2 of 2" in capsys.readouterr().out
    with closing(sqlite3.connect(source)) as connection:
        marks = dict(connection.execute("SELECT mt5_ticket, migrated_to_plugin FROM trades"))
    assert marks == {6001: "combined_v3", 6002: None, 6003: "combined_v3"}
    with PluginStore(plugins.database_path("combined_v3")) as store:
        assert {t["mt5_ticket"] for t in store.open_trades()} == {6001, 6003}
    call_command(*args)
    assert "Copied 0 of 0" in capsys.readouterr().out
