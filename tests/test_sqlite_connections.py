"""Every connection runs WAL, synchronous=NORMAL, a busy timeout, foreign keys, IMMEDIATE writes."""

import sqlite3
import threading
import time

import pytest
from django.db import connections

from plugins_app import plugins
from plugins_app.store import PluginStore
from tests.helpers import trade

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


@pytest.mark.parametrize("alias", ["default", "plugin_combined_v3", "plugin_price_action_v6"])
def test_django_connections_use_the_pragmas(alias):
    if connections[alias].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run")
    with connections[alias].cursor() as cursor:
        values = {
            pragma: cursor.execute(f"PRAGMA {pragma}").fetchone()[0]
            for pragma in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert values == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 20000}
    assert connections[alias].settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_the_bot_store_uses_the_same_pragmas():
    with PluginStore(plugins.database_path("combined_v3")) as store:
        connection = store.connection
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 20000


def test_a_second_writer_waits_for_the_first_instead_of_failing():
    path = plugins.database_path("combined_v3")
    holding = threading.Event()

    def hold_the_write_lock():
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute(
            "INSERT INTO signals (received_at, symbol, signal_type, timeframe, payload, action)"
            " VALUES ('2026-01-01 00:00:00', 'EURUSD', 'BUY', '', '{}', '')"
        )
        holding.set()
        time.sleep(0.5)
        holder.execute("COMMIT")
        holder.close()

    first_writer = threading.Thread(target=hold_the_write_lock)
    first_writer.start()
    holding.wait()
    started = time.monotonic()
    with PluginStore(path) as store:
        store.save_trade(**trade(11))  # waits until the first writer commits
        assert store.trade_by_ticket(11) is not None
        assert store.connection.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 1
    assert time.monotonic() - started >= 0.3
    first_writer.join()


def test_a_reader_is_not_blocked_by_an_open_write_transaction():
    path = plugins.database_path("combined_v3")
    with PluginStore(path) as store:
        store.save_trade(**trade(21))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE trades SET swap = -2 WHERE mt5_ticket = 21")
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
    assert reader.execute("SELECT swap FROM trades WHERE mt5_ticket = 21").fetchone()[0] == 0
    writer.execute("COMMIT")
    writer.close()
    reader.close()


def in_a_thread(work):
    """``work(connection)`` in a thread of its own, whose connection is closed at its end: a
    request under ASGI."""
    results = []

    def request():
        try:
            results.append(work(connections["default"]))
        finally:
            connections["default"].close()

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    return results[0]


def test_a_requests_connection_is_kept_for_the_next_one_only_as_it_was_opened():
    if connections["default"].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run (its own pool)")

    def opened(connection):
        connection.ensure_connection()
        return connection.connection

    def attached(connection):
        with connection.cursor() as cursor:
            cursor.execute("ATTACH DATABASE ':memory:' AS extra")
        return connection.connection

    def databases(connection):
        with connection.cursor() as cursor:
            return connection.connection, [row[1] for row in cursor.execute("PRAGMA database_list")]

    first = in_a_thread(opened)
    assert in_a_thread(opened) is first  # kept, not opened again
    assert in_a_thread(attached) is first
    after_attach, names = in_a_thread(databases)
    assert after_attach is not first and names == ["main"]


def test_the_checkpoints_beside_a_sync_never_make_a_missing_database_again(tmp_path, monkeypatch, caplog):
    """The sync's checkpoint thread opens the central file itself: gone meanwhile (moved away by
    hand), it is an error in the log, not a new empty file that every command would then read."""
    from zepix_admin.core import databases

    if connections["default"].vendor != "sqlite":
        pytest.skip("the central database is on PostgreSQL in this run")
    gone = tmp_path / "central.sqlite3"
    monkeypatch.setattr(databases, "database_file", lambda alias: gone)
    monkeypatch.setattr(databases, "checkpoint", lambda alias: None)  # Django's own connection, another file
    with databases.checkpointing("default") as copy_soon:
        copy_soon()
    assert not gone.exists()
    assert "Checkpoint of central.sqlite3 failed" in caplog.text
