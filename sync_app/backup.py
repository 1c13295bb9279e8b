"""Backups of every database: one consistent snapshot, compressed, checksummed, checked, recorded.

A live database is read as one read transaction sees it, straight from its file into zstd
(``live_snapshot``): 560 MB at 206 MB/s under the bench's writer, zstd alone on the same file
263 MB/s (0.72-0.84x of it in five runs). The copy SQLite's online backup made first, then
compressed, read it twice and wrote it once more: 43 MB/s with its integrity check beside.
What is written is then restored into a scratch file and checked (integrity, tables, row
counts) before it is recorded: the database is no longer read meanwhile. A central database
on PostgreSQL is dumped with pg_dump instead (sync_app.postgres_backup), under the same
records, retention, drill and restore.
"""

import hashlib
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, cast

import zstandard
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core import serializers
from django.core.management.color import no_style
from django.db import DatabaseError, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.models import Max
from django.utils import timezone

from config_app import service as config_service
from plugins_app import plugins, registry
from plugins_app.sqlite import connect, stamp_identity
from sync_app import postgres_backup
from sync_app.models import ArchivedPlugin, Backup, BackupRun, JobState, ShippingState, SyncRun
from zepix_admin.core import home
from zepix_admin.core.alerts import raise_alert, resolve_alert
from zepix_admin.core.databases import database_file, on_postgresql, outage
from zepix_admin.core.errors import NotFound, ZepixError
from zepix_admin.core.files import fsync_folder, remove_gently, work_folder
from zepix_admin.core.models import Alert, ApiToken, AuditEntry, ConsoleHome

logger = logging.getLogger("zepix.backup")

ZSTD_LEVEL = 3
CHUNK_BYTES = 1 << 22
SUFFIX = ".sqlite3.zst"
STAMP = "%Y%m%dT%H%M%S%fZ"  # in every backup's name, after its database alias (BACKUP_NAME reads it back)
Block = bytes | bytearray | memoryview  # of a file being compressed


class BackupError(ZepixError):
    pass


class UnknownDatabase(NotFound, LookupError):
    pass


def database_aliases() -> list[str]:
    """The central database and every declared (not archived) plugin's."""
    return ["default", *(registry.alias_for(plugin_id) for plugin_id in plugins.plugin_ids())]


def declared_database_file(alias: str) -> Path:
    if alias not in database_aliases():
        raise UnknownDatabase(f"Unknown database {alias!r}; known: {', '.join(database_aliases())}.")
    return database_file(alias)


def required_tables(alias: str) -> set[str]:
    """Tables a file must have to be restored as this database: never a plugin's file as the
    central database, an empty file, or another program's database."""
    if registry.plugin_id_for_alias(alias):
        return plugins.expected_tables()
    return {"django_migrations", "aggregated_trades", "config_app_configversion"}


# Building blocks -----------------------------------------------------------


def consistent_copy(source: Path, target: Path, *, new_identity: bool = False) -> None:
    """One-pass online backup of a live database into a standalone file (rollback journal).

    ``new_identity`` stamps the copy as a different database from its source, so that when it
    is put back (by ``restore_backup`` or by hand) the sync notices the replacement."""
    try:
        with closing(connect(source, read_only=True, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{source.name} cannot be read: {error}") from None
    if new_identity:
        stamp_identity(target)


def integrity_problems(path: Path) -> str:
    """'' when ``PRAGMA integrity_check`` finds the file sound, else what it found."""
    try:
        with closing(connect(path, read_only=True)) as connection:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        return str(error)
    return "" if rows == ["ok"] else "; ".join(rows[:5])


def row_counts(path: Path) -> dict[str, int]:
    with closing(connect(path, read_only=True)) as connection:
        return _row_counts(connection)


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {table: connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}


def compressed(source: Path | Iterable[Block], *, level: int = ZSTD_LEVEL, on_bytes=None) -> Iterator[bytes]:
    """A file (or blocks of one) zstd-compressed block by block, as it is read; ``on_bytes(n)``
    hears of each block of the source read."""
    chunker = zstandard.ZstdCompressor(level=level, threads=-1).chunker(chunk_size=CHUNK_BYTES)
    for block in _file_blocks(source) if isinstance(source, Path) else source:
        yield from chunker.compress(block)
        if on_bytes:
            on_bytes(len(block))
    yield from chunker.finish()


def _file_blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        yield from iter(lambda: file.read(CHUNK_BYTES), b"")


def compress(source: Path | Iterable[Block], target: Path, on_bytes=None) -> str:
    """zstd-compress a file (or blocks of one), fsync it, and return the SHA-256 of the
    compressed bytes."""
    digest = hashlib.sha256()
    with open(target, "wb") as file, _SyncedFile(file) as out:
        for chunk in compressed(source, on_bytes=on_bytes):
            digest.update(chunk)
            out.write(chunk)
        out.sync()
    return digest.hexdigest()


class _SyncedFile:
    """A file being written whose data goes to the disk as it comes (a thread of its own syncs
    every SYNC_EVERY_BYTES), not all by its final fsync. Never much unwritten data either (a
    writer ahead by UNSYNCED_AT_MOST_BYTES waits): the bot's next fsync (a checkpoint) would
    wait for it too, its file system writing data in order. A backup's 560 MB check copy,
    written at once and synced at the end, held the bot's inserts up to 46-170 ms; its final
    fsync took 0.4-0.5 s of the backup's read of the database. Used as ``with _SyncedFile(file)
    as out: ... out.write(data) ... out.sync()``."""

    def __init__(self, file):
        self.file, self.written, self.synced, self.done = file, 0, 0, False
        self.error: OSError | None = None
        self.changed = threading.Condition()
        self.syncer = threading.Thread(target=self._sync_as_it_comes, name="backup-sync", daemon=True)

    def __enter__(self):
        self.syncer.start()
        return self

    def __exit__(self, *exc_info):
        self._stop()

    def _stop(self) -> None:
        with self.changed:
            self.done = True
            self.changed.notify_all()
        self.syncer.join()

    def write(self, data) -> int:
        written = self.file.write(data)
        with self.changed:
            self.written += written
            self.changed.notify_all()
            while self.written - self.synced > UNSYNCED_AT_MOST_BYTES and not self.error:
                self.changed.wait()
            if self.error:
                raise self.error
        return written

    def flush(self) -> None:
        self.file.flush()

    def _sync_as_it_comes(self) -> None:
        while True:
            with self.changed:
                while self.written - self.synced < SYNC_EVERY_BYTES and not self.done:
                    self.changed.wait()
                if self.done:
                    return
                written = self.written
            try:
                self.file.flush()
                os.fdatasync(self.file.fileno())
            except OSError as error:  # a full disk: the writer hears of it at its next write
                with self.changed:
                    self.error = error
                    self.changed.notify_all()
                return
            with self.changed:
                self.synced = written
                self.changed.notify_all()

    def sync(self) -> None:
        """The rest, and the file's size: once written whole."""
        self._stop()
        if self.error:
            raise self.error
        self.file.flush()
        os.fsync(self.file.fileno())


SYNC_EVERY_BYTES = 8 << 20
UNSYNCED_AT_MOST_BYTES = 32 << 20


class SnapshotUnavailable(Exception):
    """A live database cannot be read from its file as one snapshot just now: the backup copies
    it with SQLite's online backup instead."""


SNAPSHOT_LOCK_SECONDS = 2  # the longest a backup waits for the bot's write transaction to end


@dataclass(frozen=True)
class LiveSnapshot:
    """A live database as one read transaction sees it: the first ``page_count`` pages of its
    file, which no checkpoint changes while the transaction is open."""

    path: Path
    page_size: int
    page_count: int
    counts: dict[str, int]
    identity: tuple[int, bytes, bytes] | None  # (page, its identity row's bytes, a new identity's)

    @property
    def size_bytes(self) -> int:
        return self.page_size * self.page_count

    def blocks(self) -> Iterator[Block]:
        """The pages, as a standalone file: in rollback-journal mode (the header's two bytes at
        18), with the new identity in place of the old (same length: the row's cell keeps its
        shape, and SQLite keeps no checksum of a page). Read into one buffer, used again for
        each block: the compressor has taken a block in before it asks for the next."""
        buffer = bytearray(CHUNK_BYTES)
        with open(self.path, "rb", buffering=0) as file:
            offset = 0
            while offset < self.size_bytes:
                block = memoryview(buffer)[: min(CHUNK_BYTES, self.size_bytes - offset)]
                read = file.readinto(block)
                if read != len(block):
                    raise BackupError(f"{self.path.name} ended before its last page.")
                if offset == 0:
                    block[18:20] = b"\x01\x01"
                if self.identity:
                    page, old, new = self.identity
                    start = (page - 1) * self.page_size - offset
                    if 0 <= start < len(block):  # pages never straddle blocks: both are powers of two
                        end = start + self.page_size
                        block[start:end] = bytes(block[start:end]).replace(old, new)
                yield block
                offset += len(block)


@contextmanager
def live_snapshot(source: Path, *, new_identity: bool = False) -> Iterator[LiveSnapshot]:
    """One read transaction on a live database whose pages are all in its file.

    A checkpoint copies the write-ahead log into the file; then, for a moment, the write lock
    is held (the bot's next commit waits: 0.1-0.7 ms measured) while a second checkpoint copies
    what came since and the read transaction begins. From then on no checkpoint writes into the
    file (it waits for a reader of the file alone), so the file's pages are that transaction's
    view while the bot goes on writing to the log. ``new_identity``: the blocks carry a new
    identity (see ``consistent_copy``). Raises SnapshotUnavailable when the log cannot be
    copied whole (a reader of an older state holds it) or the write lock is held too long."""
    opened: list[sqlite3.Connection] = []
    try:
        try:
            locker, checkpointer, reader = (connect(source, timeout=SNAPSHOT_LOCK_SECONDS) for _ in range(3))
            opened += [locker, checkpointer, reader]
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the log's bulk, holding no one up
            try:
                locker.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise SnapshotUnavailable(f"its write lock stayed held ({error})") from None
            try:
                busy, logged, copied = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                reader.execute("BEGIN")
                reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the read transaction starts here
            finally:
                locker.execute("ROLLBACK")
            if busy or copied != logged:
                raise SnapshotUnavailable("a reader of an older state holds part of its log")
            page_size = reader.execute("PRAGMA page_size").fetchone()[0]
            page_count = reader.execute("PRAGMA page_count").fetchone()[0]
            counts = _row_counts(reader)
            identity = _new_identity(reader, source, page_size) if new_identity else None
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{source.name} cannot be read: {error}") from None
        if source.stat().st_size < page_size * page_count:
            raise SnapshotUnavailable("its file is shorter than its pages")
        yield LiveSnapshot(source, page_size, page_count, counts, identity)
        reader.close()
        # What the bot wrote meanwhile is copied into the file here, not by its next commit's
        # automatic checkpoint, which then held it up 16-26 ms (560 MB, 3 s of inserts).
        with suppress(sqlite3.DatabaseError):
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        for connection in opened:
            connection.close()


def _new_identity(reader: sqlite3.Connection, source: Path, page_size: int) -> tuple[int, bytes, bytes]:
    """Where the identity row is (its table's one page), its bytes and a new identity's."""
    try:
        page, incarnation, stamped_at = reader.execute(
            "SELECT m.rootpage, i.incarnation, i.stamped_at FROM sqlite_master m, zepix_identity i "
            "WHERE m.name = 'zepix_identity'"
        ).fetchone() or (0, "", "")
    except sqlite3.OperationalError:  # no identity table
        raise SnapshotUnavailable("it has no identity to change") from None
    old = f"{incarnation}{stamped_at}".encode()
    new = f"{secrets.token_hex(16)}{datetime.now(UTC):%Y-%m-%d %H:%M:%S}".encode()
    with open(source, "rb") as file:
        file.seek((page - 1) * page_size)
        found = page > 0 and len(old) == len(new) and old in file.read(page_size)
    if not found:
        raise SnapshotUnavailable("its identity is not where a new one can be written in its place")
    return page, old, new


def decompress(source: Path, target: Path) -> str:
    """Decompress a backup; returns the SHA-256 of the compressed bytes it read."""
    digest = hashlib.sha256()
    decompressor = zstandard.ZstdDecompressor()
    with open(target, "wb") as file, _SyncedFile(file) as out:
        writer = decompressor.stream_writer(cast(IO[bytes], out), closefd=False)  # it needs write and flush
        for block in _file_blocks(source):
            digest.update(block)
            writer.write(block)
        writer.flush()
        out.sync()
    return digest.hexdigest()


# Backing up ----------------------------------------------------------------


def backup_database(alias: str, *, now: datetime | None = None, on_bytes=None) -> Backup:
    """Back one database up; any failure raises BackupError and an alert, a success resolves it.
    ``on_bytes(n)`` hears of the bytes compressed."""
    home.check()
    try:
        backup = _backup_database(alias, now=now, on_bytes=on_bytes)
    except BackupError as error:
        _alert_failed_backup(alias, error)
        raise
    except (OSError, sqlite3.Error) as error:
        away = outage(error)  # a full disk: said as a failed backup, and the others are still tried
        if away is None:
            raise
        failure = BackupError(f"{away.what}: no backup was made")
        _alert_failed_backup(alias, failure)
        raise failure from error
    resolve_alert("backup", alias)
    return backup


def _alert_failed_backup(alias: str, error: BackupError) -> None:
    try:
        raise_alert("backup", alias, f"Backup of {alias} failed: {error}", level="CRITICAL")
    except DatabaseError as refused:  # the central database on the same full disk: the log and the run have it
        logger.error("The alert about the backup of %s could not be raised: %s", alias, refused)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _backup_postgresql(now: datetime) -> Backup:
    """pg_dump of the central database, restored into a scratch database and counted before it
    is kept: a dump that does not restore is never recorded as a backup."""
    final = settings.BACKUP_DIR / f"default-{now:{STAMP}}{postgres_backup.SUFFIX}"
    with work_folder(settings.BACKUP_DIR, ".work-") as work:
        dumped = Path(work) / final.name
        try:
            counts = postgres_backup.dump(dumped)
            restored = postgres_backup.restored_counts(dumped)
        except postgres_backup.DumpFailed as error:
            raise BackupError(f"default: {error}") from None
        if restored != counts:
            raise BackupError("default: the dump restored with other row counts than the database had.")
        sha256 = _file_sha256(dumped)
        with open(dumped, "rb") as file:
            os.fsync(file.fileno())
        os.replace(dumped, final)
        fsync_folder(settings.BACKUP_DIR)
    return _recorded(
        final,
        database="default",
        created_at=now,
        database_bytes=final.stat().st_size,
        sha256=sha256,
        row_counts=counts,
        verified=True,
        verified_at=now,
    )


def _recorded(final: Path, **fields) -> Backup:
    """A backup file is kept once it is recorded: without its record it would never be listed,
    verified or let go by retention (the central database away, PostgreSQL down: one such file
    a plugin each hour of the outage, for good)."""
    try:
        return Backup.objects.create(path=str(final), size_bytes=final.stat().st_size, **fields)
    except DatabaseError:
        final.unlink(missing_ok=True)
        raise


def _backup_database(alias: str, *, now: datetime | None = None, on_bytes=None) -> Backup:
    if on_postgresql(alias):
        settings.BACKUP_DIR.mkdir(parents=True, exist_ok=True)
        return _backup_postgresql(now or timezone.now())
    source = declared_database_file(alias)
    if not source.exists():
        raise BackupError(f"{alias}: its database file is missing ({source.name}).")
    now = now or timezone.now()
    settings.BACKUP_DIR.mkdir(parents=True, exist_ok=True)
    final = settings.BACKUP_DIR / f"{alias}-{now:{STAMP}}{SUFFIX}"
    with work_folder(settings.BACKUP_DIR, ".work-") as work:
        packed = work / final.name
        started = time.perf_counter()
        try:
            with live_snapshot(source, new_identity=alias != "default") as snapshot:
                sha256 = compress(snapshot.blocks(), packed, on_bytes)
                counts, database_bytes = snapshot.counts, snapshot.size_bytes
        except SnapshotUnavailable as why:
            logger.info("%s: %s; it is copied first", alias, why)
            copy = work / "copy.sqlite3"
            consistent_copy(source, copy, new_identity=alias != "default")
            sha256 = compress(copy, packed, on_bytes)
            counts, database_bytes = row_counts(copy), copy.stat().st_size
            remove_gently(copy)  # before the check makes its own copy
        taken = time.perf_counter()
        # Its restore drill before it is kept: a backup that does not restore whole is never recorded.
        check_backup_file(packed, alias=alias, sha256=sha256, expected_counts=counts, work_dir=work)
        os.replace(packed, final)
        fsync_folder(settings.BACKUP_DIR)
        checked = time.perf_counter()
    backup = _recorded(
        final,
        database=alias,
        created_at=now,
        database_bytes=database_bytes,
        sha256=sha256,
        row_counts=counts,
        verified=True,
        verified_at=now,
    )
    logger.info(
        "Backed up %s to %s (%d bytes): read and compressed in %.2f s, restored and checked in %.2f s",
        alias,
        final.name,
        backup.size_bytes,
        taken - started,
        checked - taken,
    )
    return backup


# Verifying and restoring -----------------------------------------------------


def check_backup_file(
    path: Path, *, alias: str, sha256: str = "", expected_counts: dict | None = None, work_dir: Path
) -> Path:
    """Decompress into work_dir and check checksum, integrity, that it is a database of the
    alias's kind, and row counts; returns the decompressed file, or raises BackupError
    saying what is wrong."""
    if not path.exists():
        raise BackupError(f"Backup file {path.name} is missing.")
    if not path.is_file():
        raise BackupError(f"{path.name} is not a backup file.")
    if on_postgresql(alias):
        return _check_dump(path, sha256=sha256, expected_counts=expected_counts)
    restored = work_dir / "restored.sqlite3"
    try:
        actual = decompress(path, restored)
    except zstandard.ZstdError as error:
        raise BackupError(f"{path.name} cannot be decompressed: {error}") from None
    _check_checksum(path, actual, sha256)
    problems = integrity_problems(restored)
    if problems:
        raise BackupError(f"{path.name}: integrity check failed: {problems}")
    counts = row_counts(restored)  # a COUNT(*) of every table: seconds on a large database, so once
    _check_tables(path, alias, counts, expected_counts)
    return restored


def _check_checksum(path: Path, actual: str, recorded: str) -> None:
    if recorded and actual != recorded:
        raise BackupError(f"{path.name}: checksum {actual[:12]}… does not match the recorded {recorded[:12]}….")


def _check_tables(path: Path, alias: str, counts: dict, expected_counts: dict | None) -> None:
    """A restored backup has the tables of its database's kind, and the row counts recorded."""
    missing = sorted(required_tables(alias) - set(counts))
    if missing:
        raise BackupError(
            f"{path.name} is not a backup of {alias}: it has no table {', '.join(missing)}{_adopt(alias)}."
        )
    if expected_counts is not None and counts != expected_counts:
        different = sorted(t for t in counts.keys() | expected_counts.keys() if counts.get(t) != expected_counts.get(t))
        raise BackupError(f"{path.name}: row counts differ from those recorded in tables {', '.join(different)}.")


def _adopt(alias: str) -> str:
    """How a file refused as a plugin's backup may be what the operator wants: the bot's own."""
    if not registry.plugin_id_for_alias(alias):
        return ""
    return " (a bot's own database is brought in with `startplugin <id> --adopt <file>`)"


def _check_dump(path: Path, *, sha256: str, expected_counts: dict | None) -> Path:
    """The same checks for a pg_dump of the central database, restored into a scratch database."""
    if not path.name.endswith(postgres_backup.SUFFIX):
        raise BackupError(f"{path.name} is not a backup of default: the central database is on PostgreSQL.")
    _check_checksum(path, _file_sha256(path), sha256)
    try:
        counts = postgres_backup.restored_counts(path)
    except postgres_backup.DumpFailed as error:
        raise BackupError(f"{path.name} does not restore: {error}") from None
    _check_tables(path, "default", counts, expected_counts)
    return path


def verify_backup(backup: Backup) -> str:
    """The restore drill for one backup; '' when sound, else the problem (recorded and alerted)."""
    with work_folder(settings.BACKUP_DIR, ".verify-") as work:
        try:
            check_backup_file(
                Path(backup.path),
                alias=backup.database,
                sha256=backup.sha256,
                expected_counts=backup.recorded_counts,
                work_dir=Path(work),
            )
            problem = ""
        except BackupError as error:
            problem = str(error)
    backup.verified, backup.verified_at, backup.verify_error = not problem, timezone.now(), problem
    backup.save(update_fields=["verified", "verified_at", "verify_error"])
    if problem:
        raise_alert(
            "restore_drill",
            backup.database,
            f"Backup {backup.pk} failed its restore drill: {problem}",
            level="CRITICAL",
        )
    return problem


def verify_backups(alias: str | None = None, on_bytes=None) -> dict[Backup, str]:
    """The restore drill of every backup (or one database's); {backup: problem or ''}. The drill
    alert of a database resolves itself when all of its backups pass. ``on_bytes(n)`` hears of
    the compressed bytes of each backup checked."""
    home.check()
    backups = Backup.objects.all() if alias is None else Backup.objects.filter(database=alias)
    results = {}
    for backup in backups:
        results[backup] = verify_backup(backup)
        if on_bytes:
            on_bytes(backup.size_bytes)
    for database in {backup.database for backup in results}:
        if not any(problem for backup, problem in results.items() if backup.database == database):
            resolve_alert("restore_drill", database)
    return results


def _checkpoint(path: Path) -> None:
    """Fold the WAL into the file before it is kept aside; a damaged file is kept as it is."""
    try:
        with closing(sqlite3.connect(path)) as current:
            current.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as error:
        logger.warning("Could not checkpoint %s before keeping it aside: %s", path.name, error)


def find_backup(reference: str, alias: str | None) -> tuple[Path, str, Backup | None]:
    """A backup by id or by path; returns (file, database alias, record or None)."""
    path = None if reference.isdigit() else Path(reference).resolve()
    try:
        backup = Backup.objects.filter(**({"pk": int(reference)} if path is None else {"path": str(path)})).first()
    except DatabaseError as error:  # a damaged central database is what is being restored
        if path is None:
            raise BackupError(
                f"the central database cannot be read ({error}), so backup {reference} cannot be looked up: "
                f"give the backup's file instead (they are in {settings.BACKUP_DIR})."
            ) from error
        backup = None
    if backup is None:
        if path is None:
            raise BackupError(f"No backup with id {reference}.")
        inferred = path.name.split("-", 1)[0] if path.name.endswith((SUFFIX, postgres_backup.SUFFIX)) else None
        alias = alias or inferred
        if not alias:
            raise BackupError("Say which database this file restores with --db ALIAS.")
        return path, alias, None
    if alias and alias != backup.database:
        raise BackupError(f"Backup {backup.pk} is of {backup.database}, not {alias}.")
    return Path(backup.path), backup.database, backup


def _taken_at(path: Path, backup: Backup | None) -> datetime | None:
    """When a backup was taken: its record's time, or the time in its file's name."""
    if backup is not None:
        return backup.created_at
    name = BACKUP_NAME.match(path.name)
    return _stamped_at(name) if name else None


def restore_backup(reference: str, alias: str | None = None) -> tuple[str, Path]:
    """Check the backup, keep the current file aside, swap the restored file in atomically (a
    plugin's: copied into its live file, which a bot still running goes on using).

    Returns (alias, where the previous file was kept). The bot's process for a restored
    plugin is best stopped while this runs: what it holds in memory (its open trades) may be
    rows the restore took away."""
    home.check()
    path, alias, backup = find_backup(reference, alias)
    aside_dir = settings.BACKUP_DIR / "before-restore"
    aside_dir.mkdir(parents=True, exist_ok=True)
    if on_postgresql(alias):
        return alias, _restore_postgresql(path, backup, aside_dir)
    target = declared_database_file(alias)
    aside = aside_dir / f"{alias}-{timezone.now():{STAMP}}.sqlite3"
    with work_folder(target.parent, ".restore-") as work:
        restored = check_backup_file(
            path,
            alias=alias,
            sha256=backup.sha256 if backup else "",
            expected_counts=backup.recorded_counts if backup else None,
            work_dir=Path(work),
        )

        def swap_in() -> None:
            connections[alias].close()
            if alias != "default" and _copied_in_place(restored, target, aside):
                return
            if target.exists():
                _checkpoint(target)
                os.link(target, aside)
            _put_in_place(restored, target)

        def swap_back() -> None:
            connections[alias].close()
            _checkpoint(target)
            if aside.exists():
                _put_in_place(aside, target)
            else:
                target.unlink()

        if alias != "default":
            stamp_identity(restored)  # the sync then reconciles the plugin's central rows
        bring_to_this_version(alias, restored, path)  # a backup from before an upgrade: before the swap
        _checkpoint(restored)
        if alias == "default":
            _restore_central(swap_in, swap_back, _taken_at(path, backup), aside)
        else:
            swap_in()
    logger.info("Restored %s from %s; the previous file is kept at %s", alias, path, aside)
    return alias, aside


def _copied_in_place(restored: Path, target: Path, aside: Path) -> bool:
    """A plugin's database restored into its live file through SQLite, the file's content kept
    aside first the same way; False, nothing done, when the file cannot be read as a database
    (missing, damaged: it is replaced instead). A file moved over the old one left a bot still
    running on the old one, where each trade it wrote after the restore went, and nothing read
    it again; copied in, the bot's connection reads and writes the restored database. (A trade
    the bot commits in the moment between the two copies is in neither the restored database,
    as any written since the backup, nor the copy kept aside.)"""
    if not target.exists():
        return False
    try:
        # SQLite copies into a database in WAL mode only with the same page size (a file
        # VACUUMed to another since its backup): that one is replaced instead.
        if _page_size(restored) != _page_size(target):
            raise BackupError(f"{target.name} has another page size than its backup")
        consistent_copy(target, aside)
    except BackupError as error:
        logger.warning("%s is replaced rather than restored in place: %s", target.name, error)
        aside.unlink(missing_ok=True)
        return False
    try:
        with closing(connect(restored, read_only=True)) as source, closing(connect(target, timeout=30)) as live:
            source.backup(live, pages=-1)
            live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as error:
        aside.unlink(missing_ok=True)
        raise BackupError(f"{target.name} could not be written: {error}") from None
    return True


def _page_size(path: Path) -> int:
    try:
        with closing(connect(path, read_only=True)) as connection:
            return connection.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path.name} cannot be read: {error}") from None


def _put_in_place(source: Path, target: Path) -> None:
    """Move a database file over another one, durably; the target's WAL (checkpointed, so empty)
    and shared memory go with it, so that SQLite never reads the old file's log into the new one."""
    os.replace(source, target)
    fsync_folder(target.parent)
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        leftover.unlink(missing_ok=True)


@contextmanager
def _connected_to(alias: str, path: Path):
    """This thread's connection of a database alias on another SQLite file for a while (the
    migrations of a restored file before it is swapped in: ``migrate`` and its data migrations
    use the alias). Only this thread's: a served console's other requests keep the live file."""
    live = connections[alias]
    scratch = type(live)({**live.settings_dict, "NAME": str(path)}, alias)
    connections[alias] = scratch
    try:
        yield
    finally:
        scratch.close()
        connections[alias] = live


def bring_to_this_version(alias: str, file: Path, path: Path) -> None:
    """A database file of an alias, not in place yet (a restored backup, a plugin's archive
    brought back), gets the migrations of this version it lacks: one taken before an upgrade.
    One taken by a newer version (migrations this one does not know) is refused. ``path``
    names it in what is said."""
    with _connected_to(alias, file):
        _bring_to_this_version(alias, path)


def _bring_to_this_version(alias: str, path: Path) -> None:
    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    apps = {alias} if registry.plugin_id_for_alias(alias) else loader.migrated_apps
    known = set(loader.disk_migrations) | {name for squash in loader.replacements.values() for name in squash.replaces}
    newer = sorted(
        f"{app}.{name}" for app, name in loader.applied_migrations if app in apps and (app, name) not in known
    )
    if not any(app in apps for app, _ in loader.applied_migrations):
        raise BackupError(f"{path.name} is not a backup of {alias}: it records none of its migrations{_adopt(alias)}.")
    if newer:
        raise BackupError(
            f"{path.name} was taken by a newer version of Zepix Admin (it has the migrations {', '.join(newer)}, "
            "which this one does not): restore it with that version."
        )
    try:
        migrated = plugins.migrate_database(alias)
    except Exception as error:
        raise BackupError(f"{path.name} could not be brought to this version's schema: {error}") from error
    if migrated:
        logger.info("The restored %s was taken before an upgrade: its migrations were applied", alias)


def _restore_central(
    swap_in, swap_back, taken_at: datetime | None, aside: Path, *, migrate: Path | None = None
) -> None:
    """Swap the central database (``swap_in``) keeping what must outlive its restore: read just
    before, put back just after, in one transaction. The config history goes on from where the
    running plugins are (config saves wait in between: they take the same lock, so none lands
    in the database being replaced); the rows of CARRIED_OVER_A_RESTORE are put back as they
    were; the audit entries made since the backup was taken (``taken_at``; every one when it is
    not known) are added to the restored log; and the backups' records follow the backup
    folder. ``migrate`` (the backup's path, for its messages): the swapped-in database is brought
    to this version after the swap (PostgreSQL's, restored in place). When any of it fails the
    previous database is put back (``swap_back``) before the lock is let go: nothing restored,
    no version announced, no token of the backup's time let in for longer than the attempt."""
    try:
        carried = [
            (model, serializers.serialize("json", rows(), use_natural_foreign_keys=True))
            for model, rows in CARRIED_OVER_A_RESTORE
        ]
        since = taken_at - timedelta(days=1) if taken_at is not None else None  # a clock set back since
        audit_since = _rows_since(AuditEntry, "at", since)
        runs_since = [(model, _rows_since(model, "started_at", since)) for model in RUNS_CARRIED_OVER]
    except DatabaseError as error:  # a damaged central database is what is being restored
        logger.warning(
            "Users, tokens, sessions, shipping states, archives, alerts and runs could not be read before "
            "the restore: %s",
            error,
        )
        carried, audit_since, runs_since = [], "[]", []
    with config_service.config_lock():
        history = config_service.history_mark()
        swap_in()
        try:
            if migrate is not None:
                _bring_to_this_version("default", migrate)
            with transaction.atomic():  # the history's announcements go out on its commit
                _put_back(carried, audit_since, runs_since)
                for line in config_service.continue_history(history):
                    logger.info("After the restore: %s", line)
        except Exception as error:
            logger.exception("The restore of the central database failed after its swap; putting the previous one back")
            try:
                swap_back()
            except Exception:
                logger.exception("The previous central database could not be put back")
                raise BackupError(
                    f"the restore failed after the swap ({error}) and the previous central database could not "
                    f"be put back: it is kept at {aside}."
                ) from error
            if isinstance(error, BackupError):
                raise
            raise BackupError(
                f"what the central database holds (users, tokens, alerts, the audit log, the config history) "
                f"could not be carried into the restored one ({error}); it is back as it was."
            ) from error
    reconcile_records()


def _rows_since(model, field: str, since: datetime | None) -> str:
    """The model's rows made since ``since`` (every one when it is not known), serialized."""
    rows = model.objects.filter(**{f"{field}__gte": since}) if since else model.objects.all()
    return serializers.serialize("json", rows)


def _put_back(carried: list, audit_since: str, runs_since: list) -> None:
    for model, rows in carried:
        kept = list(serializers.deserialize("json", rows))
        kept_ids = {row.object.pk for row in kept}
        removed = [pk for pk in model.objects.values_list("pk", flat=True) if pk not in kept_ids]
        for start in range(0, len(removed), 500):  # within any engine's limit of parameters
            model.objects.filter(pk__in=removed[start : start + 500]).delete()
        for row in kept:
            row.save()
    logged = AuditEntry.objects.aggregate(newest=Max("pk"))["newest"] or 0  # ids only grow
    for entry in serializers.deserialize("json", audit_since):
        if entry.object.pk > logged:
            entry.save()
    for _, rows in runs_since:  # as they ended: a run the backup holds running is saved over
        for run in serializers.deserialize("json", rows):
            run.save()
    # Rows saved with their ids: PostgreSQL's sequences go on after them (SQLite's by itself).
    with connections["default"].cursor() as cursor:
        for statement in connections["default"].ops.sequence_reset_sql(
            no_style(), [model for model, _ in CARRIED_OVER_A_RESTORE] + [AuditEntry, *RUNS_CARRIED_OVER]
        ):
            cursor.execute(statement)


# Rows of the central database put back after its restore as they were before it, with their
# ids (a session names its user by id), those the backup has besides removed: who may sign in and
# with what (a user or token removed since the backup must not work again, one made since must
# keep working: a bot host's), who is signed in and who is locked out, the plugins whose database
# here is a mirror a bot host ships to (restored from before a host's first batch, a mirror with
# rows and no shipping state is taken for a plugin written on this machine, and every batch
# after is refused), the plugins archived (archive_plugin --undo finds them), the alerts as the
# operators left them (one acknowledged since the backup does not open again), and the
# console's home: the folders the restore runs in, not the backup's (a console moved to a new
# machine and restored there from its old dump was refused on its own folders), and the state of
# its jobs: when each scheduled one last started, which are queued or running now (the backup's
# said its own job was running).
CARRIED_OVER_A_RESTORE = (
    (Group, lambda: Group.objects.all()),  # the roles (plugin-host's is made with the first such token)
    (User, lambda: User.objects.all()),
    (ApiToken, lambda: ApiToken.objects.all()),
    (Session, lambda: Session.objects.filter(expire_date__gt=timezone.now())),
    (AccessAttempt, lambda: AccessAttempt.objects.all()),  # the lockouts: guesses since the backup stay counted
    (ShippingState, lambda: ShippingState.objects.all()),
    (ArchivedPlugin, lambda: ArchivedPlugin.objects.all()),
    (Alert, lambda: Alert.objects.all()),
    (ConsoleHome, lambda: ConsoleHome.objects.all()),
    (JobState, lambda: JobState.objects.all()),
)
# The runs of the console's jobs since the backup was taken are put back too, as they ended (as
# the audit entries are). A backup the worker makes is taken while its own run is RUNNING and
# its job marked running, by a consumer that goes on living: restored, the backups page said
# "Backing up…" and held its button until the next backup began (an hour later), and the
# history lost every run since.
RUNS_CARRIED_OVER = (SyncRun, BackupRun)


BACKUP_NAME = re.compile(r"^(?P<alias>default|plugin_[a-z0-9_]+)-(?P<stamp>\d{8}T\d{12}Z)(\.sqlite3\.zst|\.pgdump)$")


def _stamped_at(name: re.Match) -> datetime:
    """The time in a backup's name (BACKUP_NAME's match)."""
    return datetime.strptime(name["stamp"], STAMP).replace(tzinfo=UTC)


def reconcile_records() -> tuple[int, int]:
    """The backups' records live in the central database: restored from a backup, it holds the
    records of that backup's time. It lacks the backups made since (and the restored backup's
    own record, written after its copy), and lists those retention has removed since. Records
    whose file is gone leave; each backup file without a record is recorded again, its
    checksum taken now and its row counts unknown (its drills check the rest). Returns
    (recorded again, forgotten)."""
    forgotten = 0
    recorded = set()
    for backup in Backup.objects.all():
        if Path(backup.path).is_file():
            recorded.add(Path(backup.path).resolve())
        else:
            backup.delete()
            forgotten += 1
    again = 0
    for path in sorted(settings.BACKUP_DIR.glob("*")):
        name = BACKUP_NAME.match(path.name)
        if name is None or not path.is_file() or path.resolve() in recorded:
            continue
        Backup.objects.create(
            database=name["alias"],
            created_at=_stamped_at(name),
            path=str(path),
            size_bytes=path.stat().st_size,
            sha256=_file_sha256(path),
        )
        again += 1
    if again or forgotten:
        logger.info(
            "Backup records after the restore: %d recorded again, %d whose file is gone forgotten", again, forgotten
        )
    return again, forgotten


def _restore_postgresql(path: Path, backup: Backup | None, aside_dir: Path) -> Path:
    """Check the dump, dump the current central database aside, restore in one transaction."""
    check_backup_file(
        path,
        alias="default",
        sha256=backup.sha256 if backup else "",
        expected_counts=backup.recorded_counts if backup else None,
        work_dir=aside_dir,  # unused: a dump is checked in a scratch database, not a file
    )
    aside = aside_dir / f"default-{timezone.now():{STAMP}}{postgres_backup.SUFFIX}"

    def swap_in() -> None:
        postgres_backup.dump(aside)
        postgres_backup.restore(path)

    try:
        _restore_central(swap_in, lambda: postgres_backup.restore(aside), _taken_at(path, backup), aside, migrate=path)
    except postgres_backup.DumpFailed as error:
        raise BackupError(f"Nothing was restored: {error}") from None
    logger.info("Restored default from %s; the previous database is dumped at %s", path, aside)
    return aside
