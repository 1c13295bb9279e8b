"""Editing configuration in the browser: rows fit the schema, a row saves without a reload,
invalid values and stale edits are answered inline and save nothing."""

import re

import pytest

from config_app import service

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
HTMX = {"HTTP_HX_REQUEST": "true"}


def save_row(client, path, value, base_version=1, scope="combined_v3", confirmed="yes"):
    form = {"path": path, "value": value, "base_version": base_version, "confirmed": confirmed}
    return client.post(f"/config/{scope}/row", form, **HTMX)


def test_the_scope_list_shows_every_scope(viewer_client, config):
    page = viewer_client.get("/config/").content.decode()
    for scope in ("global", "combined_v3", "price_action_v6"):
        assert f'href="/config/{scope}/"' in page


def test_each_setting_gets_the_input_its_schema_asks_for(operator_client, config):
    page = operator_client.get("/config/combined_v3/").content.decode()
    assert 'type="checkbox" name="value" value="true" checked aria-label="enabled"' in page
    assert 'aria-label="max_lot_size"' in page and 'step="any"' in page and 'min="0"' in page and 'max="100"' in page
    assert '<select name="value" aria-label="mode">' in page and '<option value="live"' in page
    assert 'aria-label="max_open_trades"' in page and 'step="1"' in page
    global_page = operator_client.get("/config/global/").content.decode()
    assert "risk_tiers.5000.per_trade_cap" in global_page


def test_saving_a_row_answers_the_row_and_moves_the_base_version(operator_client, config):
    response = save_row(operator_client, "max_lot_size", "0.5")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Saved as version 2" in body
    assert 'id="base-version" name="base_version" value="2" hx-swap-oob="true"' in body
    assert service.active_document("combined_v3")["max_lot_size"] == 0.5
    assert service.current("combined_v3").author == "otto_operator"
    save_row(operator_client, "enabled", "false", base_version=2)
    assert service.active_document("combined_v3")["enabled"] is False


def test_a_checked_toggle_sends_true(operator_client, config):
    config("combined_v3", "enabled", False)
    operator_client.post(
        "/config/combined_v3/row",
        {"path": "enabled", "value": ["false", "true"], "base_version": 2, "confirmed": "yes"},
        **HTMX,
    )
    assert service.active_document("combined_v3")["enabled"] is True


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("max_lot_size", "-2", "must be more than 0"),
        ("max_lot_size", "lots", "&quot;lots&quot; is not a number"),
        ("max_open_trades", "2.5", "must be a whole number"),
        ("mode", "yolo", "must be one of &quot;live&quot;, &quot;paper&quot;"),
        ("symbols", '["eur"]', "must match the pattern"),
        ("symbols", "EURUSD, eur", "must match the pattern"),
    ],
)
def test_an_invalid_value_is_refused_inline_and_nothing_is_saved(operator_client, config, path, value, message):
    body = save_row(operator_client, path, value).content.decode()
    assert "Not saved:" in body and message.replace("'", "&#x27;") in body
    assert service.current("combined_v3").version == 1


def test_an_edit_while_another_change_holds_the_configuration_is_refused_inline(
    operator_client, config, settings, monkeypatch
):
    """A restore of the central database holds the config lock (here the test holds it): the
    row says the value was not saved and why, instead of an error page that an inline edit
    never shows; the value stays among the unsaved edits."""
    from zepix_admin.core.files import file_lock

    monkeypatch.setattr(service, "CHANGE_WAIT_SECONDS", 0.2)
    with file_lock(settings.CONFIG_DIR / ".zepix-config.lock"):
        response = save_row(operator_client, "max_lot_size", "0.5")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Not saved:" in body and "nothing was saved. Try again in a moment." in body
    assert service.current("combined_v3").version == 1
    assert "Saved as version 2" in save_row(operator_client, "max_lot_size", "0.5").content.decode()


def test_a_list_is_edited_as_a_list_of_items_separated_by_commas(operator_client, config):
    page = operator_client.get("/config/combined_v3/").content.decode()
    shown = re.search(r'name="value" value="([^"]*)"[^>]*aria-label="symbols"', page).group(1)
    assert "[" not in shown and "&quot;" not in shown  # items, not JSON
    save_row(operator_client, "symbols", " EURUSD, XAUUSD ,GBPJPY ")
    assert service.active_document("combined_v3")["symbols"] == ["EURUSD", "XAUUSD", "GBPJPY"]
    page = operator_client.get("/config/combined_v3/").content.decode()
    assert 'value="EURUSD, XAUUSD, GBPJPY"' in page
    operator_client.post(
        "/config/global/row", {"path": "sync.retry_delays_seconds", "value": "1, 2.5, 30", "base_version": 1}, **HTMX
    )
    assert service.active_document("global")["sync"]["retry_delays_seconds"] == [1, 2.5, 30]
    refused = operator_client.post(
        "/config/global/row", {"path": "sync.retry_delays_seconds", "value": "1, soon", "base_version": 2}, **HTMX
    )
    assert "&quot;soon&quot; is not a number" in refused.content.decode()


def test_a_stale_edit_shows_the_conflict_inline(operator_client, config):
    config("combined_v3", "max_lot_size", 0.7)  # someone else saved version 2
    body = save_row(operator_client, "enabled", "false", base_version=1).content.decode()
    assert "Not saved:" in body and "it is now version 2 by test" in body and "max_lot_size" in body
    assert service.active_document("combined_v3")["enabled"] is True
    stale = save_row(operator_client, "max_lot_size", "0.45", base_version=1).content.decode()
    assert 'name="value" value="0.45"' in stale  # the operator's value stays in the field
    assert "Current value: <code>0.7</code>" in stale and "Apply mine on top" in stale
    assert '<input type="hidden" name="base_version" value="2">' in stale
    assert "Saved as version 3" in save_row(operator_client, "max_lot_size", "0.45", base_version=2).content.decode()
    assert service.active_document("combined_v3")["max_lot_size"] == 0.45


def test_a_setting_that_does_not_exist_is_refused(operator_client, config):
    assert save_row(operator_client, "../../etc", "1").status_code == 400
    assert save_row(operator_client, "max_lot_size", "1", base_version="x").status_code == 400
    assert operator_client.get("/config/nosuch/").status_code == 404


def test_history_shows_readable_diffs_and_rollback_asks_for_confirmation(operator_client, config):
    config("combined_v3", "max_lot_size", 0.7)
    page = operator_client.get("/config/combined_v3/history/").content.decode()
    assert "<code>max_lot_size</code>: 1.0 → 0.7" in page
    assert 'hx-confirm="Roll combined_v3 back to version 1?' in page
    response = operator_client.post("/config/combined_v3/rollback/1/", **HTMX)
    assert response["HX-Redirect"] == "/config/combined_v3/"
    assert service.current("combined_v3").version == 3
    assert service.active_document("combined_v3")["max_lot_size"] == 1.0


def test_the_settings_fragment_is_served_for_live_updates(viewer_client, config):
    config("combined_v3", "max_lot_size", 0.7)
    body = viewer_client.get("/config/combined_v3/?fragment=settings", **HTMX).content.decode()
    assert body.startswith('\n<div id="settings" data-version="2">') or 'id="settings" data-version="2"' in body
    assert "<html" not in body


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        ("mode", "live", "&quot;paper&quot;</code> → <code>&quot;live&quot;"),
        ("enabled", "false", "true</code> → <code>false"),
        ("max_lot_size", "5", "1.0</code> → <code>5"),
    ],
)
def test_a_high_risk_change_is_shown_and_saved_only_once_confirmed(operator_client, config, path, value, shown):
    asked = save_row(operator_client, path, value, confirmed="").content.decode()
    assert "High-risk setting" in asked and shown in asked
    assert service.current("combined_v3").version == 1  # nothing saved yet
    saved = save_row(operator_client, path, value, confirmed="yes").content.decode()
    assert "Saved as version 2" in saved and "Undo" in saved
    assert service.current("combined_v3").version == 2


def test_a_low_risk_change_saves_at_once_and_an_invalid_risky_one_is_refused_first(operator_client, config):
    assert "Saved as version 2" in save_row(operator_client, "max_lot_size", "0.5", confirmed="").content.decode()
    refused = save_row(operator_client, "mode", "yolo", base_version=2, confirmed="").content.decode()
    assert "Not saved:" in refused and "High-risk" not in refused


def test_undo_brings_back_the_version_before_while_nobody_saved_since(operator_client, config):
    save_row(operator_client, "mode", "live", confirmed="yes")
    response = operator_client.post("/config/combined_v3/undo/2/", **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == "/config/combined_v3/"
    assert service.current("combined_v3").version == 3
    assert service.active_document("combined_v3")["mode"] == "paper"
    assert "Version 2 undone" in operator_client.get("/config/combined_v3/").content.decode()
    stale = operator_client.post("/config/combined_v3/undo/2/", **HTMX)
    assert stale.status_code == 409 and service.current("combined_v3").version == 3
