"""Versioned configuration: the one way a document changes, whoever changes it.

A save is validated, checked against the version it was based on, recorded as a new
``ConfigVersion`` in the central database, written to its file atomically, audited and
announced (``config_changed``). Savers take turns (``config_lock``), across processes and,
with PostgreSQL, across machines.
"""

import logging
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Max
from django.utils import timezone

from config_app import defaults, documents, stream
from config_app.diff import diff_documents
from config_app.models import ConfigVersion
from config_app.signals import config_changed
from plugins_app import registry
from zepix_admin.core import audit
from zepix_admin.core.alerts import raise_alert, resolve_alert, unresolved
from zepix_admin.core.databases import on_postgresql
from zepix_admin.core.errors import Conflict, NotFound, Unavailable
from zepix_admin.core.files import Busy, file_lock, tried_until, write_atomic

logger = logging.getLogger("zepix.config")


class UnknownVersion(NotFound, LookupError):
    pass


class ConfigConflict(Conflict):
    """The save was based on a version that is no longer the newest."""

    def __init__(self, scope: str, base_version: int, current: ConfigVersion, changes: list[dict]):
        self.scope, self.base_version, self.current, self.changes = scope, base_version, current, changes
        super().__init__(
            f"{scope} changed since version {base_version}: it is now version {current.version} "
            f"by {current.author}; reload and apply your change again."
        )


# Any number that no other advisory lock on the central database uses ("zepix" in ASCII).
CONFIG_ADVISORY_LOCK = 0x7A65706978
# How long a save (a request, a command) waits for the change before it: a restore of the
# central database holds the lock throughout, minutes for a big one. Within a request's time
# limit for its queries (5 s, STATEMENT_TIME_LIMIT_SECONDS, counted from the request's start),
# with room left for the save's own. (An archive and its undo wait as long as it takes: each is
# one step of several, which a refusal would leave half done.)
CHANGE_WAIT_SECONDS = 3.0


class ConfigBusy(Unavailable):
    title = "Configuration busy"


BUSY_MESSAGE = (
    "Another change to the configuration has not finished (a restore of the central database, or a "
    "save): nothing was saved. Try again in a moment."
)


@contextmanager
def config_lock(wait_seconds: float | None = None):
    """Changes one at a time. The lock file orders this machine's processes (so the file ends up
    holding the newest version); with the central database on PostgreSQL an advisory lock also
    orders every machine's. Without it two web nodes could each number a version on the same
    one (the second a 500 on the unique constraint instead of a 409), and a version whose commit
    came after a later row's was never sent: the streams follow the versions by row id, and had
    read past it. ``wait_seconds``: at most so long, then ConfigBusy (None: as long as it takes)."""
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(settings.CONFIG_DIR / ".zepix-config.lock", wait_seconds=wait_seconds))
        except Busy:
            raise ConfigBusy(BUSY_MESSAGE) from None
        if on_postgresql():
            held.enter_context(_advisory_lock(deadline))
        yield


@contextmanager
def _advisory_lock(deadline: float | None):
    """Held by the session, not a transaction: a save commits before it writes its file. A
    connection that is lost lets go of it with the session."""
    connection = connections["default"]
    with connection.cursor() as cursor:

        def taken_at_once() -> bool:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [CONFIG_ADVISORY_LOCK])
            return cursor.fetchone()[0]

        if deadline is None:
            cursor.execute("SELECT pg_advisory_lock(%s)", [CONFIG_ADVISORY_LOCK])
        elif not tried_until(deadline, taken_at_once):
            raise ConfigBusy(BUSY_MESSAGE)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [CONFIG_ADVISORY_LOCK])
        except DatabaseError:
            # A transaction of the caller's that failed refuses every statement until it is
            # rolled back: the session ends instead, and the lock with it (back in the pool
            # still holding it, the connection would hold up every save of every machine).
            connection.close()


# Read by every save (under the config lock, before its commit) and most pages: the ORM took
# 0.62 ms to make this statement each time, 0.16-0.23 ms as a raw query (median, in-process).
CURRENT_SQL = "SELECT * FROM config_app_configversion WHERE scope = %s ORDER BY version DESC LIMIT 1"


def current(scope: str) -> ConfigVersion | None:
    """The newest version of a scope; None before its first (a plugin declared a moment ago)."""
    return next(iter(ConfigVersion.objects.raw(CURRENT_SQL, [scope])), None)


def require_current(scope: str) -> ConfigVersion:
    """The newest version of a scope, where a request or a command needs one (404 before any)."""
    version = current(scope)
    if version is None:
        raise UnknownVersion(f"{scope} has no saved version yet (`python manage.py setup` records the first).")
    return version


def document_of(version: ConfigVersion | None) -> dict:
    """A version's document; {} for no version (the newest version always keeps its document)."""
    return (version.document if version else None) or {}


def active_document(scope: str) -> dict:
    return document_of(current(documents.check_scope(scope)))


def active_documents(scopes: list[str]) -> dict[str, dict]:
    """{scope: active document} of several scopes in one query (the overview's cards: one query
    per plugin was a round trip each to a PostgreSQL central database)."""
    newest = ConfigVersion.objects.filter(scope__in=scopes).values("scope").annotate(newest=Max("pk")).values("newest")
    found = {version.scope: document_of(version) for version in ConfigVersion.objects.filter(pk__in=newest)}
    return {scope: found.get(scope, {}) for scope in scopes}


def global_settings(section: str) -> dict:
    """A section of the active global document over its defaults (e.g. "sync", "backup")."""
    return {**defaults.GLOBAL_DEFAULTS[section], **active_document(documents.GLOBAL_SCOPE).get(section, {})}


def webhook_settings() -> tuple[str, str]:
    """Where alerts are posted and from which level (see zepix_admin.core.alerts)."""
    return global_settings("sync")["alert_webhook_url"], global_settings("alerts")["webhook_min_level"]


def save(scope: str, document, *, base_version: int, author: str, via: str, comment: str = "") -> ConfigVersion:
    """Save a whole document; raises UnknownScope, InvalidDocument, ConfigConflict or ConfigBusy,
    changing nothing."""
    documents.check_scope(scope)
    documents.check_document(scope, document)
    with config_lock(CHANGE_WAIT_SECONDS):
        latest = current(scope)
        latest_number = latest.version if latest else 0
        if base_version != latest_number:
            if latest is None:
                raise UnknownVersion(f"{scope} has no version {base_version}: it has none yet (save on version 0).")
            base = ConfigVersion.objects.filter(scope=scope, version=base_version).first()
            raise ConfigConflict(scope, base_version, latest, diff_documents(document_of(base), document_of(latest)))
        if latest and latest.document == document:
            return latest
        return _record(scope, document, latest, author=author, via=via, comment=comment)


def set_value(scope: str, path: str, value, *, base_version: int, author: str, via: str) -> ConfigVersion:
    from config_app.diff import set_path

    base = ConfigVersion.objects.filter(scope=documents.check_scope(scope), version=base_version).first()
    if base is not None and base.document is None:  # pruned: only versions long superseded lose their document
        raise ConfigConflict(scope, base_version, require_current(scope), [])
    document = set_path(document_of(base), path, value)
    return save(scope, document, base_version=base_version, author=author, via=via, comment=f"set {path}")


def rollback(scope: str, to_version: int, *, author: str, via: str) -> ConfigVersion:
    target = ConfigVersion.objects.filter(scope=documents.check_scope(scope), version=to_version).first()
    if target is None:
        raise UnknownVersion(f"{scope} has no version {to_version}.")
    if target.document is None:
        raise UnknownVersion(
            f"{scope} version {to_version} is older than the history keeps whole documents "
            f"({HISTORY_KEEP_DAYS} days or the last {HISTORY_KEEP_VERSIONS:,} versions); its diff is kept."
        )
    return save(
        scope,
        target.document,
        base_version=require_current(scope).version,
        author=author,
        via=via,
        comment=f"rollback to version {to_version}",
    )


def retire(scope: str, *, author: str, via: str) -> ConfigVersion:
    """Archive a plugin's scope: a tombstone version (its document kept), then its file goes, so
    the plugin is no longer declared. Under the config lock, so the watcher, which restores a
    deleted file of a live scope, sees the tombstone first and leaves the file gone."""
    with config_lock():
        latest = current(documents.check_scope(scope))
        if scope == documents.GLOBAL_SCOPE or latest is None:
            raise documents.UnknownScope(f"Only a declared plugin's scope can be retired, not {scope!r}.")
        version = _record(
            scope, latest.document, latest, author=author, via=via, comment="archived", write_file=False, retired=True
        )
        documents.remove(documents.document_path(scope))
    return version


def reinstate(scope: str, *, author: str, via: str) -> ConfigVersion:
    """Undo ``retire``: the document it kept becomes a new version and its file comes back."""
    with config_lock():
        latest = current(scope)
        if latest is None or not latest.retired:
            raise documents.UnknownScope(f"{scope!r} is not an archived plugin's scope.")
        return _record(scope, latest.document, latest, author=author, via=via, comment="brought back from archive")


def _record(
    scope,
    document,
    latest,
    *,
    author,
    via,
    comment,
    write_file: bool = True,
    retired: bool = False,
    number: int | None = None,
) -> ConfigVersion:
    """Must run under config_lock(). Commits the version (numbered after ``latest`` unless
    ``number`` says otherwise), then writes the file (unless the document came from the file:
    rewriting it could clobber the operator's next edit)."""
    changes = diff_documents(latest.document if latest else None, document)
    with transaction.atomic():
        version = ConfigVersion.objects.create(
            scope=scope,
            version=number or (latest.version if latest else 0) + 1,
            author=author,
            via=via,
            comment=comment,
            document=document,
            diff=changes,
            retired=retired,
        )
        transaction.on_commit(lambda: stream.announce(version))  # every process's streams, once it is committed
        stream.notify_in_transaction()  # and with PostgreSQL, every web node's, at the commit
        action = "config.retire" if retired else "config.save"
        # The values are in the version's diff: the audit entry names the paths only (a 1 MB
        # document once stored its values three times over).
        paths = [change["path"] for change in changes]
        audit.record(
            author,
            via,
            action,
            scope,
            version=version.version,
            comment=comment,
            changed=paths[:50] + ([f"... {len(paths) - 50} more"] if len(paths) > 50 else []),
        )
    # Written after the commit: a crash in between leaves the file at an older recorded
    # version, which ingest_file() recognises and repairs.
    if write_file:
        _write_document(version, document)
    config_changed.send(sender=ConfigVersion, scope=scope, version=version.version, diff=changes, author=author)
    return version


def _write_document(version: ConfigVersion, document: dict) -> None:
    """The file follows the version just committed. A full disk under the config folder leaves it
    at the version before: the version is saved and on its way to the subscribers all the same,
    so the save is not refused for it (it answered 500, saved). An alert says so until the
    file holds the active version again: the watcher's next look at the file writes it, or
    `setup`, or the next save."""
    path = documents.document_path(version.scope)
    try:
        write_atomic(path, documents.render(document))
    except OSError as error:
        message = (
            f"Version {version.version} of {version.scope} is saved and in use, but {path} could not be written "
            f"({error.strerror or error}): the file still holds the version before. It is written again once "
            "there is room, by the next save or `python manage.py setup`."
        )
        logger.error(message)
        version.file_not_written = message  # the API says it beside the saved version
        try:
            raise_alert("config", path.name, message)
        except DatabaseError as refused:  # the same full disk: the log has it
            logger.error("The alert about %s could not be raised: %s", path.name, refused)


@dataclass
class HistoryMark:
    """Where the config history stood: its last row and each scope's newest version."""

    last_pk: int
    newest: dict[str, ConfigVersion]


def history_mark() -> HistoryMark | None:
    """Taken under config_lock() just before the central database is restored (None when it
    cannot be read)."""
    try:
        scopes = ConfigVersion.objects.values_list("scope", flat=True).distinct()
        newest = {scope: version for scope in scopes if (version := current(scope)) is not None}
        last_pk = ConfigVersion.objects.aggregate(last=Max("pk"))["last"] or 0
    except DatabaseError as error:
        logger.warning("The config history could not be read before the restore: %s", error)
        return None
    return HistoryMark(last_pk, newest)


def continue_history(mark: HistoryMark | None) -> list[str]:
    """After the central database is restored from a backup, the config history goes on from
    where the running plugins are. The plugins run the newest version they were sent and skip
    any number they have seen: a restored history numbered from the backup's time would have
    its next saves skipped, and every web process waits for rows after the last one it read.
    So row ids go on after the old ones, and each scope whose newest version went back gets a
    version numbered after its old newest one, with the document its plugins run (the history
    in between stays in the database kept aside). Returns what it did, one line a scope. Must
    run under config_lock(), held since the mark was taken."""
    if mark is None:
        return []
    _ids_after(mark.last_pk)
    done = []
    for scope, before in mark.newest.items():
        restored = current(scope)
        if restored is not None and restored.version >= before.version:
            continue
        _record(
            scope,
            before.document,
            restored,
            author="restore",
            via="restore",
            comment=f"carried over the restore of the central database (it had version "
            f"{restored.version if restored else 0}, the plugins ran version {before.version})",
            write_file=not before.retired,
            retired=before.retired,
            number=before.version + 1,
        )
        done.append(f"config {scope}: version {before.version + 1}, as the plugins ran it")
    return done


def _ids_after(last_pk: int) -> None:
    """The next config version row gets an id after ``last_pk``."""
    table = ConfigVersion._meta.db_table
    with connections["default"].cursor() as cursor:
        if on_postgresql():
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"GREATEST(%s, (SELECT COALESCE(MAX(id), 1) FROM {table})))",
                [last_pk],
            )
        else:
            cursor.execute("UPDATE sqlite_sequence SET seq = MAX(seq, %s) WHERE name = %s", [last_pk, table])
            if cursor.rowcount == 0:
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, last_pk])


def _holds_the_active_version(scope: str, path) -> bool:
    """The file holds the active version's document, and no alert about it is open: what the
    watcher finds after every save's own write of the file, told without the config lock. Under
    the lock, with the document validated, that look held up the save that came next: with a
    save every 0.2 s (the watcher's debounce), one in seven reached its subscribers 15-25 ms
    late (bench/config_latency.py). Anything else is looked at again under the lock."""
    latest = current(scope)
    if latest is None or latest.retired:
        return False
    if unresolved().filter(source="config", subject__in=(scope, path.name)).exists():
        return False
    try:
        return documents.parse(documents.read_file(path)) == latest.document
    except (OSError, documents.InvalidDocument):
        return False


def ingest_file(scope: str) -> ConfigVersion | None:
    """Bring an edit made to the file outside the dashboard in, if it is valid.

    Returns the new version, or None when there was nothing to take. An invalid file is
    left as the operator wrote it (so they can fix it); the active version stays and an
    alert tells them. A file equal to an older recorded version is a save interrupted
    between commit and write, and is repaired to the newest version.
    """
    path = documents.document_path(scope)
    if _holds_the_active_version(scope, path):
        return None
    with config_lock():
        latest = current(scope)
        if not path.exists() and not path.is_symlink():
            if latest and not latest.retired:  # a deleted file of a live scope comes back
                write_atomic(path, documents.render(document_of(latest)))
            return None
        try:
            document = documents.parse(documents.read_file(path))
            documents.check_document(scope, document)
        except documents.InvalidDocument as error:
            logger.warning("Rejected outside edit of %s: %s", path, error)
            raise_alert(
                "config",
                scope,
                f"Rejected edit of {path.name}: {error}. Still active: version {latest.version if latest else 0}.",
            )
            audit.record("file", "file", "config.rejected", scope, errors=[str(p) for p in error.problems])
            return None
        resolve_alert("config", scope)
        if latest and document == latest.document and not latest.retired:
            resolve_alert("config", path.name)  # a save's file not written (a full disk): it is now
            return None
        if (
            latest
            and ConfigVersion.objects.filter(scope=scope, document=document).exists()
            and (path.stat().st_mtime <= latest.created_at.timestamp())
        ):
            write_atomic(path, documents.render(document_of(latest)))
            resolve_alert("config", path.name)
            return None
        return _record(
            scope, document, latest, author="file", via="file", comment=f"edited {path.name}", write_file=False
        )


HISTORY_KEEP_DAYS = 90
HISTORY_KEEP_VERSIONS = 1000


def prune_history(now=None) -> int:
    """Every version keeps its diff; its whole document only while it is younger than
    HISTORY_KEEP_DAYS or among the last HISTORY_KEEP_VERSIONS of its scope (the active version
    always). Returns how many documents were let go."""
    cutoff = (now or timezone.now()) - timedelta(days=HISTORY_KEEP_DAYS)
    pruned = 0
    for scope, newest in ConfigVersion.objects.values_list("scope").annotate(newest=Max("version")):
        pruned += ConfigVersion.objects.filter(
            scope=scope,
            document__isnull=False,
            created_at__lt=cutoff,
            version__lte=newest - HISTORY_KEEP_VERSIONS,
        ).update(document=None)
    return pruned


def ensure_defaults() -> list[str]:
    """First setup: write default documents that are missing and record version 1 of each
    scope. Later runs take in edits made while nothing was watching. Returns what it did."""
    done = []
    for scope in documents.scopes():
        path = documents.document_path(scope)
        if current(scope) is None:
            if not path.exists():
                write_atomic(path, documents.render(defaults.for_scope(scope)))
            document = documents.read(scope)
            documents.check_document(scope, document)
            with config_lock():
                _record(scope, document, None, author="setup", via="setup", comment="initial version")
            done.append(f"config {scope}: version 1")
        elif ingest_file(scope):
            done.append(f"config {scope}: took in an outside edit")
    return done


def declare_plugin(plugin_id: str) -> bool:
    """Declare a plugin by writing its default document; False when it already exists."""
    registry.check_plugin_id(plugin_id)
    declare_builtin_plugins()
    path = registry.config_path(settings.CONFIG_DIR, plugin_id)
    if path.exists():
        return False
    document = {**defaults.for_scope(plugin_id), **documents.own_defaults(plugin_id)}
    write_atomic(path, documents.render(document))
    return True


def declare_builtin_plugins() -> None:
    """Before the plugins folder exists, the built-in plugins are declared implicitly: make it explicit."""
    folder = settings.CONFIG_DIR / "plugins"
    if not folder.is_dir():
        for plugin_id in registry.BUILTIN_PLUGINS:
            write_atomic(
                registry.config_path(settings.CONFIG_DIR, plugin_id), documents.render(defaults.for_scope(plugin_id))
            )
