"""The bot's write API keeps daily_stats equal to what the trades say."""

import sqlite3
from datetime import timedelta

import pytest

from plugins_app import plugins
from plugins_app.store import PluginStore, TradeNotFound, day_summary
from tests.helpers import NOW, closed_trade, trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.fixture
def store():
    with PluginStore(plugins.database_path("combined_v3")) as store:
        yield store


def test_closing_a_trade_counts_it_in_the_day_it_closed(store):
    store.save_trade(**trade(1))
    assert store.daily_stats(NOW.date()) is None
    store.close_trade(1, exit_price=1.088, profit_pips=30, profit_dollars=30.0, close_reason="TP", exit_time=NOW)
    stats = store.daily_stats(NOW.date())
    assert (stats["total_trades"], stats["winning_trades"], stats["losing_trades"]) == (1, 1, 0)
    assert (stats["total_profit_dollars"], stats["total_profit_pips"]) == (30.0, 30.0)
    closed = store.trade_by_ticket(1)
    assert closed["status"] == "CLOSED" and closed["close_reason"] == "TP" and closed["exit_time"] == NOW


def test_daily_stats_sum_wins_losses_breakeven_drawdown_and_extremes(store):
    store.save_trades(
        [
            closed_trade(1, 40.0, NOW.replace(hour=9)),
            closed_trade(2, -25.0, NOW.replace(hour=10)),
            closed_trade(3, -30.0, NOW.replace(hour=11)),
            closed_trade(4, 0.2, NOW.replace(hour=12)),
            closed_trade(5, 10.0, NOW.replace(hour=13)),
            trade(6),
        ]
    )
    stats = store.daily_stats(NOW.date())
    assert stats["total_trades"] == 5
    assert (stats["winning_trades"], stats["losing_trades"], stats["breakeven_trades"]) == (2, 2, 1)
    assert stats["total_profit_dollars"] == pytest.approx(-4.8)
    assert stats["max_drawdown"] == pytest.approx(55.0)  # from +40 down to -15
    assert (stats["largest_win"], stats["largest_loss"]) == (40.0, -30.0)


def test_moving_a_close_to_another_day_fixes_both_days(store):
    yesterday = NOW - timedelta(days=1)
    store.save_trades([closed_trade(1, 10.0, yesterday), closed_trade(2, 5.0, yesterday)])
    store.update_trade(2, exit_time=NOW)
    assert store.daily_stats(yesterday.date())["total_trades"] == 1
    assert store.daily_stats(NOW.date())["total_trades"] == 1
    store.update_trade(1, exit_time=NOW)
    assert store.daily_stats(yesterday.date()) is None


def test_open_trades_and_lookup_by_ticket(store):
    store.save_trades([trade(1, symbol="EURUSD"), trade(2, symbol="XAUUSD", status="PARTIAL"), closed_trade(3, 1.0)])
    assert [t["mt5_ticket"] for t in store.open_trades()] == [1, 2]
    assert [t["mt5_ticket"] for t in store.open_trades("XAUUSD")] == [2]
    assert store.trade_by_ticket(2)["signal_data"] == {"timeframe": "15m"}
    assert store.trade_by_ticket(99) is None


def test_bad_calls_are_refused_with_a_clear_error_and_change_nothing(store):
    store.save_trade(**trade(1))
    with pytest.raises(TradeNotFound, match="ticket 99"):
        store.update_trade(99, swap=1)
    with pytest.raises(ValueError, match="Cannot update trade fields: mt5_ticket"):
        store.update_trade(1, mt5_ticket=2)
    with pytest.raises(ValueError, match="Unknown trade fields: colour"):
        store.save_trade(**trade(2, colour="red"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK|refused"):
        store.close_trade(1, exit_price=1.0, profit_pips=1, profit_dollars=1, close_reason="BORED")
    assert store.trade_by_ticket(1)["status"] == "OPEN"
    assert store.trade_by_ticket(2) is None


def test_a_batch_with_one_bad_trade_saves_none_of_it(store):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK|refused"):
        store.save_trades([closed_trade(1, 5.0), trade(2, direction="UP")])
    assert store.trade_by_ticket(1) is None
    assert store.daily_stats(NOW.date()) is None


def test_signals_and_chains_are_logged(store):
    store.save_trade(**trade(1))
    chain_id = store.start_chain(base_ticket=1, levels=[(20, 0.1), (30, 0.15)])
    signal_id = store.log_signal(symbol="EURUSD", signal_type="BUY_ENTRY", payload={"rsi": 28})
    levels = store.connection.execute(
        "SELECT level_number, target_pips, volume_to_close FROM chain_levels WHERE chain_id = ?", (chain_id,)
    )
    assert [tuple(row) for row in levels] == [(1, 20.0, 0.1), (2, 30.0, 0.15)]
    assert (
        store.connection.execute("SELECT payload FROM signals WHERE id = ?", (signal_id,)).fetchone()[0]
        == '{"rsi": 28}'
    )


def test_a_missing_database_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manage.py setup"):
        PluginStore(tmp_path / "nope.sqlite3")


def test_day_summary_of_an_all_losing_day():
    assert day_summary([-5.0, -10.0]) == (2, 0, 2, 0, -15.0, 15.0, 0.0, -10.0)
