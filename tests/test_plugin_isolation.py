"""A plugin's rows live only in its own database; crossing is an error that names both sides."""

import pytest
from django.db import connections, router

from plugins_app.plugin_apps import models_for
from plugins_app.router import CrossDatabaseError
from tests.helpers import NOW

pytestmark = pytest.mark.django_db(databases="__all__")


def make_trade(plugin_id, ticket, **extra):
    Trade = models_for(plugin_id)["Trade"]
    return Trade.objects.create(
        mt5_ticket=ticket,
        symbol="EURUSD",
        direction="BUY",
        lot_size="0.10",
        entry_price="1.08500",
        entry_time=NOW,
        **extra,
    )


def test_a_trade_written_for_one_plugin_is_invisible_to_the_other():
    make_trade("combined_v3", 1001)
    assert models_for("combined_v3")["Trade"].objects.filter(mt5_ticket=1001).exists()
    assert not models_for("price_action_v6")["Trade"].objects.filter(mt5_ticket=1001).exists()


def test_each_plugin_writes_to_its_own_file():
    make_trade("price_action_v6", 2002)
    with connections["plugin_price_action_v6"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM trades WHERE mt5_ticket = 2002")
        assert cursor.fetchone()[0] == 1
    with connections["plugin_combined_v3"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM trades WHERE mt5_ticket = 2002")
        assert cursor.fetchone()[0] == 0


def test_reading_a_plugin_model_from_another_plugin_database_raises():
    Trade = models_for("combined_v3")["Trade"]
    with pytest.raises(CrossDatabaseError, match="plugin_combined_v3.*plugin_price_action_v6"):
        list(Trade.objects.using("plugin_price_action_v6").all())


def test_reading_a_plugin_model_from_the_central_database_raises():
    with pytest.raises(CrossDatabaseError, match="'default'"):
        models_for("combined_v3")["Trade"].objects.using("default").count()


def test_saving_a_plugin_row_into_another_database_raises_and_writes_nothing():
    Trade = models_for("combined_v3")["Trade"]
    trade = Trade(mt5_ticket=3003, symbol="EURUSD", direction="BUY", lot_size="0.1", entry_price="1.1", entry_time=NOW)
    with pytest.raises(CrossDatabaseError):
        trade.save(using="plugin_price_action_v6")
    assert not models_for("price_action_v6")["Trade"].objects.filter(mt5_ticket=3003).exists()


def test_relating_rows_of_two_plugins_raises_naming_both():
    trade = make_trade("price_action_v6", 4005)
    chain = models_for("price_action_v6")["ProfitChain"].objects.create(chain_id="c1", base_trade=trade)
    elsewhere = make_trade("combined_v3", 4004)
    with pytest.raises(CrossDatabaseError, match="plugin_combined_v3.*plugin_price_action_v6"):
        router.allow_relation(elsewhere, chain)
    with pytest.raises(ValueError):
        chain.base_trade = elsewhere
    chain.refresh_from_db()
    assert chain.base_trade_id == trade.pk


def test_migrations_create_plugin_tables_only_in_plugin_databases():
    def tables(alias):
        return set(connections[alias].introspection.table_names())

    assert "trades" in tables("plugin_combined_v3")
    assert "trades" not in tables("default")
    assert "auth_user" not in tables("plugin_combined_v3")
    assert "config_app_configversion" in tables("default")
