"""The dashboard in real Chromium (Debian's, driven by Playwright) against a live server."""

import re
import sqlite3
from contextlib import closing

import pytest
from playwright.sync_api import expect

from config_app import service
from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app.models import SyncRun
from tests.helpers import trade

pytestmark = [pytest.mark.browser, pytest.mark.django_db(databases="__all__", transaction=True)]
PASSWORD = "pw-for-tests-123"


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("nav.top")).to_contain_text(username)


def test_log_in_see_both_plugins_and_log_out(page, live_server, operator, three_open_trades):
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/"))
    log_in(page, live_server, operator.username)
    expect(page.locator("#card-combined_v3")).to_contain_text("Open trades")
    expect(page.locator("#card-price_action_v6")).to_be_visible()
    expect(page.locator("#total-open")).to_have_text("3")
    page.click("nav.top button:has-text('Log out')")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.goto(f"{live_server.url}/sync/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_a_viewer_finds_no_edit_controls_and_a_crafted_post_is_refused(page, live_server, viewer, three_open_trades):
    log_in(page, live_server, viewer.username)
    page.goto(f"{live_server.url}/config/combined_v3/")
    expect(page.locator("#settings")).to_be_visible()
    expect(page.locator("#settings input[type=number]")).to_have_count(0)
    expect(page.locator("#settings select")).to_have_count(0)
    page.goto(f"{live_server.url}/sync/")
    expect(page.locator("#run-sync")).to_have_count(0)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/config/combined_v3/row",
        headers={"X-CSRFToken": csrf},
        form={"path": "max_lot_size", "value": "9", "base_version": "1"},
    )
    assert response.status == 403
    response = page.request.post(f"{live_server.url}/sync/run", headers={"X-CSRFToken": csrf})
    assert response.status == 403
    assert service.current("combined_v3").version == 1 and not SyncRun.objects.exists()


def test_an_operator_triggers_a_sync_and_sees_the_result_without_a_reload(
    page, live_server, operator, three_open_trades
):
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/sync/")
    expect(page.locator("#sync-runs")).to_contain_text("No sync has run yet")
    page.evaluate("window.stillTheSamePage = true")
    page.click("#run-sync")
    expect(page.locator("#sync-runs")).to_contain_text("combined_v3: +2 ~0")
    expect(page.locator("#sync-runs")).to_contain_text(operator.username)
    assert page.evaluate("window.stillTheSamePage") is True


def test_edit_a_value_inline_see_an_invalid_one_refused_and_a_second_page_update_live(
    page, browser, live_server, operator, make_user, three_open_trades
):
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/config/combined_v3/")
    other_user = make_user("olga_operator", "operator")
    watcher_context = browser.new_context()
    watcher = watcher_context.new_page()
    log_in(watcher, live_server, other_user.username)
    watcher.goto(f"{live_server.url}/config/combined_v3/")
    watcher.evaluate("window.stillTheSamePage = true")

    page.evaluate("window.stillTheSamePage = true")
    lot = page.get_by_label("max_lot_size", exact=True)
    lot.fill("0.35")
    lot.press("Tab")
    expect(page.locator("#row-max-lot-size")).to_contain_text("Saved as version 2")
    assert service.active_document("combined_v3")["max_lot_size"] == 0.35
    expect(page.locator("#version-header")).to_contain_text("Version 2 by otto_operator")  # the header follows
    expect(page.locator("#version-header")).to_contain_text("max_lot_size 1.0 → 0.35")

    lot = page.get_by_label("max_lot_size", exact=True)
    lot.fill("-4")
    lot.press("Tab")
    expect(page.locator("#row-max-lot-size")).to_contain_text("Not saved: must be more than 0")
    assert service.current("combined_v3").version == 2

    page.get_by_label("enabled", exact=True).click()  # high-risk: asked first, nothing saved yet
    expect(page.get_by_role("alertdialog")).to_contain_text("true → false")
    assert service.current("combined_v3").version == 2
    page.get_by_role("button", name="Confirm and save").click()
    expect(page.locator("#row-enabled")).to_contain_text("Saved as version 3")
    assert service.active_document("combined_v3")["enabled"] is False
    assert page.evaluate("window.stillTheSamePage") is True

    expect(watcher.locator("#live-notice")).to_contain_text("by otto_operator")
    expect(watcher.locator("#current-version")).to_have_text("3")
    expect(watcher.get_by_label("max_lot_size", exact=True)).to_have_value("0.35")
    assert watcher.evaluate("window.stillTheSamePage") is True
    watcher_context.close()

    lot = page.get_by_label("max_lot_size", exact=True)  # Enter saves through HTMX, once
    lot.fill("0.4")
    lot.press("Enter")
    expect(page.locator("#row-max-lot-size")).to_contain_text("Saved as version 4")
    assert "?" not in page.url and page.evaluate("window.stillTheSamePage") is True
    assert service.current("combined_v3").version == 4
    page.wait_for_timeout(500)
    assert service.current("combined_v3").version == 4  # no second save racing the first

    page.reload()
    page.get_by_label("enabled", exact=True).click()
    page.get_by_role("button", name="Confirm and save").click()
    expect(page.locator("#row-enabled")).to_contain_text("Saved as version 5")
    page.locator("#row-enabled").get_by_role("button", name="Undo").click()
    expect(page.locator("#live-notice")).to_contain_text("Version 5 undone")
    assert service.active_document("combined_v3")["enabled"] is False and service.current("combined_v3").version == 6


def test_a_click_the_server_refuses_says_why_next_to_the_button(
    page, live_server, operator, three_open_trades, settings, monkeypatch
):
    """A rollback asked for while a restore of the central database holds the configuration
    (held here by the test) is refused with a 503: htmx swaps nothing for it, and the button
    seemed to do nothing. The refusal is shown beside it, and so is a request the network cut;
    nothing was saved; a try once both are past goes through."""
    from zepix_admin.core.files import file_lock

    monkeypatch.setattr(service, "CHANGE_WAIT_SECONDS", 0.3)
    document = service.active_document("combined_v3")
    service.save("combined_v3", {**document, "max_lot_size": 0.45}, base_version=1, author="otto", via="test")
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/config/combined_v3/history/")
    page.on("dialog", lambda dialog: dialog.accept())
    roll_back = page.get_by_role("button", name="Roll back to this")
    with file_lock(settings.CONFIG_DIR / ".zepix-config.lock"):
        roll_back.click()
        expect(page.get_by_role("alert")).to_contain_text("nothing was saved. Try again in a moment.")
    assert service.current("combined_v3").version == 2
    page.route("**/rollback/**", lambda route: route.abort())  # the network cut on the way
    roll_back.click()
    expect(page.get_by_role("alert")).to_contain_text("The console did not answer")
    page.unroute("**/rollback/**")
    roll_back.click()
    expect(page).to_have_url(f"{live_server.url}/config/combined_v3/")
    assert service.current("combined_v3").version == 3
    assert service.active_document("combined_v3")["max_lot_size"] == document["max_lot_size"]


def test_an_open_overview_shows_a_plugin_breaking_by_name_while_the_others_keep_updating(
    page, live_server, operator, three_open_trades
):
    log_in(page, live_server, operator.username)
    expect(page.locator("#card-price_action_v6 [data-testid=state]")).to_have_text("enabled")
    path = plugins.database_path("price_action_v6")
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("ALTER TABLE trades RENAME TO trades_gone")
    try:
        broken = page.locator("#card-price_action_v6")
        expect(broken.locator("[data-testid=state]")).to_have_text("broken", timeout=10_000)
        expect(broken).to_contain_text("wrong schema: no table trades")
        expect(broken).to_contain_text("restore_backup")
        with PluginStore(plugins.database_path("combined_v3")) as store:
            store.save_trade(**trade(9))
        expect(page.locator("#card-combined_v3")).to_contain_text("Open trades")
        expect(page.locator("#total-open")).to_have_text("3", timeout=10_000)  # two plus the new one
    finally:
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("ALTER TABLE trades_gone RENAME TO trades")
    expect(page.locator("#card-price_action_v6 [data-testid=state]")).to_have_text("enabled", timeout=10_000)


def test_the_dashboard_follows_a_dark_system_theme(page, live_server, operator, three_open_trades):
    page.emulate_media(color_scheme="dark")
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"


def test_a_live_fragment_that_cannot_refresh_says_it_is_stale_and_recovers(
    page, live_server, operator, three_open_trades
):
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/")
    expect(page.locator("#overview")).to_be_visible()
    page.route("**/?fragment=cards", lambda route: route.fulfill(status=500, body="down"))
    expect(page.locator("#overview .stale-marker")).to_contain_text("Not updated since", timeout=10_000)
    expect(page.locator("#total-open")).to_be_visible()  # the last numbers stay
    page.unroute("**/?fragment=cards")
    expect(page.locator("#overview .stale-marker")).to_have_count(0, timeout=10_000)


def test_a_save_by_someone_else_never_wipes_the_field_being_edited(
    page, browser, live_server, operator, make_user, three_open_trades
):
    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/config/combined_v3/")
    other_context = browser.new_context()
    other = other_context.new_page()
    log_in(other, live_server, make_user("olga_operator", "operator").username)
    other.goto(f"{live_server.url}/config/combined_v3/")

    risk = page.get_by_label("risk_per_trade_pct", exact=True)
    risk.fill("1.5")  # typed, not saved yet: the field keeps focus
    lot = other.get_by_label("max_lot_size", exact=True)
    lot.fill("0.35")
    lot.press("Tab")
    expect(page.get_by_label("max_lot_size", exact=True)).to_have_value("0.35")  # the other rows update
    assert risk.input_value() == "1.5"

    other_risk = other.get_by_label("risk_per_trade_pct", exact=True)
    other_risk.fill("0.8")
    other_risk.press("Tab")
    expect(page.locator("#row-risk-per-trade-pct")).to_contain_text("Changed by olga_operator to 0.8 meanwhile")
    assert page.get_by_label("risk_per_trade_pct", exact=True).input_value() == "1.5"
    page.get_by_label("risk_per_trade_pct", exact=True).press("Enter")
    expect(page.locator("#row-risk-per-trade-pct")).to_contain_text("Saved as version 4")
    assert service.active_document("combined_v3")["risk_per_trade_pct"] == 1.5
    other_context.close()


def test_the_alert_badge_in_the_navigation_is_live(page, live_server, operator, three_open_trades):
    from zepix_admin.core.alerts import raise_alert

    log_in(page, live_server, operator.username)
    page.goto(f"{live_server.url}/config/")
    expect(page.locator("#alert-badge")).to_have_text("")
    raise_alert("sync", "combined_v3", "Sync failed", level="CRITICAL")
    expect(page.locator("#alert-badge")).to_have_text("1", timeout=15_000)
