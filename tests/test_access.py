"""Every page needs login (but the login page and /healthz); each role does exactly what it may,
and a forbidden action answers 403 and changes nothing."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from config_app import service
from plugins_app import plugins
from plugins_app.store import PluginStore
from sync_app import backup as backups
from sync_app.models import Backup, SyncRun
from tests.helpers import trade
from zepix_admin.core.alerts import raise_alert
from zepix_admin.core.models import Alert, AuditEntry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
OPEN_TO_ALL = {"/login/", "/admin/login/", "/healthz"}  # the two login forms
SAMPLES = {"int": "1", "str": "combined_v3", "path": "x", "slug": "x", "uuid": "00000000-0000-0000-0000-000000000000"}


def every_url(resolver=None, prefix=""):
    """One concrete URL per pattern of the project, converters filled with sample values."""
    import re

    for pattern in (resolver or get_resolver()).url_patterns:
        route = str(pattern.pattern)
        route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")
        route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES.get(m.group(1) or "str", "x"), route)
        route = re.sub(r"\(\?P<\w+>[^)]*\)", "x", route)
        if isinstance(pattern, URLResolver):
            yield from every_url(pattern, prefix + route)
        elif isinstance(pattern, URLPattern):
            yield "/" + prefix + route


def test_every_url_refuses_anonymous_users_except_login_and_healthz(client, config):
    urls = sorted(set(every_url()))
    assert len(urls) > 40  # the project's and the admin's
    for url in urls:
        if url in OPEN_TO_ALL:
            continue
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code in (302, 401, 404, 405), (url, response.status_code)
            if response.status_code == 302:
                assert "login" in response["Location"], url
            assert response.status_code != 200, url


def test_the_login_page_and_healthz_are_open(client, config):
    assert client.get("/login/").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)


def test_a_user_without_a_role_sees_no_data(client, make_user, config):
    client.force_login(make_user("nobody", None))
    assert client.get("/api/config/global").status_code == 403


VIEWER_PAGES = [
    "/",
    "/trades/",
    "/sync/",
    "/backups/",
    "/config/",
    "/config/global/",
    "/config/combined_v3/",
    "/config/global/history/",
    "/alerts/",
    "/audit/",
    "/admin/",
]


@pytest.mark.parametrize("url", VIEWER_PAGES)
def test_a_viewer_sees_every_page(viewer_client, config, url):
    assert viewer_client.get(url).status_code == 200


@pytest.fixture
def world(config):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(1))
    backup = backups.backup_database("plugin_combined_v3")
    alert = raise_alert("sync", "combined_v3", "test alert")
    return {"backup": backup, "alert": alert}


def forbidden_actions(world):
    document = service.active_document("combined_v3")
    return [
        ("/sync/run", {}),
        ("/sync/combined_v3/reset", {}),
        ("/backups/start", {}),
        (f"/backups/{world['backup'].pk}/restore", {}),
        ("/config/combined_v3/row", {"path": "max_lot_size", "value": "0.5", "base_version": "1"}),
        ("/config/combined_v3/rollback/1/", {}),
        (f"/alerts/{world['alert'].pk}/acknowledge", {}),
    ], document


def snapshot():
    return (
        SyncRun.objects.count(),
        Backup.objects.count(),
        service.current("combined_v3").version,
        Alert.objects.filter(acknowledged_at__isnull=True).count(),
        AuditEntry.objects.count(),
    )


@pytest.mark.parametrize("htmx", [False, True])
def test_a_viewer_changes_nothing_from_a_page_or_an_htmx_request(viewer_client, world, htmx):
    actions, _ = forbidden_actions(world)
    before = snapshot()
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    for url, data in actions:
        assert viewer_client.post(url, data, **headers).status_code == 403, url
    assert snapshot() == before


def test_an_operator_may_sync_back_up_edit_and_acknowledge_but_not_restore(operator_client, world):
    assert operator_client.post("/sync/run").status_code == 302
    assert SyncRun.objects.get().actor == "otto_operator"
    assert operator_client.post("/backups/start").status_code == 302
    assert Backup.objects.count() > 1
    response = operator_client.post(
        "/config/combined_v3/row", {"path": "max_lot_size", "value": "0.5", "base_version": "1"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and service.current("combined_v3").version == 2
    assert operator_client.post(f"/alerts/{world['alert'].pk}/acknowledge").status_code == 302
    assert operator_client.post(f"/backups/{world['backup'].pk}/restore").status_code == 403
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"sync.run", "backup.create", "config.save", "alert.acknowledge"} <= actions


def test_an_admin_may_restore(admin_client, world):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(2))
    refused = admin_client.post(f"/backups/{world['backup'].pk}/restore", {"confirm": "plugin_price_action_v6"})
    assert refused.status_code == 302 and not AuditEntry.objects.filter(action="backup.restore").exists()
    with PluginStore(plugins.database_path("combined_v3")) as store:
        assert store.trade_by_ticket(2) is not None  # nothing restored without the right name typed
    confirmed = {"confirm": world["backup"].database}
    assert admin_client.post(f"/backups/{world['backup'].pk}/restore", confirmed).status_code == 302
    with PluginStore(plugins.database_path("combined_v3")) as store:
        assert store.trade_by_ticket(2) is None
    assert AuditEntry.objects.filter(action="backup.restore", actor="ada_admin").exists()


def test_a_viewer_finds_no_edit_controls(viewer_client, config):
    config_page = viewer_client.get("/config/combined_v3/").content.decode()
    assert "hx-post" not in config_page and '<input type="number"' not in config_page
    assert "Run sync now" not in viewer_client.get("/sync/").content.decode()
    assert "Back up every database now" not in viewer_client.get("/backups/").content.decode()
    assert "Roll back" not in viewer_client.get("/config/combined_v3/history/").content.decode()


def test_the_admin_role_manages_users_and_tokens_and_others_do_not(client, make_user, config):
    from zepix_admin.core import access

    access.ensure_groups()
    client.force_login(make_user("ana_admin_role", access.ADMIN))
    assert client.get("/admin/auth/user/").status_code == 200
    assert client.get("/admin/zepix_admin/apitoken/").status_code == 200
    client.force_login(make_user("oli_operator", access.OPERATOR))
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get("/admin/zepix_admin/apitoken/").status_code == 403


def test_a_forged_plugin_id_is_refused_and_nothing_runs(operator_client, config):
    for forged in ("../etc", "NOPE", "nosuch"):
        assert operator_client.post("/sync/run", {"plugin": forged}).status_code == 404
        assert operator_client.post(f"/sync/{forged}/reset").status_code == 404
    assert not SyncRun.objects.exists()


def test_a_logged_in_user_without_a_role_sees_no_page_but_can_log_out(client, make_user, config):
    client.force_login(make_user("nobody", None))
    for path in VIEWER_PAGES[:-1]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "no role yet" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # the admin's own login page: no access either
    assert client.get("/healthz").status_code in (200, 503)
    assert client.post("/logout/").status_code == 302


def full_disk_for_writes(execute, sql, params, many, context):
    """The central database on a full disk: its reads go on, every write is refused as SQLite
    refuses it (a Django error caused by SQLite's SQLITE_FULL)."""
    import sqlite3

    from django.db import OperationalError

    if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
        cause = sqlite3.OperationalError("database or disk is full")
        cause.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise OperationalError(str(cause)) from cause
    return execute(sql, params, many, context)


def test_on_a_full_disk_a_page_is_read_whatever_its_bookkeeping_and_a_change_is_refused_as_such(
    client, operator_client
):
    """A page read wrote a session's last activity (once a minute) and a token's last use, and
    failed with them: on a full disk the operator could not look at the console to see why."""
    from django.db import connection

    from zepix_admin.core.access import create_token

    token = create_token("full-disk-bot", "operator")
    client.raise_request_exception = False
    operator_client.raise_request_exception = False
    with connection.execute_wrapper(full_disk_for_writes):
        assert operator_client.get("/config/").status_code == 200  # its first activity written: refused
        assert client.get("/config/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200  # its first use
        refused = operator_client.post("/sync/run")
        assert refused.status_code == 503 and b"is full" in refused.content and b"not saved" in refused.content
