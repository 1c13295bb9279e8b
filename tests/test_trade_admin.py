"""Operators inspect each plugin's trades in the Django admin; the admin changes nothing."""

import csv
import io
import re

import pytest

from plugins_app import plugins
from plugins_app.plugin_apps import models_for
from plugins_app.store import PluginStore
from tests.helpers import closed_trade, run_async, trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

TRADES = "/admin/plugin_combined_v3/trade/"


@pytest.fixture
def trades():
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades(
            [
                trade(501, symbol="EURUSD"),
                trade(502, symbol="XAUUSD", direction="SELL"),
                closed_trade(503, 42.5, symbol="GBPUSD"),
                closed_trade(504, -12.0, symbol="EURUSD"),
            ]
        )
        chain_id = store.start_chain(base_ticket=501, levels=[(20, 0.1), (40, 0.2)])
    with PluginStore(plugins.database_path("price_action_v6")) as store:
        store.save_trade(**trade(901, symbol="USDJPY"))
    return chain_id


def listed(client, **params) -> set[int]:
    """The tickets in the changelist's result rows."""
    page = client.get(TRADES, params).content.decode()
    return {int(ticket) for ticket in re.findall(r'class="field-mt5_ticket"><a [^>]*>(\d+)</a>', page)}


def test_the_trade_changelist_shows_the_columns_an_operator_needs(admin_client, trades):
    page = admin_client.get(TRADES).content.decode()
    for heading in (
        "Ticket",
        "Symbol",
        "Direction",
        "Lot size",
        "Entry price",
        "Exit price",
        "Profit dollars",
        "Status",
        "Close reason",
    ):
        assert heading in page
    assert listed(admin_client) == {501, 502, 503, 504}  # not 901: the other plugin's trade


def test_filters_narrow_the_list(admin_client, trades):
    assert listed(admin_client) == {501, 502, 503, 504}
    assert listed(admin_client, status__exact="OPEN") == {501, 502}
    assert listed(admin_client, symbol="XAUUSD") == {502}
    assert listed(admin_client, direction__exact="SELL") == {502}
    assert listed(admin_client, close_reason__exact="SL") == {504}


def test_the_symbol_filter_offers_each_symbol_of_this_plugin(admin_client, trades):
    page = admin_client.get(TRADES).content.decode()
    assert re.findall(r"\?symbol=([A-Z]+)", page) == ["EURUSD", "GBPUSD", "XAUUSD"]


def test_search_by_ticket_and_by_symbol(admin_client, trades):
    assert listed(admin_client, q="503") == {503}
    assert listed(admin_client, q="xau") == {502}
    assert listed(admin_client, q="nothing") == set()


def test_the_date_hierarchy_drills_into_entry_time(admin_client, trades):
    assert listed(admin_client, entry_time__year="2026", entry_time__month="11") == {501, 502, 503, 504}
    assert listed(admin_client, entry_time__year="2019") == set()


def test_a_trade_page_answers_read_only(admin_client, trades):
    pk = models_for("combined_v3")["Trade"].objects.get(mt5_ticket=503).pk
    response = admin_client.get(f"{TRADES}{pk}/change/")
    assert response.status_code == 200
    assert b"42.5" in response.content
    assert b'name="_save"' not in response.content
    assert admin_client.post(f"{TRADES}{pk}/change/", {"symbol": "HACKED"}).status_code == 403
    assert admin_client.get(f"{TRADES}add/").status_code == 403
    assert models_for("combined_v3")["Trade"].objects.get(mt5_ticket=503).symbol == "GBPUSD"


def test_a_chain_page_shows_its_levels_inline(admin_client, trades):
    response = admin_client.get(f"/admin/plugin_combined_v3/profitchain/{trades}/change/")
    assert response.status_code == 200
    assert b"Chain levels" in response.content or b"chain levels" in response.content.lower()


@pytest.mark.parametrize("model", ["trade", "profitchain", "signal", "dailystats", "plugininfo"])
def test_every_plugin_changelist_answers_a_viewer(viewer_client, trades, model):
    for plugin_id in ("combined_v3", "price_action_v6"):
        assert viewer_client.get(f"/admin/plugin_{plugin_id}/{model}/").status_code == 200


def test_anonymous_users_are_sent_to_log_in(client, trades):
    pk = models_for("combined_v3")["Trade"].objects.get(mt5_ticket=501).pk
    for url in (TRADES, f"{TRADES}{pk}/change/", "/admin/plugin_price_action_v6/dailystats/"):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_csv_export_holds_exactly_the_selected_trades(admin_client, trades):
    Trade = models_for("combined_v3")["Trade"]
    selected = [Trade.objects.get(mt5_ticket=503).pk, Trade.objects.get(mt5_ticket=501).pk]
    response = admin_client.post(TRADES, {"action": "export_csv", "_selected_action": selected})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(row["mt5_ticket"] for row in rows) == ["501", "503"]
    closed = next(row for row in rows if row["mt5_ticket"] == "503")
    assert (closed["symbol"], closed["status"], closed["close_reason"]) == ("GBPUSD", "CLOSED", "TP")
    assert float(closed["profit_dollars"]) == 42.5
    assert closed["signal_data"] == '{"timeframe": "15m"}'


def test_under_the_asgi_server_the_csv_export_is_streamed(admin_user, trades):
    """Selecting every trade of a big plugin must not put them all in the web node's memory:
    under ASGI (`serve`) the export is an async iterator (Django reads a sync one whole first)."""
    from django.test import AsyncClient

    selected = list(models_for("combined_v3")["Trade"].objects.values_list("pk", flat=True))

    async def export():
        client = AsyncClient()
        await client.aforce_login(admin_user)
        response = await client.post(TRADES, {"action": "export_csv", "_selected_action": selected})
        assert response.status_code == 200 and response.is_async
        return b"".join([block async for block in response.streaming_content])

    rows = list(csv.DictReader(io.StringIO(run_async(export).decode())))
    assert len(rows) == len(selected) > 1


def test_a_user_without_a_role_is_refused(client, make_user, trades):
    client.force_login(make_user("nora_norole", None))
    assert client.get(TRADES).status_code == 302


@pytest.mark.parametrize("kind", ["year", "month", "day"])
def test_the_fast_date_hierarchy_finds_the_same_periods_as_django(kind):
    from django.db.models import QuerySet

    from tests.helpers import NOW

    with PluginStore(plugins.database_path("combined_v3")) as store:
        moments = [
            NOW.replace(year=2024, month=12, day=31, hour=23),
            NOW.replace(month=1, day=1),
            NOW,
            NOW.replace(hour=23, minute=59),
            NOW.replace(month=2, day=28),
        ]
        store.save_trades([trade(600 + i, entry_time=moment) for i, moment in enumerate(moments)])
    queryset = models_for("combined_v3")["Trade"].objects.all()
    for order in ("ASC", "DESC"):
        assert list(queryset.datetimes("entry_time", kind, order)) == list(
            QuerySet.datetimes(queryset, "entry_time", kind, order)
        )
    assert list(queryset.filter(symbol="NONE").datetimes("entry_time", kind)) == []


def test_min_and_max_asked_together_give_the_same_answer_as_django(trades):
    from django.db.models import Max, Min, QuerySet

    queryset = models_for("combined_v3")["Trade"].objects.filter(status="CLOSED")
    wanted = {"first": Min("entry_time"), "last": Max("mt5_ticket")}
    assert queryset.aggregate(**wanted) == QuerySet.aggregate(queryset, **wanted)
    assert queryset.aggregate(**wanted)["last"] == 504


def test_a_count_the_admin_stops_at_is_labelled_as_capped_and_an_exact_one_is_not(admin_client, trades):
    assert re.search(r"\b4 trades\b", admin_client.get(TRADES).content.decode())
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(10_000 + n) for n in range(10_001)])
    page = admin_client.get(TRADES).content.decode()
    assert "More than 10,000 trades (counting stops there)" in page
    assert "10001 trades" not in page
