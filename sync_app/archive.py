"""Taking a removed plugin out of service: its database is archived compressed, its config
document moved beside it (so the plugin is no longer declared), its central rows stay."""

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.utils import timezone

from config_app.service import global_settings
from plugins_app import plugins, registry
from sync_app.backup import BackupError, compress, consistent_copy, fsync_folder, integrity_problems
from sync_app.models import ArchivedPlugin


def archive_keep_days() -> int:
    return global_settings("backup")["archive_keep_days"]


def archive_plugin(plugin_id: str, *, now: datetime | None = None) -> ArchivedPlugin:
    plugins.check_declared(plugin_id)
    now = now or timezone.now()
    source = plugins.database_path(plugin_id)
    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    settings.ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    target = settings.ARCHIVE_DIR / f"{plugin_id}-{stamp}.sqlite3.zst"
    with tempfile.TemporaryDirectory(dir=settings.ARCHIVE_DIR, prefix=".work-") as work:
        copy = Path(work) / "copy.sqlite3"
        consistent_copy(source, copy)
        problems = integrity_problems(copy)
        if problems:
            raise BackupError(f"{plugin_id}: its database fails the integrity check, not archived: {problems}")
        sha256 = compress(copy, Path(work) / target.name)
        os.replace(Path(work) / target.name, target)
        fsync_folder(settings.ARCHIVE_DIR)
    document = registry.config_path(settings.CONFIG_DIR, plugin_id)
    if document.exists():
        os.replace(document, settings.ARCHIVE_DIR / f"{plugin_id}-{stamp}.json")
    connections[registry.alias_for(plugin_id)].close()
    for path in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
        path.unlink(missing_ok=True)
    return ArchivedPlugin.objects.create(
        plugin_id=plugin_id, archived_at=now, path=str(target), sha256=sha256,
        expires_at=now + timedelta(days=archive_keep_days()),
    )  # fmt: skip


def purge_expired_archives(*, now: datetime | None = None) -> list[ArchivedPlugin]:
    now = now or timezone.now()
    purged = []
    for archive in ArchivedPlugin.objects.filter(expires_at__lte=now, purged_at__isnull=True):
        Path(archive.path).unlink(missing_ok=True)
        Path(archive.path.removesuffix(".sqlite3.zst") + ".json").unlink(missing_ok=True)
        archive.purged_at = now
        archive.save(update_fields=["purged_at"])
        purged.append(archive)
    return purged
