"""Taking a removed plugin out of service, and bringing it back.

Archiving is a config change first: ``config_app.service.retire`` records a tombstone
version and removes the plugin's document (so it is no longer declared, through the
watcher, restarts and ``setup``). Its database goes compressed into the archive folder;
its central rows stay. ``undo_archive`` puts the database back and reinstates the document;
the archive file is kept until it expires.
"""

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.utils import timezone

from config_app import service as config_service
from plugins_app import plugin_apps, plugins, registry
from plugins_app.sqlite import in_use_by
from sync_app.backup import (
    BackupError,
    bring_to_this_version,
    compress,
    consistent_copy,
    decompress,
    integrity_problems,
)
from sync_app.models import ArchivedPlugin
from zepix_admin.core import home
from zepix_admin.core.errors import Conflict
from zepix_admin.core.files import fsync_folder, work_folder


def archive_keep_days() -> int:
    return config_service.global_settings("backup")["archive_keep_days"]


def archive_plugin(
    plugin_id: str, *, actor: str = "command", via: str = "command", now: datetime | None = None
) -> ArchivedPlugin:
    """Archive a declared plugin, even one whose database is damaged (kept as found) or missing."""
    home.check()
    plugins.check_declared(plugin_id)
    now = now or timezone.now()
    source = plugins.database_path(plugin_id)
    _not_in_use(source, plugin_id)
    settings.ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    target = settings.ARCHIVE_DIR / f"{plugin_id}-{now:%Y%m%dT%H%M%SZ}.sqlite3.zst"
    sha256 = ""
    if source.exists():
        sha256 = _pack(source, target)
    try:
        config_service.retire(plugin_id, author=actor, via=via)
    except Exception:
        # Nothing is archived (the plugin stays in service): neither is its packed copy kept,
        # which nothing would ever purge (each retry packed another).
        target.unlink(missing_ok=True)
        raise
    # Recorded before the file goes: an archive killed in between is one `--undo` finds.
    archive = ArchivedPlugin.objects.create(
        plugin_id=plugin_id,
        archived_at=now,
        path=str(target) if sha256 else "",
        sha256=sha256,
        expires_at=now + timedelta(days=archive_keep_days()),
    )
    connections[registry.alias_for(plugin_id)].close()
    for path in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
        path.unlink(missing_ok=True)
    return archive


# A sync or a backup of the plugin (the console's own worker) has its file open for a few
# seconds at most: an archive waits that long before it says the file is in use.
IN_USE_WAIT_SECONDS = 5


def _not_in_use(path: Path, plugin_id: str) -> None:
    """Archiving removes the plugin's file: a bot still running wrote on into the removed file,
    where nothing read it again (each trade it saved after the archive lost), or between its
    copy and its removal."""
    deadline = time.monotonic() + IN_USE_WAIT_SECONDS
    while holder := in_use_by(path):
        if time.monotonic() > deadline:
            raise Conflict(
                f"{plugin_id}'s database is open in another process ({holder}): stop the bot's process "
                "for that plugin first, then archive it. Nothing was archived."
            )
        time.sleep(0.2)


def _pack(source: Path, target: Path) -> str:
    """A consistent, checked copy, compressed; a damaged file is archived as it is, never lost."""
    with work_folder(settings.ARCHIVE_DIR, ".work-") as work:
        copy = Path(work) / "copy.sqlite3"
        try:
            consistent_copy(source, copy)
            damaged = bool(integrity_problems(copy))
        except BackupError:
            damaged = True
        sha256 = compress(source if damaged else copy, Path(work) / target.name)
        os.replace(Path(work) / target.name, target)
        fsync_folder(settings.ARCHIVE_DIR)
    return sha256


def undo_archive(plugin_id: str, *, actor: str = "command", via: str = "command") -> ArchivedPlugin:
    """Bring the newest archive of a plugin back: its database, then its config document."""
    home.check()
    registry.check_plugin_id(plugin_id)
    archive = ArchivedPlugin.objects.filter(
        plugin_id=plugin_id, purged_at__isnull=True, restored_at__isnull=True
    ).first()
    if archive is None or registry.is_declared(settings.CONFIG_DIR, plugin_id):
        raise BackupError(f"{plugin_id} has no archive to bring back (it is declared, or its archive expired).")
    target = registry.database_path(settings.DATA_DIR, plugin_id)
    if target.exists():
        raise BackupError(f"{target.name} exists already; move it away first, nothing was changed.")
    if archive.path:
        with work_folder(target.parent, ".undo-") as work:
            restored = Path(work) / target.name
            if decompress(Path(archive.path), restored) != archive.sha256:
                raise BackupError(f"{Path(archive.path).name} does not match its checksum; nothing was changed.")
            # An archive is kept for weeks: one taken before an upgrade is migrated before it is
            # put back, as a restored backup is (its alias and app first, as declaring it gives).
            plugin_apps.add_plugin_app(plugin_id)
            bring_to_this_version(registry.alias_for(plugin_id), restored, Path(archive.path))
            os.replace(restored, target)
            fsync_folder(target.parent)
    config_service.reinstate(plugin_id, author=actor, via=via)
    archive.restored_at = timezone.now()
    archive.save(update_fields=["restored_at"])
    return archive


def purge_expired_archives(*, now: datetime | None = None) -> list[ArchivedPlugin]:
    home.check()
    now = now or timezone.now()
    purged = []
    for archive in ArchivedPlugin.objects.filter(expires_at__lte=now, purged_at__isnull=True):
        if archive.path:
            Path(archive.path).unlink(missing_ok=True)
        archive.purged_at = now
        archive.save(update_fields=["purged_at"])
        purged.append(archive)
    return purged
