"""Demo data: deterministic, realistic, and never colliding when added again."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from plugins_app import plugins
from plugins_app.demo import generate_trades

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def rows(plugin_id):
    with closing(sqlite3.connect(plugins.database_path(plugin_id), isolation_level=None)) as connection:
        return connection.execute(
            "SELECT mt5_ticket, status, profit_dollars FROM trades ORDER BY mt5_ticket"
        ).fetchall()


def test_the_same_seed_gives_the_same_trades():
    now = datetime(2026, 11, 1, tzinfo=UTC)
    first = list(generate_trades(300, seed=7, plugin_id="p", first_ticket=1, now=now))
    again = list(generate_trades(300, seed=7, plugin_id="p", first_ticket=1, now=now))
    other = list(generate_trades(300, seed=8, plugin_id="p", first_ticket=1, now=now))
    assert first == again
    assert first != other


def test_demo_trades_are_a_realistic_mix():
    trades = list(generate_trades(2000, seed=1, plugin_id="p", first_ticket=1, now=datetime.now(UTC)))
    statuses = {t.get("status", "OPEN") for t in trades}
    assert {"OPEN", "CLOSED"} <= statuses
    profits = [t["profit_dollars"] for t in trades if t.get("status") == "CLOSED"]
    assert any(p > 0 for p in profits) and any(p < 0 for p in profits)
    assert {t["close_reason"] for t in trades if t.get("status") == "CLOSED"} == {"TP", "SL", "MANUAL", "REVERSAL"}


def test_seed_demo_adds_more_without_ticket_collisions_each_run(capsys):
    call_command("seed_demo", "--trades", "150", "--plugin", "combined_v3")
    call_command("seed_demo", "--trades", "150", "--plugin", "combined_v3")
    tickets = [ticket for ticket, _, _ in rows("combined_v3")]
    assert len(tickets) == len(set(tickets)) == 300
    assert rows("price_action_v6") == []
    assert "added 150 trades" in capsys.readouterr().out


def test_seed_demo_fills_every_plugin_and_their_daily_stats():
    call_command("seed_demo", "--trades", "100")
    for plugin_id in ("combined_v3", "price_action_v6"):
        assert len(rows(plugin_id)) == 100
        with closing(sqlite3.connect(plugins.database_path(plugin_id), isolation_level=None)) as connection:
            closed = connection.execute("SELECT COUNT(*) FROM trades WHERE status = 'CLOSED'").fetchone()[0]
            counted = connection.execute("SELECT SUM(total_trades) FROM daily_stats").fetchone()[0]
            chains = connection.execute("SELECT COUNT(*) FROM profit_chains").fetchone()[0]
        assert counted == closed and chains >= 1
