"""`manage.py setup` prepares a fresh machine and changes nothing the second time (real processes)."""

import json
import shutil
import sqlite3
from contextlib import closing

import pytest

from tests.helpers import fresh_env, manage

pytestmark = pytest.mark.slow


def counts(data_dir):
    found = {}
    for path in sorted([data_dir / "central.sqlite3", *(data_dir / "plugins").glob("*.sqlite3")]):
        with closing(sqlite3.connect(path, isolation_level=None)) as connection:
            tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            found[path.name] = {
                table: connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables
            }
    return found


def test_setup_prepares_everything_then_is_idempotent(tmp_path):
    env = fresh_env(tmp_path)
    del env["ZEPIX_STATIC_ROOT"]  # collected where a new install has them, under its data folder
    first = manage("setup", "--demo-trades", "50", env=env)
    assert first.returncode == 0, first.stderr
    data = tmp_path / "data"
    assert (data / "central.sqlite3").exists()
    assert sorted(p.name for p in (data / "plugins").glob("*.sqlite3")) == [
        "combined_v3.sqlite3",
        "price_action_v6.sqlite3",
    ]
    assert (tmp_path / "config" / "config.json").exists()
    assert "demo data: 50 trades in combined_v3" in first.stdout
    snapshot = counts(data)
    assert snapshot["combined_v3.sqlite3"]["trades"] == 50
    with closing(sqlite3.connect(data / "plugins" / "combined_v3.sqlite3", isolation_level=None)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    second = manage("setup", "--demo-trades", "50", env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert counts(data) == snapshot

    # Static files are collected again only when they are missing (or their sources changed).
    assert "static files: collected" in first.stdout
    shutil.rmtree(data / "staticfiles")  # where they are collected by default
    third = manage("setup", "--no-demo", env=env)
    assert "static files: collected" in third.stdout
    assert json.loads((data / "staticfiles" / "staticfiles.json").read_text())["paths"]["zepix.css"]


def test_setup_prints_a_generated_password_once_when_none_is_given(tmp_path):
    env = fresh_env(tmp_path)
    del env["DJANGO_SUPERUSER_PASSWORD"]
    first = manage("setup", "--no-demo", env=env)
    assert "password" in first.stdout and "shown only this once" in first.stdout
    assert "shown only this once" not in manage("setup", "--no-demo", env=env).stdout


def test_startplugin_creates_and_migrates_the_new_plugin_database(tmp_path):
    env = fresh_env(tmp_path)
    assert manage("setup", "--no-demo", env=env).returncode == 0
    result = manage("startplugin", "breakout_v1", env=env)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "data" / "plugins" / "breakout_v1.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 0
    assert (tmp_path / "config" / "plugins" / "breakout_v1.json").exists()
    again = manage("startplugin", "breakout_v1", env=env)
    assert again.returncode != 0 and "already declared" in again.stderr
    seeded = manage("seed_demo", "--trades", "10", "--plugin", "breakout_v1", env=env)
    assert seeded.returncode == 0, seeded.stderr

    # A plugin with its own settings schema: declared with its defaults, refused when it redefines ours.
    own = tmp_path / "grid.schema.json"
    own.write_text(
        '{"type": "object", "required": ["grid_pips"], "properties": {"grid_pips": {"type": "integer", '
        '"minimum": 1, "default": 15}}}'
    )
    declared = manage("startplugin", "grid_v1", "--schema", str(own), env=env)
    assert declared.returncode == 0, declared.stderr
    assert manage("config", "get", "grid_v1", "grid_pips", env=env).stdout.strip() == "15"
    refused = manage("config", "set", "grid_v1", "grid_pips", "0", env=env)
    assert refused.returncode == 1 and "grid_pips" in refused.stderr
    own.write_text('{"type": "object", "properties": {"mode": {"type": "string"}}}')
    clash = manage("startplugin", "grid_v2", "--schema", str(own), env=env)
    assert clash.returncode == 1 and "redefines built-in settings: mode" in clash.stderr
    assert not (tmp_path / "config" / "plugins" / "grid_v2.json").exists()


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage("check", env=fresh_env(tmp_path, DJANGO_DEBUG="0"))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_mode_passes_the_deploy_checks(tmp_path):
    env = fresh_env(
        tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 20 + "-a-long-random-production-key-0123456789",
        DJANGO_ALLOWED_HOSTS="zepix.example.com",
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_boolean_in_the_environment_is_refused(tmp_path):
    result = manage("check", env=fresh_env(tmp_path, DJANGO_DEBUG="maybe"))
    assert result.returncode != 0 and "DJANGO_DEBUG must be 0 or 1" in result.stderr


DRIVERS_AFTER_START = """
import sys
from zepix_admin.startup import skip_unused_drivers
skip_unused_drivers()
import huey.storage
print(huey.storage.Redis is not None, huey.storage.psycopg is not None, 'redis' in sys.modules)
import psycopg, redis  # still importable when something asks
"""


@pytest.mark.parametrize(
    ("urls", "huey_sees"),
    [({}, "False False False"), ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "True False True")],
)
def test_a_start_without_redis_or_postgresql_gives_huey_neither_driver_and_both_stay_importable(
    tmp_path, urls, huey_sees
):
    import subprocess
    import sys

    from tests.helpers import ROOT

    result = subprocess.run(
        [sys.executable, "-c", DRIVERS_AFTER_START],
        env=fresh_env(tmp_path, **urls),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == huey_sees
