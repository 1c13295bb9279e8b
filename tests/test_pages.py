"""The operators' pages: overview, trade search, sync, backups, alerts and audit."""

import csv
import io
import re
import sqlite3
from contextlib import closing

import pytest

from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import trade_search
from sync_app.sync import run_sync
from tests.helpers import NOW, asked_for_and_still_queued, closed_trade, run_async, trade
from zepix_admin.core.alerts import raise_alert

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def trading(config):
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.now().replace(hour=1, minute=0)
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.record_start("combined_v3", "3.1.0")
        store.save_trades(
            [
                trade(11),
                trade(12, symbol="XAUUSD", direction="SELL"),
                closed_trade(13, 40.0, exit_time=today),
                closed_trade(14, -10.0, exit_time=today),
                closed_trade(15, 7.0, exit_time=today - timedelta(days=2)),
            ]
        )
    with PluginStore(plugins.database_path("price_action_v6")) as store:
        store.save_trades([closed_trade(21, 5.0, exit_time=NOW), trade(22, symbol="GBPUSD")])
    run_sync(trigger="command")


def card(page, plugin_id):
    return page.split(f'id="card-{plugin_id}"')[1].split("</section>")[0]


def test_the_overview_shows_a_card_per_plugin_with_its_numbers(viewer_client, trading):
    page = viewer_client.get("/").content.decode()
    combined = card(page, "combined_v3")
    assert "3.1.0" in combined and "enabled" in combined
    assert re.search(r"<dt>Open trades</dt><dd>2</dd>", combined)
    assert re.search(r"<dt>Today's trades</dt><dd>2</dd>", combined)
    assert "30.00" in combined and "66.7 %" in combined
    assert combined.count("<rect") == 2 and "<polyline" in combined and "<figcaption>Equity" in combined
    assert re.search(r'id="total-open">3<', page)


def test_a_cards_equity_chart_starts_from_everything_closed_before_its_days(viewer_client, trading):
    from datetime import timedelta

    from django.utils import timezone

    with PluginStore(plugins.database_path("combined_v3")) as store:  # long before the chart's 30 days
        store.save_trade(**closed_trade(16, 500.0, exit_time=timezone.now() - timedelta(days=100)))
    run_sync(trigger="command")
    combined = card(viewer_client.get("/").content.decode(), "combined_v3")
    equity = combined.split("<figcaption>Equity")[1].split("</figure>")[0]
    assert re.search(r"<title>Equity, [^<]*: \$537\.00</title>", equity)  # today: 500 + 40 - 10 + 7
    assert "$500.00" not in combined.split("<figcaption>Daily P&amp;L")[1].split("</figure>")[0]
    assert re.search(r"<dt>Today's trades</dt><dd>2</dd>", combined)


def test_each_card_shows_its_own_plugins_newest_verified_backup(viewer_client, trading):
    from datetime import timedelta

    from sync_app.backup import backup_database
    from zepix_admin.overview import overview

    older = backup_database("plugin_combined_v3", now=NOW)
    newest = backup_database("plugin_combined_v3", now=NOW + timedelta(hours=1))
    backup_database("plugin_combined_v3", now=NOW + timedelta(hours=2)).delete()  # gone again
    unverified = backup_database("plugin_combined_v3", now=NOW + timedelta(hours=3))
    unverified.verified = False
    unverified.save()
    backup_database("plugin_price_action_v6", now=NOW - timedelta(days=1))
    cards = {card["plugin_id"]: card for card in overview()["cards"]}
    assert cards["combined_v3"]["last_backup"].pk == newest.pk != older.pk
    assert cards["price_action_v6"]["last_backup"].database == "plugin_price_action_v6"


def test_a_plugin_disabled_in_the_config_shows_disabled_on_the_next_refresh(viewer_client, trading, config):
    config("price_action_v6", "enabled", False)
    fragment = viewer_client.get("/?fragment=cards", **HTMX).content.decode()
    assert "<html" not in fragment and 'hx-trigger="every 3s"' in fragment
    assert 'data-testid="state">disabled<' in card(fragment, "price_action_v6")


def test_the_trade_search_filters_sorts_and_links_to_each_plugins_admin(viewer_client, trading):
    def tickets(**params):
        page = viewer_client.get("/trades/", params).content.decode()
        return [int(t) for t in re.findall(r'/trades/\w+/(\d+)/"', page)]

    assert sorted(tickets()) == [11, 12, 13, 14, 15, 21, 22]
    assert sorted(tickets(plugin="price_action_v6")) == [21, 22]
    assert tickets(symbol="xauusd") == [12]
    assert sorted(tickets(status="CLOSED")) == [13, 14, 15, 21]
    assert tickets(direction="SELL") == [12]
    assert tickets(status="CLOSED", sort="profit") == [13, 15, 21, 14]
    assert tickets(date_from="2030-01-01") == []
    page = viewer_client.get("/trades/", {"date_from": "yesterday"}).content.decode()
    assert "date from must be a date" in page
    response = viewer_client.get("/trades/combined_v3/13/")
    assert response.status_code == 302 and re.match(
        r"/admin/plugin_combined_v3/trade/\d+/change/", response["Location"]
    )
    assert viewer_client.get("/trades/combined_v3/999/").status_code == 404
    assert viewer_client.get("/trades/..%2Fx/13/").status_code == 404


def test_a_trade_the_bot_timed_with_a_t_is_found_on_the_last_day_of_a_date_range(viewer_client, config):
    """Python's isoformat() writes 2026-11-27T15:00:00. As text (the central copy on SQLite) it
    sorts after 2026-11-27 23:59:59.999999, the end of the last day asked for, and the search
    did not find it."""
    with closing(sqlite3.connect(plugins.database_path("combined_v3"))) as bot:
        for ticket, entered in ((76, "2026-11-26T23:59:59"), (77, "2026-11-27T15:00:00"), (78, "2026-11-28T00:00:00")):
            bot.execute(
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
                "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, ?)",
                (ticket, entered),
            )
        bot.commit()
    run_sync(trigger="command")
    page = viewer_client.get("/trades/", {"date_from": "2026-11-27", "date_to": "2026-11-27"}).content.decode()
    assert [int(t) for t in re.findall(r'/trades/\w+/(\d+)/"', page)] == [77]


def test_trades_timed_in_each_way_a_bot_may_write_are_listed_in_time_order_and_each_reached_once(
    viewer_client, config, monkeypatch
):
    """The central copy on SQLite compares times as text: 2026-11-27T09:00:00 sorted after
    2026-11-27 15:00:00, and a page link's time (written as Django writes it) skipped every
    trade of that day timed with a T beyond it, page by page."""
    monkeypatch.setattr(trade_search, "PAGE_SIZE", 2)
    written = {  # ticket: as the bot wrote it, in the order of time
        81: ("combined_v3", "2026-11-27 08:00:00"),
        82: ("price_action_v6", "2026-11-27T08:30:00"),
        83: ("combined_v3", "2026-11-27T09:00:00.5Z"),
        84: ("price_action_v6", "2026-11-27 09:00:00.75"),
        85: ("price_action_v6", "2026-11-27T09:15"),
        86: ("combined_v3", "2026-11-27 10:00:00+00:00"),  # the same instant as the next: by their
        87: ("combined_v3", "2026-11-27T10:00:00Z"),  # order in the central copy, as any two
        88: ("price_action_v6", "2026-11-27 11:00:00"),
    }
    for plugin_id in ("combined_v3", "price_action_v6"):
        with closing(sqlite3.connect(plugins.database_path(plugin_id))) as bot, bot:
            bot.executemany(
                "INSERT INTO trades (mt5_ticket, symbol, direction, lot_size, entry_price, entry_time) "
                "VALUES (?, 'EURUSD', 'BUY', 0.1, 1.1, ?)",
                [(ticket, entered) for ticket, (plugin, entered) in written.items() if plugin == plugin_id],
            )
    run_sync(trigger="command")
    for sort, expected in (("oldest", list(written)), ("newest", list(reversed(written)))):
        seen, page = [], viewer_client.get("/trades/", {"sort": sort}).content.decode()
        while len(seen) <= len(written):  # a page link that led back would go round for ever
            seen += tickets_on(page)
            following = re.search(r'href="\?([^"]*after=[^"]*)" rel="next"', page)
            if not following:
                break
            page = viewer_client.get("/trades/?" + following.group(1).replace("&amp;", "&")).content.decode()
        assert seen == expected, sort


def test_every_trade_is_reachable_page_by_page_forwards_and_backwards_in_each_sort(viewer_client, trading, monkeypatch):
    monkeypatch.setattr(trade_search, "PAGE_SIZE", 2)  # 7 trades: four pages, the last one short
    everything = {"newest", "oldest", "profit", "loss", "ticket", "ticket_desc", "symbol", "symbol_desc"}
    assert set(trade_search.SORTS) == everything
    for sort in everything:
        first = viewer_client.get("/trades/", {"sort": sort}).content.decode()
        assert 'rel="prev"' not in first
        forwards, page = [], first
        while True:
            forwards += tickets_on(page)
            following = re.search(r'href="\?([^"]*after=[^"]*)" rel="next"', page)
            if not following:
                break
            page = viewer_client.get("/trades/?" + following.group(1).replace("&amp;", "&")).content.decode()
        assert sorted(forwards) == [11, 12, 13, 14, 15, 21, 22], sort  # each trade once, none missed
        backwards, page = [], viewer_client.get("/trades/", {"sort": sort, "page": "last"}).content.decode()
        assert 'rel="next"' not in page
        while True:
            backwards = tickets_on(page) + backwards
            preceding = re.search(r'href="\?([^"]*before=[^"]*)" rel="prev"', page)
            if not preceding:
                break
            page = viewer_client.get("/trades/?" + preceding.group(1).replace("&amp;", "&")).content.decode()
        assert backwards == forwards, sort
    assert forwards_of(viewer_client, "profit")[:2] == [13, 15]


def tickets_on(page):
    return [int(t) for t in re.findall(r'/trades/\w+/(\d+)/"', page)]


def forwards_of(client, sort):
    return tickets_on(client.get("/trades/", {"sort": sort}).content.decode())


def test_the_trade_search_totals_are_exact_for_the_filtered_set_and_symbols_match_by_prefix(viewer_client, trading):
    def totals(**params):
        page = viewer_client.get("/trades/", params).content.decode()
        return re.search(r'id="trade-totals"><strong>([^<]*)</strong>.*?P&amp;L <strong[^>]*>([^<]*)<', page).groups()

    assert totals() == ("7", "$42.00")
    assert totals(status="CLOSED", plugin="combined_v3") == ("3", "$37.00")
    assert totals(symbol="xau") == ("1", "$0.00")
    assert tickets_on(viewer_client.get("/trades/", {"symbol": "eur", "sort": "ticket"}).content.decode()) == [
        11,
        13,
        14,
        15,
        21,
    ]
    assert totals(date_from="2030-01-01") == ("0", "$0.00")


def test_a_clicked_column_header_sorts_by_it_and_a_second_click_reverses(viewer_client, trading):
    page = viewer_client.get("/trades/", {"status": "CLOSED"}).content.decode()
    header = re.search(r'<th class="num"><a href="\?([^"]*)">Profit</a>', page).group(1).replace("&amp;", "&")
    assert header == "status=CLOSED&sort=profit"
    page = viewer_client.get("/trades/?" + header).content.decode()
    assert tickets_on(page) == [13, 15, 21, 14]
    assert 'aria-sort="descending"><a href="?status=CLOSED&amp;sort=loss">Profit ↓' in page


def test_a_tampered_page_link_is_a_clear_400(viewer_client, trading):
    response = viewer_client.get("/trades/", {"after": "not-a-cursor"})
    assert response.status_code == 400 and "start again from the first page" in response.content.decode()
    page = viewer_client.get("/trades/", {"sort": "ticket"}).content.decode()
    cursor = re.search(r"after=([^\"&]*)", page)
    assert cursor is None  # seven trades fit on one page: no next link
    forged = viewer_client.get("/trades/", {"sort": "newest", "after": trade_search.signing.dumps(["x", "y"])})
    assert forged.status_code == 400


@pytest.mark.parametrize("filters", [{"date_to": "9999-12-31"}, {"date_from": "0001-01-01"}, {"date_to": "1969-12-31"}])
def test_a_date_no_trade_can_have_is_said_on_the_page_and_the_search_goes_on_without_it(
    viewer_client, trading, filters
):
    """The day after 9999-12-31 answered 500 on the search and its CSV export."""
    page = viewer_client.get("/trades/", filters)
    assert page.status_code == 200
    assert "must be a date like 2026-11-24, from 1970-01-01 to 2999-12-31" in page.content.decode()
    assert sorted(tickets_on(page.content.decode())) == [11, 12, 13, 14, 15, 21, 22]
    exported = viewer_client.get("/trades/", {**filters, "format": "csv"})
    assert exported.status_code == 200 and len(b"".join(exported.streaming_content).splitlines()) == 8


def test_the_trade_search_exports_csv(viewer_client, trading):
    response = viewer_client.get("/trades/", {"status": "CLOSED", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted((r["plugin_id"], r["mt5_ticket"]) for r in rows) == [
        ("combined_v3", "13"),
        ("combined_v3", "14"),
        ("combined_v3", "15"),
        ("price_action_v6", "21"),
    ]


def test_under_the_asgi_server_the_csv_export_is_sent_block_by_block_as_it_is_read(viewer, trading, monkeypatch):
    """`serve` is an ASGI server: there Django reads a sync iterator whole before sending a
    byte, so the export is an async one, each block read in the request's thread."""
    from django.test import AsyncClient

    from zepix_admin.core import exports

    monkeypatch.setattr(exports, "EXPORT_BLOCK_ROWS", 3)

    async def export():
        client = AsyncClient()
        await client.aforce_login(viewer)
        response = await client.get("/trades/", {"format": "csv", "sort": "ticket"})
        assert response.status_code == 200 and response.is_async
        return [block async for block in response.streaming_content]

    blocks = run_async(export)
    assert len(blocks) == 3  # the header and seven trades, three lines a block
    rows = list(csv.DictReader(io.StringIO(b"".join(blocks).decode())))
    assert len(rows) == 7 and {row["plugin_id"] for row in rows} == {"combined_v3", "price_action_v6"}


def test_the_sync_page_shows_health_and_runs_and_refreshes_itself(operator_client, trading):
    page = operator_client.get("/sync/").content.decode()
    assert "Run sync now" in page and 'hx-trigger="every 2s"' in page
    assert re.search(r"combined_v3:\s+\+5 ~0 in [\d.]+ s", page)
    state = operator_client.post("/sync/run", **HTMX).content.decode()
    assert "<html" not in state and state.count('<tr><td class="num">') >= 2


def test_a_running_sync_shows_each_plugin_live_with_its_retries_and_the_button_waits(
    operator_client, trading, config, settings
):
    config("global", "sync.retry_delays_seconds", [0.01, 0.01, 0.01])
    config("global", "sync.lock_wait_seconds", 0.2)
    plugins.database_path("price_action_v6").rename(settings.DATA_DIR / "moved-away.sqlite3")
    seen = []  # the sync page as an operator sees it while the sync waits between attempts
    try:
        run_sync(trigger="manual", sleep=lambda _: seen.append(operator_client.get("/sync/?fragment=state")))
    finally:
        (settings.DATA_DIR / "moved-away.sqlite3").rename(plugins.database_path("price_action_v6"))
    pages = [response.content.decode() for response in seen]
    assert len(pages) == 3
    for retry, page in enumerate(pages, start=1):
        running = page.split('id="sync-runs"')[1].split("</tr>", 2)[1]
        assert "RUNNING" in running and "Sync running…" in page and 'id="run-sync" disabled' in page
        assert re.search(r"combined_v3:\s+\+0 ~0 in [\d.]+ s", running)  # done at the first attempt
        assert f"waiting to retry: retry {retry} of 3" in running and "its database file is missing" in running
    finished = operator_client.get("/sync/?fragment=state").content.decode()
    assert "PARTIAL" in finished and "3 retries" in finished and "Run sync now" in finished


def test_the_backups_page_lists_backups_with_their_verification(operator_client, trading):
    operator_client.post("/backups/start")
    page = operator_client.get("/backups/").content.decode()
    assert page.count('<span class="ok">yes</span>') == 3
    assert "plugin_combined_v3" in page


def test_a_backup_run_shows_each_database_live_and_the_button_waits(operator_client, trading, monkeypatch):
    from sync_app import tasks

    seen = []  # the backups page each time the job starts on a database
    real_backup = tasks.backup_database

    def watched(alias):
        seen.append(operator_client.get("/backups/?fragment=state").content.decode())
        return real_backup(alias)

    monkeypatch.setattr(tasks, "backup_database", watched)
    response = operator_client.post("/backups/start", HTTP_HX_REQUEST="true")  # huey runs it inline in tests
    assert len(seen) == 3
    middle = seen[1].split('id="backup-runs"')[1]
    assert 'id="start-backup" disabled' in seen[1] and "Backing up…" in seen[1]
    assert re.search(r'data-database="default">default: [\d.]+\s[KMG]?B in [\d.]+ s', middle)
    assert 'data-database="plugin_combined_v3">plugin_combined_v3: <span class="badge warn">backing up' in middle
    assert 'data-database="plugin_price_action_v6">plugin_price_action_v6: <span class="badge warn">waiting' in middle
    done = response.content.decode()
    assert "<html" not in done and '<span class="badge ok">OK</span>' in done and "Back up every database now" in done


def test_alerts_are_listed_and_acknowledged(operator_client, config):
    alert = raise_alert("config", "global", "Rejected edit of config.json: bad")
    page = operator_client.get("/alerts/").content.decode()
    assert "Rejected edit of config.json" in page and 'aria-label="1 open alerts">1</span>' in page
    operator_client.post(f"/alerts/{alert.pk}/acknowledge")
    alert.refresh_from_db()
    assert alert.acknowledged_by == "otto_operator"
    assert "Nothing needs attention" in operator_client.get("/alerts/").content.decode()


def test_the_audit_log_shows_who_changed_what(operator_client, config):
    from django.core.management import call_command

    operator_client.post("/config/combined_v3/row", {"path": "max_lot_size", "value": "0.4", "base_version": 1}, **HTMX)
    call_command("create_token", "bot", "--role", "viewer", stdout=io.StringIO())
    page = operator_client.get("/audit/").content.decode()
    assert "otto_operator" in page and "config.save" in page and "token.create" in page
    filtered = operator_client.get("/audit/", {"action": "token."}).content.decode()
    assert "token.create" in filtered and "config.save" not in filtered


def test_static_files_are_served_with_hashed_compressed_names_in_production(settings, tmp_path):
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    names = {p.name for p in tmp_path.rglob("*")}
    assert any(re.fullmatch(r"zepix\.[0-9a-f]{12}\.css\.gz", n) for n in names)
    assert any(re.fullmatch(r"htmx-2\.min\.[0-9a-f]{12}\.js", n) for n in names)


def test_a_sync_asked_for_while_one_is_queued_joins_it_and_the_button_says_so(operator_client, config):
    from sync_app.models import JobState, SyncRun
    from sync_app.tasks import MANUAL_SYNC, manual_sync_task

    with asked_for_and_still_queued(MANUAL_SYNC, manual_sync_task, "tester", None):
        page = operator_client.get("/sync/").content.decode()
        assert 'id="run-sync" disabled>Sync queued…' in page
        joined = operator_client.post("/sync/run", HTTP_HX_REQUEST="true").content.decode()
        assert "already queued or running; this request joins it" in joined
        assert not SyncRun.objects.exists()
    assert 'id="run-sync" >Run sync now' in operator_client.get("/sync/").content.decode()  # its task gone
    operator_client.post("/sync/run", HTTP_HX_REQUEST="true")  # the test settings run tasks at once
    assert SyncRun.objects.count() == 1 and not JobState.objects.filter(name=MANUAL_SYNC).exists()
    assert 'id="run-sync" >Run sync now' in operator_client.get("/sync/").content.decode()


def test_a_sync_of_one_plugin_joins_only_a_queued_sync_that_covers_it(operator_client, config):
    """A script asks for one plugin's sync (POST /sync/run with plugin): one queued for another
    plugin does not cover it. It joined that one, and the plugin asked for was never synced."""
    from sync_app.models import SyncRun
    from sync_app.tasks import MANUAL_SYNC, manual_sync_marker, manual_sync_task

    def asked_for(plugin_id: str) -> str:
        return operator_client.post("/sync/run", {"plugin": plugin_id}, HTTP_HX_REQUEST="true").content.decode()

    joins = "already queued or running; this request joins it"
    other = "price_action_v6"
    with asked_for_and_still_queued(manual_sync_marker(other), manual_sync_task, "tester", other):
        assert joins in asked_for(other)
        assert joins not in asked_for("combined_v3")  # the test settings run it at once
        assert [list(run.plugins) for run in SyncRun.objects.all()] == [["combined_v3"]]
    with asked_for_and_still_queued(MANUAL_SYNC, manual_sync_task, "tester", None):  # every plugin's covers it
        assert joins in asked_for("combined_v3")
        assert SyncRun.objects.count() == 1


def test_a_sync_whose_worker_was_killed_while_running_it_no_longer_holds_the_button(operator_client, config):
    """`serve` restarts a killed consumer at once: its heartbeat goes on, the sync it ran does not."""
    import os
    import socket
    import subprocess
    import sys

    from django.utils import timezone

    from sync_app.models import JobState
    from sync_app.tasks import MANUAL_SYNC, RUNNING, job_lock
    from zepix_admin.core.files import file_lock

    def run_by(pid: int) -> str:
        JobState.objects.update_or_create(
            name=MANUAL_SYNC,
            defaults={"last_started_at": timezone.now(), "task_id": f"{RUNNING} {socket.gethostname()} {pid}"},
        )
        return operator_client.get("/sync/").content.decode()

    with file_lock(job_lock(MANUAL_SYNC)):  # as the worker running it holds it
        assert 'id="run-sync" disabled>Sync queued…' in run_by(os.getpid())
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert 'id="run-sync" >Run sync now' in run_by(int(ended.stdout))  # a worker that is gone
    # A live worker's, brought back by a restore of the central database after the sync ended.
    assert 'id="run-sync" >Run sync now' in run_by(os.getpid())


def test_numbers_read_as_an_operator_expects_money_with_its_currency_and_prices_to_their_digits(
    operator_client, config
):
    from tests.helpers import closed_trade
    from zepix_admin.core.templatetags.zepix_format import count, money, price

    assert (money(1234.5), money(-12), money(None), count(12345)) == ("$1,234.50", "−$12.00", "", "12,345")
    assert (price(1.0853, "EURUSD"), price(151.2, "USDJPY"), price(2350.1, "XAUUSD")) == (
        "1.08530",
        "151.200",
        "2,350.10",
    )
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**closed_trade(77, 1234.5, symbol="USDJPY", entry_price=151.2))
    run_sync(trigger="command")
    page = operator_client.get("/trades/").content.decode()
    assert "$1,234.50" in page and "151.200" in page


def test_the_sync_page_shows_each_schedule_with_its_last_and_next_run_and_marks_a_late_one(operator_client, config):
    from datetime import timedelta

    from django.utils import timezone

    from sync_app.models import JobState

    now = timezone.now()
    JobState.objects.create(name="sync", last_started_at=now - timedelta(minutes=10))  # every 5 min: late
    JobState.objects.create(name="trading_backup", last_started_at=now - timedelta(minutes=5))  # hourly
    page = operator_client.get("/sync/?fragment=state", HTTP_HX_REQUEST="true").content.decode()
    rows = {row.split("</td>")[0]: row for row in page.split("<tr><td>")[1:] if "schedules" in page}
    assert 'badge bad">late' in rows["sync"]
    assert 'badge ok">on time' in rows["trading_backup"]
    assert "at the next tick" in rows["central_backup"]


def test_a_symbol_from_the_bot_is_shown_as_text_in_the_charts_never_as_markup(viewer_client, trading):
    hostile = '<img src=x onerror="alert(1)">'
    with PluginStore(plugins.database_path("combined_v3")) as store:  # an open trade: the exposure chart
        store.save_trade(**trade(77, symbol=hostile))
    run_sync(trigger="command")
    page = viewer_client.get("/charts/").content.decode()
    exposure = page.split("<figcaption>Open exposure")[1].split("</figure>")[0]
    assert "<img" not in page
    assert exposure.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 3  # axis label, hover, table


def test_the_charts_page_draws_each_chart_with_axes_values_and_a_table_for_each_range(viewer_client, trading):
    from datetime import timedelta

    from django.utils import timezone

    with PluginStore(plugins.database_path("combined_v3")) as store:  # a closed trade twenty days ago
        store.save_trade(**closed_trade(31, 100.0, exit_time=timezone.now() - timedelta(days=20)))
    run_sync(trigger="command")
    page = viewer_client.get("/charts/").content.decode()
    for title in (
        "P&amp;L by day",
        "Equity (running closed P&amp;L)",
        "Sync duration per run",
        "Rows copied per sync run",
        "Backup size",
        "Open exposure by symbol",
    ):
        assert f"<figcaption>{title}" in page
    assert 'aria-current="page">30 days' in page
    assert re.search(r'<text class="tick"[^>]*>\$[\d,.]+</text>', page)  # a money axis
    assert re.search(r"<title>[^<]*: \$137\.00</title>", page)  # equity today: 40 - 10 + 7 + 100 = 137
    figures = page.split("<figcaption>P&amp;L by day")[1].split("</figure>")[0]
    assert "$100.00" in figures  # twenty days ago is inside 30 days
    exposure = page.split("<figcaption>Open exposure")[1].split("</figure>")[0]
    assert "XAUUSD" in exposure and "−0.10 lots" in exposure  # the open sell
    week = viewer_client.get("/charts/", {"range": "7"}).content.decode()
    assert "$100.00" not in week.split("<figcaption>P&amp;L by day")[1].split("</figure>")[0]
    assert viewer_client.get("/charts/", {"range": "all"}).status_code == 200
    refused = viewer_client.get("/charts/", {"range": "1000"})
    assert refused.status_code == 400 and "The range must be one of 7, 30, 90, all" in refused.content.decode()
