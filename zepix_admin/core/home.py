"""The console's home: the folders a central database on PostgreSQL belongs to.

The plugin databases, their backups and the config files live in the console's folders, on one
machine; the central database on PostgreSQL and the queue on Redis are shared beyond it. A
consumer started on another machine, with folders of its own, took the console's work from the
shared queue and did it there (seen through real processes): its syncs found no plugin and were
recorded as successful, its backups were written to its own disk, and health called both
recent. A web node there would have applied the bot hosts' batches to mirrors the console's sync
never reads.

`setup` gives the data folder an id (``settings.CONSOLE_ID_FILE``, which also names the queue
on Redis) and records it in a central database on PostgreSQL, once; `setup --move-here` moves
the console to another machine's folders for good. Every process and every job that needs the
console's folders checks first (``check``) and refuses, saying where the console is, when its
folders are not those. With the central database on SQLite the two cannot part (the database
is a file in the data folder): nothing to check.
"""

import logging
import secrets
import socket

from django.conf import settings
from django.db import DatabaseError, ProgrammingError, transaction
from django.utils import timezone

from zepix_admin.core import audit
from zepix_admin.core.databases import on_postgresql
from zepix_admin.core.errors import Unavailable
from zepix_admin.core.files import write_atomic

logger = logging.getLogger("zepix.home")
HOME_ROW = 1  # the primary key of the one row


class NotTheConsolesFolders(Unavailable):
    pass


def folder_id() -> str:
    """This process's data folder's id ('' when it has none)."""
    try:
        return settings.CONSOLE_ID_FILE.read_text().strip()
    except FileNotFoundError:
        return ""


def here() -> str:
    return f"{settings.DATA_DIR} on {socket.gethostname()}"


def check() -> None:
    """NotTheConsolesFolders when the central database belongs to other folders than this
    process's. A central database with no home recorded yet (an install made before homes
    were, until its next `setup`, which migrates it first) is taken to be this one's."""
    from zepix_admin.core.models import ConsoleHome

    if not on_postgresql():
        return
    try:
        with transaction.atomic():  # a savepoint inside a caller's transaction, which a failure would end
            home = ConsoleHome.objects.filter(pk=HOME_ROW).first()
    except ProgrammingError:  # its table not made yet: a backup or a sync before that `setup`
        return
    if home is not None and home.folder_id != folder_id():
        raise _elsewhere(home)


def _elsewhere(home) -> NotTheConsolesFolders:
    return NotTheConsolesFolders(
        f"This process's folders ({here()}) are not the console's: its central database belongs to "
        f"{home} (set up {home.recorded_at:%Y-%m-%d %H:%M} UTC), where the plugin databases, their backups "
        "and the config files are. Run web nodes and consumers there, with those folders (README, "
        '"Several machines"). If the console has moved to this machine for good, run `python manage.py '
        "setup --move-here` here."
    )


def refusal() -> str:
    """What a process on these folders is told ('' when they are the console's): a starting web
    node or consumer stops with it, health reports it. A central database that does not answer
    cannot tell, and is no reason to stop: the jobs check again."""
    try:
        check()
    except NotTheConsolesFolders as refusal:
        return str(refusal)
    except DatabaseError as error:
        logger.warning("Could not tell whether these are the console's folders: %s", error)
    return ""


def record(*, move_here: bool = False) -> list[str]:
    """`setup`: this data folder's id (made once, whatever the engine), recorded as a PostgreSQL
    central database's home when it has none, or when ``move_here``; NotTheConsolesFolders when
    it has another one. Returns what it did, in `setup`'s words."""
    from zepix_admin.core.models import ConsoleHome

    mine = folder_id()
    if not mine:
        mine = secrets.token_hex(16)
        write_atomic(settings.CONSOLE_ID_FILE, mine + "\n")
    if not on_postgresql():
        return []
    with transaction.atomic():
        home = ConsoleHome.objects.select_for_update().filter(pk=HOME_ROW).first()
        if home is not None and home.folder_id == mine:
            if home.data_dir != str(settings.DATA_DIR) or home.host != socket.gethostname():
                _move(home, mine, "console.home.renamed")  # the same folder, renamed or its machine renamed
            return []
        if home is not None and not move_here:
            raise _elsewhere(home)
        if home is None:
            home = ConsoleHome(pk=HOME_ROW)  # a second setup at the same moment fails on its key
            _move(home, mine, "console.home.record")
            return [f"console home: {here()}"]
        before = str(home)
        _move(home, mine, "console.home.move", moved_from=before)
        return [f"console home: moved here from {before}"]


def _move(home, mine: str, action: str, **details) -> None:
    home.folder_id, home.host, home.data_dir = mine, socket.gethostname(), str(settings.DATA_DIR)
    home.recorded_at = timezone.now()
    home.save()
    audit.record("command", "command", action, str(home), **details)
