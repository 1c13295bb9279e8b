"""Backups are consistent, checked, compressed, checksummed and recorded; restores bring back
exactly what was backed up; retention keeps exactly the right ones."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import backup as backups
from sync_app import shipping
from sync_app.models import Backup
from sync_app.retention import Policy, apply_retention, backups_to_keep
from tests.helpers import closed_trade, trade
from zepix_admin.core.models import Alert

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def trades_in(plugin_id):
    with closing(sqlite3.connect(plugins.database_path(plugin_id))) as connection:
        return connection.execute(
            "SELECT mt5_ticket, status, profit_dollars, change_seq FROM trades ORDER BY mt5_ticket"
        ).fetchall()


@pytest.fixture
def seeded(config):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(1), closed_trade(2, 12.5), closed_trade(3, -4.0)])


def test_a_backup_is_a_compressed_checked_and_recorded_copy(seeded, settings):
    backup = backups.backup_database("plugin_combined_v3")
    path = Path(backup.path)
    assert path.parent == settings.BACKUP_DIR and path.name.startswith("plugin_combined_v3-")
    assert path.name.endswith(".sqlite3.zst")
    assert backup.verified and backup.row_counts["trades"] == 3
    assert 0 < backup.size_bytes < backup.database_bytes
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == backup.sha256
    assert not list(settings.BACKUP_DIR.glob(".work-*"))


def test_backup_then_restore_gives_back_the_same_rows(seeded):
    before = trades_in("combined_v3")
    backup = backups.backup_database("plugin_combined_v3")
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(4))
        store.close_trade(1, exit_price=1.1, profit_pips=5, profit_dollars=5.0, close_reason="MANUAL")
    assert trades_in("combined_v3") != before
    alias, aside = backups.restore_backup(str(backup.pk))
    assert alias == "plugin_combined_v3"
    assert trades_in("combined_v3") == before
    with closing(sqlite3.connect(aside)) as kept:  # the file it replaced is kept aside, whole
        assert kept.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 4
    with PluginStore(plugins.database_path("combined_v3")) as store:  # and the bot can write again
        store.save_trade(**trade(5))
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_restore_by_path_through_the_command(seeded, capsys):
    backup = backups.backup_database("plugin_combined_v3")
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(9))
    call_command("restore_backup", backup.path)
    assert "Restored plugin_combined_v3" in capsys.readouterr().out
    assert [row[0] for row in trades_in("combined_v3")] == [1, 2, 3]


def test_a_damaged_backup_is_refused_and_nothing_is_restored(seeded):
    backup = backups.backup_database("plugin_combined_v3")
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(8))
    current = trades_in("combined_v3")
    data = bytearray(Path(backup.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(backup.path).write_bytes(bytes(data))
    with pytest.raises(CommandError, match="Nothing was restored"):
        call_command("restore_backup", str(backup.pk))
    assert trades_in("combined_v3") == current


def test_the_restore_drill_finds_a_bad_backup_and_raises_an_alert(seeded, capsys):
    good = backups.backup_database("plugin_combined_v3")
    bad = backups.backup_database("plugin_price_action_v6")
    Path(bad.path).write_bytes(b"garbage")
    with pytest.raises(CommandError, match="1 backup"):
        call_command("verify_backups")
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.verified and not bad.verified
    assert "cannot be decompressed" in bad.verify_error
    assert Alert.objects.get(source="restore_drill").subject == "plugin_price_action_v6"


def test_the_drill_compares_row_counts_with_those_recorded(seeded):
    backup = backups.backup_database("plugin_combined_v3")
    backup.row_counts = {**backup.row_counts, "trades": 99}
    backup.save()
    assert "row counts differ" in backups.verify_backup(backup)


def test_a_backup_is_consistent_while_the_bot_writes(seeded):
    import threading

    stop = threading.Event()

    def bot():
        with PluginStore(plugins.database_path("combined_v3")) as store:
            ticket = 1000
            while not stop.is_set():
                store.save_trade(**trade(ticket))
                ticket += 1

    writer = threading.Thread(target=bot)
    writer.start()
    try:
        made = [backups.backup_database("plugin_combined_v3") for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    assert all(backups.verify_backup(backup) == "" for backup in made)


def test_backup_command_backs_up_every_database(seeded, capsys):
    call_command("backup_databases")
    assert set(Backup.objects.values_list("database", flat=True)) == {
        "default",
        "plugin_combined_v3",
        "plugin_price_action_v6",
    }
    with pytest.raises(CommandError, match="Unknown database"):
        call_command("backup_databases", "--db", "../etc")


def day(text, hour=12):
    return datetime.fromisoformat(text).replace(hour=hour, tzinfo=UTC)


def test_retention_keeps_exactly_the_right_backups_on_a_made_up_calendar():
    now = day("2026-11-25", 18)  # a Wednesday
    calendar = {}
    start = day("2025-06-01", 3)
    moment, next_id = start, 1
    while moment <= now:  # a backup every 6 hours for 18 months
        calendar[next_id] = moment
        moment, next_id = moment + timedelta(hours=6), next_id + 1
    kept = backups_to_keep([(i, at, True) for i, at in calendar.items()], now, Policy(daily=7, weekly=4, monthly=12))
    kept_times = sorted(calendar[i] for i in kept)

    last_24h = [at for at in calendar.values() if now - at < timedelta(hours=24)]
    newest_per_day = [
        max(at for at in calendar.values() if at.date() == d)
        for d in (now.date() - timedelta(days=n) for n in range(7))
    ]
    weeks = [(now.date() - timedelta(days=now.weekday()) - timedelta(weeks=n)) for n in range(4)]
    newest_per_week = [max(at for at in calendar.values() if w <= at.date() < w + timedelta(days=7)) for w in weeks]
    months = [(2026, m) for m in range(11, 0, -1)] + [(2025, 12)]
    newest_per_month = [max(at for at in calendar.values() if (at.year, at.month) == ym) for ym in months]
    expected = sorted(set(last_24h + newest_per_day + newest_per_week + newest_per_month))
    assert kept_times == expected
    assert day("2025-12-31", 21) in kept_times  # the newest of the twelfth month back
    assert not any(at < day("2025-12-31", 21) for at in kept_times)
    # last 24 h (4), the 5 older days of the week of days, 2 older weeks (the third is among the
    # days), 11 older months
    assert len(kept_times) == 4 + 5 + 2 + 11


def test_retention_never_deletes_the_newest_verified_backup():
    now = day("2026-11-25")
    old = [(1, day("2024-01-01"), True), (2, day("2024-01-02"), False), (3, day("2024-02-01"), False)]
    assert backups_to_keep(old, now, Policy()) == {1}


def test_retention_deletes_files_and_records_it_does_not_keep(seeded, settings):
    # Midday: run in the first hours of a UTC day, 1 and 1.2 days back fell on two calendar days.
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    made = [backups.backup_database("plugin_combined_v3", now=now - timedelta(days=days)) for days in (0, 1, 1.2, 40)]
    deleted = apply_retention(now=now, policy=Policy(daily=7, weekly=0, monthly=0))
    assert {b.pk for b in deleted} == {made[2].pk, made[3].pk}
    assert not Path(made[3].path).exists() and Path(made[0].path).exists()
    assert set(Backup.objects.values_list("pk", flat=True)) == {made[0].pk, made[1].pk}


def test_a_central_restore_that_fails_after_its_swap_puts_the_previous_database_back(seeded, monkeypatch):
    """The carry-over into the restored central database (users, tokens, the audit log, the
    config history) runs after the swap: when it fails, the database of before is put back,
    not left with the backup's tokens. The failure is injected (a disk error cannot be had on
    demand here): the config history's continuation raises, as a full disk would there."""
    from django.db import OperationalError

    from config_app import service as config_service
    from sync_app.models import AggregatedTrade
    from sync_app.sync import run_sync

    backup = backups.backup_database("default")
    run_sync(trigger="test")  # after the backup: three trades the backup does not have
    assert AggregatedTrade.objects.count() == 3

    def full_disk(mark):
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(config_service, "continue_history", full_disk)
    with pytest.raises(backups.BackupError, match="could not be carried into the restored one.*back as it was"):
        backups.restore_backup(str(backup.pk))
    assert AggregatedTrade.objects.count() == 3

    monkeypatch.undo()  # and the same restore then goes through
    backups.restore_backup(str(backup.pk))
    assert AggregatedTrade.objects.count() == 0


def decompressed(backup, tmp_path) -> sqlite3.Connection:
    path = tmp_path / f"backup-{backup.pk}.sqlite3"
    backups.decompress(Path(backup.path), path)
    return sqlite3.connect(path)


def identity_of(path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return shipping.identity_of(connection)


def test_a_backup_is_the_files_pages_of_one_snapshot_with_a_new_identity(seeded, tmp_path, caplog):
    live = plugins.database_path("combined_v3")
    before = identity_of(live)
    with caplog.at_level("INFO", logger="zepix.backup"):
        backup = backups.backup_database("plugin_combined_v3")
    assert "copied first" not in caplog.text  # read from the file, not copied by SQLite's backup
    with closing(decompressed(backup, tmp_path)) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # a standalone file
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 3
        copied = shipping.identity_of(copy)
    assert copied != before and len(copied) == 32  # put back by hand, it is told apart
    assert identity_of(live) == before  # the live file keeps its own


def test_a_backup_copies_the_database_first_when_a_reader_of_an_older_state_holds_its_log(seeded, tmp_path, caplog):
    live = plugins.database_path("combined_v3")
    with closing(sqlite3.connect(live, isolation_level=None)) as older:
        older.execute("BEGIN")
        older.execute("SELECT COUNT(*) FROM trades").fetchone()  # reads the state of three trades
        with PluginStore(live) as store:
            store.save_trade(**trade(4))  # written after it: in the log, which that reader holds
        with caplog.at_level("INFO", logger="zepix.backup"):
            backup = backups.backup_database("plugin_combined_v3")
    assert "copied first" in caplog.text
    assert backup.verified and backup.row_counts["trades"] == 4
    with closing(decompressed(backup, tmp_path)) as copy:
        assert shipping.identity_of(copy) != identity_of(live)


def test_a_disk_error_while_a_backup_writes_ends_it_with_that_error_and_never_hangs():
    import io

    class FailingDisk(io.BytesIO):
        def fileno(self):
            return 987_654  # no such descriptor: its sync fails as a failing disk's does

    with pytest.raises(OSError), backups._SyncedFile(FailingDisk()) as out:
        for _ in range(8):  # past the first sync and past what may wait unsynced
            out.write(bytes(backups.SYNC_EVERY_BYTES))
        out.sync()
