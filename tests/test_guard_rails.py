"""Where drift is likely, a test that fails when it happens: roles on the views that change
state, the trade columns, the environment variables and the commands in the README."""

import ast
import re
from contextlib import closing
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.urls import URLPattern, get_resolver

from plugins_app import plugins
from plugins_app.models import PLUGIN_SCHEMA
from plugins_app.plugin_apps import models_for
from plugins_app.sqlite import connect
from plugins_app.store import TRADE_COLUMNS
from sync_app import sync
from sync_app.models import AggregatedTrade
from sync_app.views import CSV_COLUMNS
from tests.test_access import every_url
from zepix_admin.core.access import VIEWER
from zepix_admin.core.models import AuditEntry

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OUR_PACKAGES = ("zepix_admin", "plugins_app", "config_app", "sync_app")


def our_views():
    """(url, view) for every URL pattern of our own apps (the Django admin's are Django's)."""

    def walk(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLPattern):
                yield pattern.callback
            else:
                yield from walk(pattern, prefix)

    urls = [url for url in every_url() if not url.startswith("/admin/")]
    views = [view for view in walk(get_resolver()) if view.__module__.split(".")[0] in OUR_PACKAGES]
    return urls, views


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_every_view_that_takes_a_change_declares_its_role_and_a_viewer_changes_nothing(viewer_client, config):
    urls, views = our_views()
    entries = AuditEntry.objects.count()
    for url in urls:
        if url in ("/login/", "/logout/"):
            continue  # Django's own (a POST to /logout/ would end this test's session)
        for method in (viewer_client.post, viewer_client.put, viewer_client.delete):
            response = method(url)
            view = viewer_client.get(url).resolver_match
            if response.status_code == 405 or view is None:
                continue  # the view takes no such method
            role = getattr(view.func, "required_role", None)
            assert role is not None, (url, response.request["REQUEST_METHOD"], response.status_code)
            if role != VIEWER:
                assert response.status_code == 403, (url, response.status_code)
    assert AuditEntry.objects.count() == entries
    assert len(views) > 15


@pytest.mark.django_db(databases="__all__")
def test_the_trade_columns_are_the_same_everywhere():
    """Defined once in plugins_app.store; the plugin model, the plugin database, the central copy
    and the CSV export must all have them."""
    trade_model = {field.column for field in models_for("combined_v3")["Trade"]._meta.concrete_fields}
    assert set(TRADE_COLUMNS) <= trade_model
    with closing(connect(plugins.database_path("combined_v3"))) as connection:
        in_file = {row[1] for row in connection.execute("PRAGMA table_info(trades)")}
    assert set(TRADE_COLUMNS) <= in_file
    central = {field.column for field in AggregatedTrade._meta.concrete_fields}
    assert set(sync.COPIED_COLUMNS) <= central
    assert set(CSV_COLUMNS) <= central | {"plugin_id"}
    assert set(TRADE_COLUMNS) - set(sync.COPIED_COLUMNS) == set(sync.NOT_COPIED)
    assert {model._meta.db_table for model in PLUGIN_SCHEMA} >= {"trades"}


def python_files():
    for package in OUR_PACKAGES:
        yield from (path for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts)


def environment_reads(path: Path) -> set[str]:
    """Names of the environment variables a module reads (os.environ.get/[]/getenv, env helpers)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = ast.unparse(node.func)
            if function in ("os.environ.get", "os.getenv", "envbool", "envint", "envlist"):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


def test_the_environment_is_read_in_settings_only_and_every_variable_is_in_the_readme():
    settings_file = ROOT / "zepix_admin" / "settings.py"
    elsewhere = {
        str(path.relative_to(ROOT)): environment_reads(path)
        for path in python_files()
        if path != settings_file and path.name != "settings_test.py"
    }
    assert {path: names for path, names in elsewhere.items() if names} == {}
    read = environment_reads(settings_file)
    assert len(read) > 15
    missing = sorted(name for name in read if f"`{name}`" not in README)
    assert missing == [], f"not in the README's table of environment variables: {missing}"


def test_every_management_command_is_in_the_readme():
    ours = sorted(name for name, app in get_commands().items() if app.split(".")[0] in OUR_PACKAGES)
    assert "sync_plugins" in ours and "startplugin" in ours
    table = README.split("## Management commands", 1)[1]
    missing = [name for name in ours if not re.search(rf"^\| `{name}\b", table, re.MULTILINE)]
    assert missing == [], f"not in the README's table of commands: {missing}"


def test_the_system_checks_pass_with_nothing_silenced():
    """The plugin tables are the bot's (unmanaged models): the same table names in every plugin
    app are no clash to Django, and nothing needs silencing."""
    from django.conf import settings
    from django.core.checks import model_checks

    assert not getattr(settings, "SILENCED_SYSTEM_CHECKS", [])
    assert model_checks.check_all_models(None) == []
