"""The sync brings the central database up to date with every enabled plugin, incrementally,
idempotently, and without letting one plugin's failure stop the others."""

import fcntl
import sqlite3
from contextlib import closing
from datetime import UTC, timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections

from plugins_app import plugins
from plugins_app.schema import ANY_NUMBER_LIMIT, INT32, NUMBER_LIMITS
from plugins_app.store import PluginStore, db_datetime
from sync_app import sync
from sync_app.models import (
    AggregatedChain,
    AggregatedChainLevel,
    AggregatedDailyStats,
    AggregatedTrade,
    CrossPluginStats,
    PluginSyncState,
    SyncRun,
    SystemMetrics,
    TradeTotals,
)
from tests.helpers import NOW, closed_trade, trade
from zepix_admin.core.databases import database_file
from zepix_admin.core.models import Alert

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def store(plugin_id):
    return PluginStore(plugins.database_path(plugin_id))


@pytest.fixture
def fast_retries(config):
    config("global", "sync.retry_delays_seconds", [0.01, 0.01, 0.01])
    config("global", "sync.lock_wait_seconds", 0.2)
    return config


@pytest.fixture
def trades(config):
    with store("combined_v3") as combined, store("price_action_v6") as price_action:
        combined.save_trades([trade(1), closed_trade(2, 25.0), closed_trade(3, -10.0)])
        price_action.save_trades([trade(1, symbol="XAUUSD"), closed_trade(9, 7.5)])


def outcome(run, plugin_id):
    """What a finished run did for one plugin, without how long each step took."""
    return {
        key: run.plugins[plugin_id][key] for key in ("inserted", "updated", "removed", "retries", "error", "reconciled")
    }


def central_rows():
    return sorted(AggregatedTrade.objects.values_list("plugin_id", "mt5_ticket", "status", "profit_dollars"))


def plugin_rows(plugin_id):
    with closing(sqlite3.connect(plugins.database_path(plugin_id))) as connection:
        return sorted(
            (plugin_id, *row) for row in connection.execute("SELECT mt5_ticket, status, profit_dollars FROM trades")
        )


def test_a_sync_copies_every_plugins_trades_with_the_plugin_id(trades):
    run = sync.run_sync(trigger="command")
    assert run.status == SyncRun.Status.OK
    assert run.plugins["combined_v3"]["state"] == "done"
    assert outcome(run, "combined_v3") == {
        "inserted": 3,
        "updated": 0,
        "removed": 0,
        "retries": 0,
        "error": "",
        "reconciled": False,
    }
    assert run.plugins["price_action_v6"]["inserted"] == 2
    assert [(p, t, s) for p, t, s, _ in central_rows()] == [
        ("combined_v3", 1, "OPEN"),
        ("combined_v3", 2, "CLOSED"),
        ("combined_v3", 3, "CLOSED"),
        ("price_action_v6", 1, "OPEN"),
        ("price_action_v6", 9, "CLOSED"),
    ]
    stats = {(s.plugin_id, s.trades_count, s.wins, s.losses, float(s.profit)) for s in CrossPluginStats.objects.all()}
    assert stats == {("combined_v3", 2, 1, 1, 15.0), ("price_action_v6", 1, 1, 0, 7.5)}
    metrics = SystemMetrics.objects.first()
    assert (metrics.total_open_trades, metrics.active_plugin_ids, metrics.total_trades) == (
        2,
        ["combined_v3", "price_action_v6"],
        5,
    )


def test_a_large_sync_lets_other_writers_in_between_its_transactions_and_counts_each_trade_once(
    config, monkeypatch, settings
):
    """On SQLite a sync's transaction holds the central database's write lock: a config save
    waited for a plugin's whole first sync (5 s for 600,000 trades; past the 20 s busy timeout it
    would have failed). A sync now copies at most SYNC_TRADES_PER_TRANSACTION trades a transaction and
    pauses between them; a save made in each pause commits."""
    from sync_app.models import PluginSyncState

    if connections["default"].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run (it locks rows: a save never waits)")
    settings.SYNC_TRADES_PER_TRANSACTION = 40
    with store("combined_v3") as combined:
        combined.save_trades([closed_trade(n, 1.0 if n % 3 else -2.0) for n in range(1, 101)])
    seen_in_pauses = []

    def a_save_in_the_pause():
        config("combined_v3", "max_lot_size", round(0.2 + len(seen_in_pauses) / 100, 2))  # a write: committed
        state = PluginSyncState.objects.get(plugin_id="combined_v3")
        seen_in_pauses.append((AggregatedTrade.objects.filter(plugin_id="combined_v3").count(), state.high_water_mark))

    monkeypatch.setattr(sync, "let_writers_in", a_save_in_the_pause)
    run = sync.run_sync(trigger="command")
    assert run.status == SyncRun.Status.OK and run.plugins["combined_v3"]["inserted"] == 100
    assert [count for count, _ in seen_in_pauses] == [40, 80]  # each transaction's trades, and its mark
    assert seen_in_pauses[0][1] < seen_in_pauses[1][1]
    assert central_rows() == plugin_rows("combined_v3")
    totals = CrossPluginStats.objects.filter(plugin_id="combined_v3")
    assert sum(day.trades_count for day in totals) == 100 and sum(day.wins for day in totals) == 67
    assert sum(float(day.profit) for day in totals) == 67 * 1.0 - 33 * 2.0
    assert sum(TradeTotals.objects.filter(plugin_id="combined_v3").values_list("trades_count", flat=True)) == 100
    assert sync.run_sync(trigger="command").plugins["combined_v3"]["inserted"] == 0  # nothing twice


def test_a_restored_plugin_is_reconciled_a_transaction_at_a_time_and_the_bot_writing_meanwhile_is_kept(
    config, monkeypatch, settings
):
    """After a restore the sync copied every trade of the file again and rebuilt the plugin's
    totals in one transaction, holding every other writer of the central SQLite file for all of
    it (about 4 s per 200,000 trades). It now takes out what the file no longer has, then copies
    the file's trades SYNC_TRADES_PER_TRANSACTION at a time; the bot updating, closing and adding
    trades between the transactions, and a save in each pause, change none of the totals' truth."""
    from sync_app import backup as backups

    if connections["default"].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run (it locks rows: a save never waits)")
    with store("combined_v3") as combined:
        combined.save_trades([closed_trade(n, 1.0 if n % 3 else -2.0) for n in range(1, 81)] + [trade(81), trade(82)])
    backup = backups.backup_database("plugin_combined_v3")
    with store("combined_v3") as combined:  # after the backup: the restore takes these away
        combined.save_trades([closed_trade(n, 5.0, symbol="GBPUSD") for n in range(100, 110)])
        combined.update_trade(2, profit_dollars=-7.0)
    sync.run_sync(trigger="command")
    backups.restore_backup(str(backup.pk))

    settings.SYNC_TRADES_PER_TRANSACTION = 25
    bot_writes = iter(
        [
            lambda bot: bot.close_trade(81, exit_price=1.09, profit_pips=9, profit_dollars=9.0, close_reason="TP"),
            lambda bot: (bot.update_trade(4, profit_dollars=3.5), bot.update_trade(70, symbol="XAUUSD")),
            lambda bot: bot.save_trade(**closed_trade(200, -1.0)),
        ]
    )
    seen_in_pauses = []

    def the_bot_and_a_save_in_the_pause():
        with store("combined_v3") as bot:
            next(bot_writes, lambda bot: None)(bot)
        config("combined_v3", "max_lot_size", round(0.2 + len(seen_in_pauses) / 100, 2))  # a write: committed
        seen_in_pauses.append(PluginSyncState.objects.get(plugin_id="combined_v3").high_water_mark)

    monkeypatch.setattr(sync, "let_writers_in", the_bot_and_a_save_in_the_pause)
    run = sync.run_sync(trigger="command")
    result = run.plugins["combined_v3"]
    assert run.status == SyncRun.Status.OK and result["reconciled"] and result["removed"] == 10
    assert len(seen_in_pauses) >= 3 and seen_in_pauses == sorted(seen_in_pauses)  # several transactions
    sync.run_sync(trigger="command")  # what the bot wrote in the last pause
    assert central_rows() == plugin_rows("combined_v3")
    assert kept_totals() == recounted_totals()
    closed = AggregatedTrade.objects.filter(plugin_id="combined_v3", status="CLOSED")
    days = CrossPluginStats.objects.filter(plugin_id="combined_v3")
    assert sum(day.trades_count for day in days) == closed.count() == 82
    assert sum(day.wins for day in days) == closed.filter(profit_dollars__gt=0).count()
    assert round(sum(float(day.profit) for day in days), 2) == round(sum(float(t.profit_dollars) for t in closed), 2)
    assert sync.run_sync(trigger="command").plugins["combined_v3"]["updated"] == 0  # nothing twice


def test_running_twice_changes_nothing(trades):
    sync.run_sync(trigger="command")
    before = central_rows(), sorted(CrossPluginStats.objects.values_list("plugin_id", "date", "trades_count", "profit"))
    run = sync.run_sync(trigger="command")
    assert all(result["inserted"] == result["updated"] == 0 for result in run.plugins.values())
    assert (
        central_rows(),
        sorted(CrossPluginStats.objects.values_list("plugin_id", "date", "trades_count", "profit")),
    ) == before


def test_a_trade_closed_after_it_was_synced_is_updated_centrally(trades):
    sync.run_sync(trigger="command")
    with store("combined_v3") as combined:
        combined.close_trade(1, exit_price=1.09, profit_pips=50, profit_dollars=50.0, close_reason="TP", exit_time=NOW)
        combined.save_trade(**trade(4))
    run = sync.run_sync(trigger="command")
    assert outcome(run, "combined_v3") == {
        "inserted": 1,
        "updated": 1,
        "removed": 0,
        "retries": 0,
        "error": "",
        "reconciled": False,
    }
    assert run.plugins["price_action_v6"]["inserted"] == 0
    synced = AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=1)
    assert (synced.status, synced.close_reason, float(synced.profit_dollars)) == ("CLOSED", "TP", 50.0)
    day = CrossPluginStats.objects.get(plugin_id="combined_v3", date=NOW.date())
    assert (day.trades_count, day.wins, float(day.profit)) == (3, 2, 65.0)
    assert central_rows() == sorted(plugin_rows("combined_v3") + plugin_rows("price_action_v6"))


def test_a_corrected_profit_and_a_swap_update_reach_the_central_copy_and_the_totals(trades):
    sync.run_sync(trigger="command")
    with store("combined_v3") as combined:
        combined.update_trade(2, profit_dollars=-4.0)  # a closed winner corrected into a loser
        combined.update_trade(3, swap=-1.5)  # the day's totals do not move
    run = sync.run_sync(trigger="command")
    assert run.plugins["combined_v3"]["updated"] == 2
    assert central_rows() == sorted(plugin_rows("combined_v3") + plugin_rows("price_action_v6"))
    assert float(AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=3).swap) == -1.5
    lowest = AggregatedTrade.objects.filter(plugin_id="combined_v3").order_by("profit_dollars", "id")
    assert [row.mt5_ticket for row in lowest if row.profit_dollars is not None] == [3, 2]  # the profit sort follows
    day = CrossPluginStats.objects.get(plugin_id="combined_v3", date=NOW.date())
    assert (day.trades_count, day.wins, day.losses, float(day.profit)) == (2, 0, 2, -14.0)
    assert kept_totals() == recounted_totals()


def test_a_trade_moved_to_another_day_leaves_both_days_right(trades):
    sync.run_sync(trigger="command")
    with store("combined_v3") as combined:
        combined.update_trade(2, exit_time=NOW - timedelta(days=3))
    sync.run_sync(trigger="command")
    days = dict(CrossPluginStats.objects.filter(plugin_id="combined_v3").values_list("date", "trades_count"))
    assert days == {NOW.date(): 1, (NOW - timedelta(days=3)).date(): 1}


def test_a_disabled_plugin_is_not_synced(trades, config):
    config("price_action_v6", "enabled", False)
    run = sync.run_sync(trigger="command")
    assert set(run.plugins) == {"combined_v3"}
    assert not AggregatedTrade.objects.filter(plugin_id="price_action_v6").exists()


def test_a_missing_plugin_database_is_retried_then_counted_while_the_others_sync(trades, fast_retries):
    plugins.database_path("price_action_v6").rename(settings.DATA_DIR / "moved-away.sqlite3")
    waits = []
    try:
        run = sync.run_sync(trigger="command", sleep=waits.append)
    finally:
        (settings.DATA_DIR / "moved-away.sqlite3").rename(plugins.database_path("price_action_v6"))
    assert waits == [0.01, 0.01, 0.01]
    assert run.status == SyncRun.Status.PARTIAL
    assert run.plugins["price_action_v6"]["retries"] == 3
    assert "its database file is missing" in run.plugins["price_action_v6"]["error"]
    assert run.plugins["combined_v3"]["inserted"] == 3
    assert PluginSyncState.objects.get(plugin_id="price_action_v6").consecutive_failures == 1
    assert not Alert.objects.exists()  # below the threshold of 3
    assert sync.health()["plugins"]["price_action_v6"]["health"] == sync.DEGRADED


def test_a_locked_plugin_database_is_retried_and_then_synced(trades, fast_retries):
    path = plugins.database_path("combined_v3")
    # An exclusive lock on a WAL database needs every other connection closed: the console's
    # own idle one (left open by the test database's creation when this test runs first) too.
    connections["plugin_combined_v3"].close()
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE trades SET swap = 0")
    waits = []

    def wait_then_unlock(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            locker.execute("COMMIT")
            locker.close()  # lets go of the exclusive lock

    run = sync.run_sync(trigger="command", sleep=wait_then_unlock)
    assert run.status == SyncRun.Status.OK
    assert run.plugins["combined_v3"]["retries"] == 2
    assert run.plugins["combined_v3"]["inserted"] == 3
    assert PluginSyncState.objects.get(plugin_id="combined_v3").consecutive_failures == 0


def test_a_corrupt_plugin_database_raises_an_alert_and_the_others_still_sync(trades, fast_retries):
    fast_retries("global", "sync.alert_after_failures", 1)
    path = plugins.database_path("price_action_v6")
    with closing(sqlite3.connect(path)) as connection:  # a page in the log is read from there, not the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    original = path.read_bytes()
    path.write_bytes(b"this is not a database" * 500)
    try:
        run = sync.run_sync(trigger="command", sleep=lambda seconds: None)
    finally:
        path.write_bytes(original)
    assert run.status == SyncRun.Status.PARTIAL
    assert "not a database" in run.plugins["price_action_v6"]["error"]
    assert AggregatedTrade.objects.filter(plugin_id="combined_v3").count() == 3
    alert = Alert.objects.get()
    assert (alert.source, alert.subject, alert.level) == ("sync", "price_action_v6", "CRITICAL")
    assert sync.health()["overall"] == sync.FAILING


def test_consecutive_failures_count_up_alert_once_and_reset(trades, fast_retries):
    plugins.database_path("price_action_v6").rename(settings.DATA_DIR / "gone.sqlite3")
    try:
        for _ in range(4):
            sync.run_sync(trigger="command", sleep=lambda seconds: None)
        assert PluginSyncState.objects.get(plugin_id="price_action_v6").consecutive_failures == 4
        assert Alert.objects.filter(subject="price_action_v6").count() == 1  # not one per run
        sync.reset_failures("price_action_v6")
        assert sync.health()["plugins"]["price_action_v6"]["health"] == sync.OK
    finally:
        (settings.DATA_DIR / "gone.sqlite3").rename(plugins.database_path("price_action_v6"))
    sync.run_sync(trigger="command")
    assert AggregatedTrade.objects.filter(plugin_id="price_action_v6").count() == 2


def test_an_alert_is_posted_to_the_configured_webhook(trades, fast_retries, webhook_receiver):
    url, posted = webhook_receiver
    fast_retries("global", "sync.alert_webhook_url", url)
    fast_retries("global", "sync.alert_after_failures", 1)
    plugins.database_path("combined_v3").rename(settings.DATA_DIR / "gone.sqlite3")
    try:
        sync.run_sync(trigger="command", sleep=lambda seconds: None)
    finally:
        (settings.DATA_DIR / "gone.sqlite3").rename(plugins.database_path("combined_v3"))
    assert [(hook["source"], hook["subject"]) for hook in posted()] == [("sync", "combined_v3")]


def test_only_one_sync_runs_at_a_time(trades):
    with open(settings.DATA_DIR / "sync.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(sync.SyncAlreadyRunning):
            sync.run_sync(trigger="command")
        with pytest.raises(CommandError, match="Another sync is running"):
            call_command("sync_plugins")
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert not SyncRun.objects.exists()


def test_a_run_left_running_by_a_crash_is_marked_aborted(trades):
    from django.utils import timezone

    stale = SyncRun.objects.create(started_at=timezone.now(), trigger="schedule")
    sync.run_sync(trigger="command")
    stale.refresh_from_db()
    assert stale.status == SyncRun.Status.ABORTED


def test_the_command_prints_what_it_did_and_fails_when_a_plugin_failed(trades, fast_retries, capsys):
    call_command("sync_plugins", "--plugin", "combined_v3")
    out = capsys.readouterr().out
    assert "combined_v3: 3 inserted, 0 updated, 0 removed, 0 retries" in out and "price_action_v6" not in out
    plugins.database_path("price_action_v6").rename(settings.DATA_DIR / "gone.sqlite3")
    try:
        with pytest.raises(CommandError, match="price_action_v6"):
            call_command("sync_plugins")
    finally:
        (settings.DATA_DIR / "gone.sqlite3").rename(plugins.database_path("price_action_v6"))


@pytest.mark.parametrize("bad", ["../x", "nosuch"])
def test_the_command_refuses_a_bad_plugin_id(trades, bad):
    with pytest.raises(CommandError, match="plugin id|Unknown plugin"):
        call_command("sync_plugins", "--plugin", bad)


def test_a_plugin_database_restored_to_an_older_state_is_synced_again_from_the_start(trades):
    sync.run_sync(trigger="command")
    PluginSyncState.objects.filter(plugin_id="combined_v3").update(high_water_mark=10_000)
    with store("combined_v3") as combined:
        combined.update_trade(1, swap=-3)
    run = sync.run_sync(trigger="command")
    assert run.plugins["combined_v3"]["updated"] == 3
    assert float(AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=1).swap) == -3.0


def test_a_correction_of_how_a_trade_was_opened_reaches_the_central_copy(trades):
    sync.run_sync(trigger="command")
    with store("combined_v3") as combined:
        combined.update_trade(2, symbol="GBPUSD", entry_price=1.27, entry_time=NOW - timedelta(hours=5))
    run = sync.run_sync(trigger="command")
    assert run.plugins["combined_v3"]["updated"] == 1
    synced = AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=2)
    assert (synced.symbol, float(synced.entry_price), synced.entry_time) == ("GBPUSD", 1.27, NOW - timedelta(hours=5))
    assert AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=3).symbol == "EURUSD"


def recounted_totals():
    """The trade totals counted afresh from the central trades, the way the rollup must agree."""
    counted: dict = {}
    for trade_row in AggregatedTrade.objects.all():
        key = (
            trade_row.plugin_id,
            trade_row.entry_time.date(),
            trade_row.symbol,
            trade_row.direction,
            trade_row.status,
        )
        count, profit = counted.get(key, (0, 0.0))
        counted[key] = (count + 1, round(profit + float(trade_row.profit_dollars or 0), 2))
    return counted


def kept_totals():
    return {
        (t.plugin_id, t.day, t.symbol, t.direction, t.status): (t.trades_count, float(t.profit))
        for t in TradeTotals.objects.all()
    }


def test_the_trade_totals_stay_exact_through_closes_corrections_and_a_replaced_file(trades):
    sync.run_sync(trigger="command")
    assert kept_totals() == recounted_totals() and sum(c for c, _ in kept_totals().values()) == 5
    with store("combined_v3") as combined:
        combined.close_trade(1, exit_price=1.09, profit_pips=50, profit_dollars=50.0, close_reason="TP", exit_time=NOW)
        combined.update_trade(2, symbol="GBPUSD", entry_time=NOW - timedelta(days=2))
        combined.save_trade(**trade(4, direction="SELL"))
    sync.run_sync(trigger="command")
    assert kept_totals() == recounted_totals()
    assert kept_totals()[("combined_v3", NOW.date(), "EURUSD", "BUY", "CLOSED")] == (2, 40.0)
    PluginSyncState.objects.filter(plugin_id="combined_v3").update(high_water_mark=10_000)  # as after a restore
    with store("combined_v3") as combined:
        combined.update_trade(3, profit_dollars=-12.5)
    run = sync.run_sync(trigger="command")
    assert run.plugins["combined_v3"]["reconciled"]
    assert kept_totals() == recounted_totals()
    assert sync.run_sync(trigger="command").plugins["combined_v3"]["updated"] == 0
    assert kept_totals() == recounted_totals()


def test_a_sync_run_leaves_what_it_wrote_in_the_central_file_itself(trades):
    """The run's pages are copied from the log into the file before it ends, its own record
    included: a copy of the file alone (or a log lost with a disk) has them."""
    if connections["default"].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run (it checkpoints by itself)")
    run = sync.run_sync(trigger="command")
    central = database_file("default")
    with closing(sqlite3.connect(f"file:{central}?immutable=1", uri=True)) as file_alone:  # the log unread
        assert file_alone.execute("SELECT COUNT(*) FROM aggregated_trades").fetchone() == (5,)
        assert file_alone.execute("SELECT status FROM sync_app_syncrun WHERE id = ?", (run.pk,)).fetchone() == ("OK",)


def test_a_bot_host_silent_for_three_intervals_makes_its_plugin_degraded(trades):
    from datetime import timedelta

    from django.utils import timezone

    from sync_app.models import ShippingState

    ShippingState.objects.create(
        plugin_id="combined_v3", host="host-a", every_seconds=10, last_batch_at=timezone.now() - timedelta(seconds=25)
    )
    assert sync.health()["plugins"]["combined_v3"]["health"] == sync.OK  # 2.5 intervals: not yet
    ShippingState.objects.update(last_batch_at=timezone.now() - timedelta(seconds=31))
    report = sync.health()
    assert report["overall"] == sync.DEGRADED
    assert report["plugins"]["combined_v3"]["health"] == sync.DEGRADED
    assert "host-a has not shipped for 31 s (it ships every 10 s)" in report["plugins"]["combined_v3"]["host_silent"]
    assert report["plugins"]["price_action_v6"]["health"] == sync.OK


def test_a_sync_refused_by_a_full_disk_says_so_in_the_operators_words(config):
    """What the sync page and the alert say of a plugin whose copy the central database refused
    for want of room: it said "OperationalError: database or disk is full"."""
    refused = sqlite3.OperationalError("database or disk is full")
    refused.sqlite_errorcode = sqlite3.SQLITE_FULL
    said = sync.describe_failure("combined_v3", refused)
    assert said.startswith("The disk holding") and "is full" in said
    assert "It is synced once there is room" in said and str(settings.BACKUP_DIR) in said


def test_the_largest_values_a_bot_may_write_go_through_the_sync_and_out_of_the_console_on_either_engine(config):
    """The plugin's checks (plugins_app.schema.NUMBER_LIMITS) refuse what the central copy could not
    take or give back: just inside them, every value is synced and read back through the ORM (a
    DecimalField's digits on PostgreSQL, Django's reading of SQLite); just beyond, the bot's
    write is refused."""
    near = {column: limit * 0.999 for column, limit in NUMBER_LIMITS["trades"].items()}
    with closing(sqlite3.connect(plugins.database_path("combined_v3"))) as bot:
        for ticket in (1, 2):  # two on one day: their day's and symbol's totals too
            bot.execute(
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, sl_price, tp_price, "
                "entry_time, exit_time, exit_price, profit_pips, profit_dollars, commission, swap, status, "
                "close_reason) VALUES (:ticket, 'EURUSD', 'BUY', :lot_size, :entry_price, :sl_price, :tp_price, "
                "'2026-11-27 10:00:00', '2026-11-27T11:00:00+00:00', :exit_price, :profit_pips, :profit_dollars, "
                ":commission, :swap, 'CLOSED', 'TP')",
                {"ticket": ticket, **near},
            )
        bot.execute(
            "INSERT INTO profit_chains (chain_id, base_trade_id, status, current_level, max_levels, "
            "total_profit_booked) VALUES ('c-1', 1, 'ACTIVE', ?, ?, ?)",
            (INT32, INT32, ANY_NUMBER_LIMIT * 0.999),
        )
        bot.execute(
            "INSERT INTO chain_levels (chain_id, level_number, executed_at, profit_dollars) VALUES ('c-1', ?, ?, ?)",
            (INT32, "2026-11-27 11:00:00.123456", -ANY_NUMBER_LIMIT * 0.999),
        )
        bot.execute(
            "INSERT INTO daily_stats (date, total_trades, winning_trades, total_profit_dollars) VALUES (?, ?, ?, ?)",
            ("2026-11-27", INT32, INT32, ANY_NUMBER_LIMIT * 0.999),
        )
        bot.commit()
        for statement, value in (
            ("UPDATE trades SET profit_dollars = ? WHERE mt5_ticket = 1", NUMBER_LIMITS["trades"]["profit_dollars"]),
            ("UPDATE trades SET lot_size = ? WHERE mt5_ticket = 1", NUMBER_LIMITS["trades"]["lot_size"]),
            ("UPDATE profit_chains SET current_level = ?", INT32 + 1),
            ("UPDATE chain_levels SET profit_dollars = ?", ANY_NUMBER_LIMIT),
            ("UPDATE daily_stats SET losing_trades = ?", -INT32 - 1),
        ):
            with pytest.raises(sqlite3.IntegrityError, match="row refused"):
                bot.execute(statement, (value,))

    assert sync.run_sync(trigger="command").status == SyncRun.Status.OK
    synced = AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=1)
    for column, value in near.items():
        assert float(getattr(synced, column)) == pytest.approx(value, rel=1e-6), column
    assert synced.exit_time.isoformat() == "2026-11-27T11:00:00+00:00"
    assert float(TradeTotals.objects.get(plugin_id="combined_v3", symbol="EURUSD").profit) == pytest.approx(
        2 * near["profit_dollars"]
    )
    assert float(CrossPluginStats.objects.get(plugin_id="combined_v3").profit) == pytest.approx(
        2 * near["profit_dollars"]
    )
    chain = AggregatedChain.objects.get(plugin_id="combined_v3", chain_id="c-1")
    assert (chain.current_level, chain.max_levels) == (INT32, INT32)
    assert AggregatedChainLevel.objects.get(plugin_id="combined_v3").level_number == INT32
    assert AggregatedDailyStats.objects.get(plugin_id="combined_v3").total_trades == INT32


TIMES_A_BOT_MAY_WRITE = [
    "2026-11-27 10:00:00",  # SQLite's CURRENT_TIMESTAMP, the seed's default
    "2026-11-27 10:00:00.123456",  # Python's sqlite3 adapter
    "2026-11-27 10:00:00.123",  # SQLite's strftime('%f')
    "2026-11-27 10:00:00.000",
    "2026-11-27 10:00:00.000000",
    "2026-11-27T10:00:00.123456",
    "2026-11-27T10:00:00",  # datetime.isoformat()
    "2026-11-27T10:00:00+00:00",
    "2026-11-27T10:00:00.5Z",
    "2026-11-27 10:00:00.000-00:00",
    "2026-11-27T10:00",
    "2026-11-27 10:00Z",
]


def test_each_time_a_bot_may_write_is_copied_as_django_writes_that_instant(config):
    """The central copy on SQLite compares times as text: each is written there as Django writes
    it (and compares its parameters), whatever the bot's way; on PostgreSQL the columns are typed."""
    from django.utils.dateparse import parse_datetime

    with closing(sqlite3.connect(plugins.database_path("combined_v3"))) as bot, bot:
        for ticket, written in enumerate(TIMES_A_BOT_MAY_WRITE, start=1):
            bot.execute(
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time, exit_time, "
                "exit_price, status) VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, ?, ?, 1.2, 'CLOSED')",
                (ticket, written, written),
            )
            bot.execute(
                "INSERT INTO profit_chains (chain_id, base_trade_id, created_at) VALUES (?, ?, ?)",
                (f"c-{ticket}", ticket, written),
            )
            bot.execute(
                "INSERT INTO chain_levels (chain_id, level_number, executed_at) VALUES (?, 1, ?)",
                (f"c-{ticket}", written),
            )
    sync.run_sync(trigger="command")
    for ticket, written in enumerate(TIMES_A_BOT_MAY_WRITE, start=1):
        instant = parse_datetime(written.replace("-00:00", "+00:00")).replace(tzinfo=UTC)
        copied = AggregatedTrade.objects.get(plugin_id="combined_v3", mt5_ticket=ticket)
        assert copied.entry_time == copied.exit_time == instant, written
        chain = AggregatedChain.objects.get(plugin_id="combined_v3", chain_id=f"c-{ticket}")
        assert chain.created_at == instant, written
        level = AggregatedChainLevel.objects.get(plugin_id="combined_v3", chain_id=f"c-{ticket}")
        assert level.executed_at == instant, written
    if connections["default"].vendor == "sqlite":
        with closing(sqlite3.connect(database_file("default"))) as central:
            for ticket, written in enumerate(TIMES_A_BOT_MAY_WRITE, start=1):
                as_django_writes_it = db_datetime(parse_datetime(written.replace("-00:00", "+00:00")))
                texts = central.execute(
                    "SELECT t.entry_time, t.exit_time, c.created_at, l.executed_at FROM aggregated_trades t "
                    "JOIN aggregated_chains c ON c.base_trade_id = t.trade_id "
                    "JOIN aggregated_chain_levels l ON l.chain_id = c.chain_id WHERE t.mt5_ticket = ?",
                    (ticket,),
                ).fetchone()
                assert texts == (as_django_writes_it,) * 4, written
