"""Shared personas (viewer, operator, admin) and helpers for the whole suite."""

import os
from pathlib import Path

# pytest-playwright keeps an asyncio loop in the main thread; the ORM must still run there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from playwright.sync_api import expect

from zepix_admin.core import access
from zepix_admin.core.files import write_atomic

# A browser test's expectations wait up to 15 s, not Playwright's 5: CI runs two test files at a
# time, each with its servers and its browser, on two shared cores. A passing test waits only as
# long as the page takes; the longer wait is spent only on a failing one.
expect.set_options(timeout=15_000)

DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup"}


def pytest_collection_modifyitems(config, items):
    """With the central database on PostgreSQL (ZEPIX_TEST_POSTGRES=1, `make test`'s second
    pass) the tests that use the central database run; those of the plugin files alone ran in
    the first pass already."""
    if os.environ.get("ZEPIX_TEST_POSTGRES") != "1":
        return
    central, others = [], []
    for item in items:
        uses_database = item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(item.fixturenames)
        (central if uses_database else others).append(item)
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = central


@pytest.fixture(autouse=True)
def _empty_plugin_tables(request):
    """The plugin tables are the bot's (unmanaged): Django's flush between tests leaves them, and
    the bot's API writes past Django's transactions. Emptied before every transactional database
    test (in the others, Django's own transaction holds the file and rolls its writes back)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        yield
        return
    from contextlib import closing

    from django.conf import settings

    from plugins_app import registry, schema
    from plugins_app.sqlite import connect

    for plugin_id in settings.PLUGIN_IDS:
        path = settings.DATABASES[registry.alias_for(plugin_id)]["NAME"]
        if not os.path.exists(path):
            continue
        with closing(connect(path)) as connection:
            for table in (*reversed(schema.SEED_TABLES), "signals"):
                connection.execute(f"DELETE FROM {table}")
            connection.execute("DELETE FROM sqlite_sequence")
    yield


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, role: str | None, *, staff: bool = False, password: str = "pw-for-tests-123"):
        user = django_user_model.objects.create_user(username=username, password=password, is_staff=staff)
        if role:
            access.set_role(user, role)
        return user

    return make


@pytest.fixture
def viewer(make_user):
    return make_user("vera_viewer", access.VIEWER)


@pytest.fixture
def operator(make_user):
    return make_user("otto_operator", access.OPERATOR)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="ada_admin", password="pw-for-tests-123")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def config(settings):
    """Fresh default configuration documents, recorded as version 1; returns a setter."""
    from config_app import defaults, documents, service

    for scope in documents.scopes():
        write_atomic(documents.document_path(scope), documents.render(defaults.for_scope(scope)))
    service.ensure_defaults()

    def set_value(scope: str, path: str, value):
        return service.set_value(
            scope, path, value, base_version=service.current(scope).version, author="test", via="test"
        )

    return set_value


@pytest.fixture
def webhook_receiver():
    from tests.helpers import webhook_server

    with webhook_server() as receiver:
        yield receiver


@pytest.fixture
def three_open_trades(config):
    """Two open trades in combined_v3, one in price_action_v6 (not synced)."""
    from plugins_app import plugins
    from plugins_app.store import PluginStore
    from tests.helpers import trade

    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(1), trade(2, symbol="XAUUSD")])
    with PluginStore(plugins.database_path("price_action_v6")) as store:
        store.save_trade(**trade(3))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server (a free port, no persistence) for this test run; `make test`
    installs Debian's redis-server when it is missing (`make redis-server`)."""
    import shutil

    from tests.helpers import free_port, start_redis

    if not shutil.which("redis-server"):
        pytest.fail("redis-server is missing: run `make redis-server` (make test does).")
    port = free_port()
    server = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait()


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A desktop screen; tests/test_operator_cases.py runs its tests on a phone-sized one too."""
    return {**browser_context_args, "viewport": {"width": 1440, "height": 900}}


AXE_SCRIPT = Path(__file__).resolve().parent.parent / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_source():
    """axe-core (the npm package, fetched by `make axe-core`) to inject into pages."""
    if not AXE_SCRIPT.exists():
        pytest.fail(f"axe-core is missing ({AXE_SCRIPT}): run `make axe-core` (make test does).")
    return AXE_SCRIPT.read_text()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium: Playwright cannot download its own browser on these machines."""
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def install(tmp_path):
    """A fresh install (`setup` in a subprocess) with a few trades in each plugin: (env, data folder)."""
    from plugins_app.store import PluginStore
    from tests.helpers import closed_trade, installed, trade

    env, _, _ = installed(tmp_path)
    data = tmp_path / "data"
    for plugin_id, first in (("combined_v3", 1), ("price_action_v6", 101)):
        with PluginStore(data / "plugins" / f"{plugin_id}.sqlite3") as store:
            store.save_trades([trade(first), closed_trade(first + 1, 12.5), closed_trade(first + 2, -4.0)])
    return env, data
