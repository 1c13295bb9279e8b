"""Is everything healthy? One answer for `manage.py health_check` and `/healthz`."""

import sqlite3
from contextlib import closing
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from config_app.service import global_settings
from plugins_app import plugins, registry
from plugins_app.sqlite import connect, database_bytes
from sync_app.backup import database_aliases
from sync_app.models import Backup, SyncRun
from sync_app.scheduler import intervals
from sync_app.sync import FAILING, enabled_plugins
from sync_app.sync import health as sync_health
from zepix_admin.core import home, worker
from zepix_admin.core.databases import (
    FULL_BELOW_BYTES,
    central_restore_hint,
    damaged,
    database_file,
    disk_state,
    on_postgresql,
)

INTEGRITY_CACHE_SECONDS = 600
# How long the check waits for a connection to a PostgreSQL central database (a request waits
# 3 s): a monitor's probe gives up after a second or two, and must hear the 503 that says the
# database does not answer, not time out.
POSTGRES_CHECK_WAIT_SECONDS = 1.0


def database_check(alias: str) -> dict:
    if on_postgresql(alias):
        return _postgres_check(alias)
    path = database_file(alias)
    plugin_id = registry.plugin_id_for_alias(alias)
    entry = {"alias": alias, "path": str(path), "ok": False, **({"plugin_id": plugin_id} if plugin_id else {})}
    problem = plugins.database_problem(plugin_id) if plugin_id else None
    if plugin_id and problem:
        return {**entry, "problem": f"plugin {plugin_id}: {problem}", "repair": plugins.repair_hint(plugin_id, problem)}
    if not path.exists():
        if alias == "default":  # nothing else can be read: its latest backup brings it back
            return {**entry, "problem": "file missing", "unreadable": True, "repair": _central_repair()}
        return {**entry, "problem": "file missing"}
    entry["size_bytes"] = database_bytes(path)
    try:
        with closing(connect(path, read_only=True, timeout=5)) as connection:
            entry["journal_mode"] = connection.execute("PRAGMA journal_mode").fetchone()[0]
            key = f"zepix:quick_check:{path}:{path.stat().st_mtime_ns // 10**9 // INTEGRITY_CACHE_SECONDS}"
            integrity = cache.get(key)
            if integrity is None:
                integrity = connection.execute("PRAGMA quick_check").fetchone()[0]
                cache.set(key, integrity, INTEGRITY_CACHE_SECONDS)
    except sqlite3.DatabaseError as error:
        entry.update(problem=str(error), unreadable=True)
        if alias == "default" and damaged(error):
            entry["repair"] = _central_repair()
        return entry
    entry["integrity"] = integrity
    problems = []
    if integrity != "ok":
        problems.append(f"integrity: {integrity}")
    if entry["journal_mode"] != "wal":
        problems.append(f"journal_mode is {entry['journal_mode']}, not wal")
    return _migrations_check(alias, entry, problems)


def _central_repair() -> str:
    return f"Restore its latest backup: {central_restore_hint()}."


def _postgres_check(alias: str) -> dict:
    """The central database on PostgreSQL: reachable, its size, its migrations (never its password)."""
    database = settings.DATABASES[alias]
    entry = {
        "alias": alias,
        "engine": "postgresql",
        "database": f"{database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}/{database['NAME']}",
        "ok": False,
    }
    size_sql = "SELECT pg_database_size(current_database())"
    try:
        pool = getattr(connections[alias], "pool", None)  # the PostgreSQL backend's (Django 5.1+)
        if pool is None:  # no pool (the test runner's settings): a connection of its own
            with connections[alias].cursor() as cursor:
                cursor.execute(size_sql)
                entry["size_bytes"] = cursor.fetchone()[0]
        else:
            pool.open()  # as Django's first connection of the process does (a no-op once open)
            with pool.connection(timeout=POSTGRES_CHECK_WAIT_SECONDS) as connection:
                entry["size_bytes"] = connection.execute(size_sql).fetchone()[0]
    except Exception as error:  # noqa: BLE001 - reported, never raised, by a health check
        return {
            **entry,
            "problem": f"PostgreSQL unreachable: {str(error).strip().splitlines()[0]}",
            "unreadable": True,
        }
    refused = home.refusal()  # folders that are not the console's
    return _migrations_check(alias, entry, [refused] if refused else [])


def _migrations_check(alias: str, entry: dict, problems: list[str]) -> dict:
    try:
        unapplied = len(plugins.unapplied_migrations(alias))
    except Exception as error:  # noqa: BLE001 - reported, never raised, by a health check
        unapplied, problems = -1, [*problems, f"migrations: {error}"]
    entry["unapplied_migrations"] = unapplied
    if unapplied > 0:
        problems.append(f"{unapplied} unapplied migrations")
    return {**entry, "ok": not problems, **({"problem": "; ".join(problems)} if problems else {})}


def age_check(name: str, last, every: timedelta, installed=None) -> dict:
    """A job is late when it last succeeded more than twice its interval ago; one that never did,
    when the console was installed (``installed``) more than that ago. A new console's monitor
    and load balancer saw /healthz answer 503 until its first backup was made."""
    now = timezone.now()
    if last is None:
        entry = {"name": name, "every_minutes": every.total_seconds() / 60}
        if installed is not None and now - installed <= 2 * every:
            return {**entry, "ok": True, "note": "not run yet: a new install"}
        return {**entry, "ok": False, "problem": "never ran"}
    age = now - last
    ok = age <= 2 * every
    return {
        "name": name,
        "ok": ok,
        "age_seconds": round(age.total_seconds()),
        "every_minutes": every.total_seconds() / 60,
        **({} if ok else {"problem": f"last success {age} ago, expected every {every}"}),
    }


def installed_at():
    """When the central database was made: its first migration's."""
    recorder = MigrationRecorder(connections["default"])
    return recorder.migration_qs.order_by("applied").values_list("applied", flat=True).first()


def sync_check() -> dict:
    """Every enabled plugin's sync: FAILING ones make the console unhealthy."""
    report, enabled = sync_health(), set(enabled_plugins())
    failing = [
        plugin_id
        for plugin_id, entry in report["plugins"].items()
        if entry["health"] == FAILING and plugin_id in enabled
    ]
    entry = {
        "ok": not failing,
        "overall": report["overall"],
        "failing_plugins": failing,
        "silent_hosts": {
            plugin_id: entry["host_silent"] for plugin_id, entry in report["plugins"].items() if entry["host_silent"]
        },
    }
    if failing:
        entry["problem"] = f"sync FAILING for {', '.join(failing)}"
    return entry


def disk_check(min_free: int) -> dict:
    disk = disk_state()
    free = disk.free_bytes
    entry: dict = {"free_bytes": free, "ok": free >= min_free}
    if disk.read_only:
        entry.update(ok=False, problem=f"the disk is read-only under {' and '.join(map(str, disk.read_only))}")
    elif free < FULL_BELOW_BYTES:
        entry["problem"] = f"the disk is full ({free:,} bytes free) under {settings.DATA_DIR} or {settings.CONFIG_DIR}"
    elif not entry["ok"]:
        entry["problem"] = f"less than {min_free / 1024**3:g} GiB free under {settings.DATA_DIR}"
    return entry


def collect() -> dict:
    databases = [database_check(alias) for alias in database_aliases()]
    if any(entry["alias"] == "default" and entry.get("unreadable") for entry in databases):
        # The central database cannot be read (PostgreSQL down, a full disk): nothing else can be.
        return {
            "status": "attention",
            "checked_at": timezone.now().isoformat(),
            "databases": databases,
            "jobs": [],
            "sync": {"ok": False, "failing_plugins": [], "problem": "the central database cannot be read"},
            "huey_consumer": {"ok": False, "problem": "unknown while the central database cannot be read"},
            "disk": disk_check(FULL_BELOW_BYTES),
        }
    schedule = intervals()
    last_sync = (
        SyncRun.objects.filter(status=SyncRun.Status.OK)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    last_backup = (
        Backup.objects.filter(verified=True).order_by("-created_at").values_list("created_at", flat=True).first()
    )
    installed = installed_at() if last_sync is None or last_backup is None else None
    jobs = [
        age_check("sync", last_sync, schedule["sync"], installed),
        age_check("backup", last_backup, min(schedule["trading_backup"], schedule["central_backup"]), installed),
    ]
    current = worker.state()
    consumer = {"ok": current.up, "last_beat": current.last_beat.isoformat() if current.last_beat else None}
    if not current.up:
        consumer["problem"] = current.text
    if current.queue_problem:
        consumer["queue"] = current.queue_problem
    disk_entry = disk_check(global_settings("alerts")["min_free_disk_gb"] * 1024**3)
    sync_entry = sync_check()
    healthy = all(entry["ok"] for entry in [*databases, *jobs, consumer, disk_entry, sync_entry])
    return {
        "status": "ok" if healthy else "attention",
        "checked_at": timezone.now().isoformat(),
        "databases": databases,
        "jobs": jobs,
        "sync": sync_entry,
        "huey_consumer": consumer,
        "disk": disk_entry,
    }


def failing_components(report: dict) -> list[str]:
    """Names only, no paths or sizes: what anonymous callers of /healthz are told."""
    names = [f"database {entry['alias']}" for entry in report["databases"] if not entry["ok"]]
    names += [f"job {entry['name']}" for entry in report["jobs"] if not entry["ok"]]
    names += [f"sync {plugin_id}" for plugin_id in report["sync"]["failing_plugins"]]
    names += [name for name, key in (("worker", "huey_consumer"), ("disk", "disk")) if not report[key]["ok"]]
    return names
