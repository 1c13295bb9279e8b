"""The plugin schema refuses bad rows in the database itself, and numbers every change."""

import sqlite3
from contextlib import closing

import pytest
from django.db import IntegrityError, transaction

from plugins_app import plugins
from plugins_app.plugin_apps import models_for
from plugins_app.store import PluginStore
from tests.helpers import NOW, trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"direction": "HOLD"},
        {"status": "PENDING"},
        {"close_reason": "TIMEOUT"},
        {"lot_size": 0},
        {"lot_size": -0.1},
        {"entry_price": 0},
        {"status": "CLOSED"},  # closed without exit price and time
    ],
)
def test_the_database_refuses_a_bad_trade_whoever_writes_it(bad):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed|trade refused"):
            store.save_trade(**trade(1, **bad))
        assert store.trade_by_ticket(1) is None
    Trade = models_for("combined_v3")["Trade"]
    fields = {
        "mt5_ticket": 2,
        "symbol": "EURUSD",
        "direction": "BUY",
        "lot_size": "0.1",
        "entry_price": "1.1",
        "entry_time": NOW,
        **bad,
    }
    with pytest.raises(IntegrityError), transaction.atomic(using="plugin_combined_v3"):
        Trade.objects.create(**fields)
    assert not Trade.objects.exists()


def test_a_ticket_is_unique_within_a_plugin():
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(7))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            store.save_trade(**trade(7, symbol="GBPUSD"))
        assert store.trade_by_ticket(7)["symbol"] == "EURUSD"


def test_every_insert_and_update_takes_a_new_change_number_whoever_writes_it():
    Trade = models_for("combined_v3")["Trade"]
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(1), trade(2)])
        first = {t: store.trade_by_ticket(t)["change_seq"] for t in (1, 2)}
        assert sorted(first.values()) == [1, 2]
        orm_trade = Trade.objects.create(
            mt5_ticket=3, symbol="EURUSD", direction="SELL", lot_size="0.2", entry_price="1.1", entry_time=NOW
        )
        assert store.trade_by_ticket(3)["change_seq"] == 3
        store.update_trade(1, sl_price=1.084)
        assert store.trade_by_ticket(1)["change_seq"] == 4
        orm_trade.symbol = "GBPUSD"
        orm_trade.save()
        assert store.trade_by_ticket(3)["change_seq"] == 5
        with closing(sqlite3.connect(plugins.database_path("combined_v3"), isolation_level=None)) as raw:
            raw.execute("UPDATE trades SET swap = -1 WHERE mt5_ticket = 2")
        assert store.trade_by_ticket(2)["change_seq"] == 6


def test_trades_are_indexed_on_status_symbol_and_entry_time():
    with closing(sqlite3.connect(plugins.database_path("combined_v3"), isolation_level=None)) as raw:
        indexed = {
            row[2]
            for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='trades'")
            for row in raw.execute(f"PRAGMA index_info('{name}')")
        }
    assert {"status", "symbol", "entry_time", "mt5_ticket", "change_seq"} <= indexed
