"""Files shared between processes: locks and durable renames.

Locks are ``flock`` on a file, released by the kernel when the holder dies, so a killed job
never leaves a lock behind."""

import fcntl
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from zepix_admin.core.errors import Conflict


class Busy(Conflict):
    pass


def tried_until(deadline: float, attempt) -> bool:
    """Calls ``attempt()`` (a try for a lock) until it returns True, then True; False once
    ``deadline`` (``time.monotonic()``) has passed. The pauses between tries are short at first
    (a config save holds its lock for a few milliseconds, and a blocking lock would have been
    handed over at once), then 50 ms at most."""
    pause = 0.001
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True


@contextmanager
def file_lock(path: Path, *, wait_seconds: float | None = None):
    """Hold an exclusive lock on ``path``, waiting for it as long as it takes (None), or at most
    ``wait_seconds`` (0: not at all) before raising Busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if wait_seconds is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        elif not tried_until(time.monotonic() + wait_seconds, lambda: _locked_at_once(handle)):
            raise Busy(str(path))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(path: Path) -> bool:
    """Whether a process holds ``path``'s lock (``file_lock``) now, this one included."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _locked_at_once(handle)
    finally:
        os.close(handle)  # and with it the lock, had this taken it


def _locked_at_once(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_folder(folder: Path) -> None:
    """Make a rename or a deletion in ``folder`` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# The temporary folders of the jobs that handle whole database files: a backup's copy, a restore
# drill's, a restore's, a received or sent snapshot, an archive's copy and its undo.
WORK_PREFIXES = (".work-", ".verify-", ".restore-", ".snapshot-", ".undo-")
# A folder is locked a moment after it is made: one younger than this is never taken for abandoned.
ABANDONED_AFTER_SECONDS = 60


@contextmanager
def work_folder(parent: Path, prefix: str):
    """A folder of its own under ``parent`` for a job's temporary files, removed afterwards.

    Those files are as large as a database (a backup's copy of a 500 MB file is 500 MB), and a
    job killed meanwhile (a worker restarted, the OOM killer) cannot remove its folder: each
    one left stayed for good. So the job holds a lock on its folder while it runs, and making
    a work folder first removes the folders under the same parent whose lock is free."""
    if prefix not in WORK_PREFIXES:
        raise ValueError(f"{prefix!r} is not one of the work folders' prefixes")
    parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work_folders(parent)
    with tempfile.TemporaryDirectory(dir=parent, prefix=prefix, ignore_cleanup_errors=True) as work:
        handle = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield Path(work)
        finally:
            _empty_gently(Path(work))
            os.close(handle)


SHRINK_STEP_BYTES = 64 << 20


def _empty_gently(folder: Path) -> None:
    for leftover in folder.iterdir():
        remove_gently(leftover)


def remove_gently(path: Path) -> None:
    """Remove a file, a large one shrunk step by step first, each step made durable: freeing a
    560 MB file's blocks at once made one large file-system commit, which the bot's next fsync
    (a checkpoint) waited for (46-82 ms measured, after a backup's check copy)."""
    try:
        size = path.stat().st_size if path.is_file() and not path.is_symlink() else 0
        if size > SHRINK_STEP_BYTES:
            with open(path, "r+b") as file:
                for length in range(size - SHRINK_STEP_BYTES, 0, -SHRINK_STEP_BYTES):
                    file.truncate(length)
                    os.fsync(file.fileno())
        path.unlink()
    except OSError:
        pass  # a folder or a file gone: the folder's own removal takes what is left


def remove_abandoned_work_folders(parent: Path) -> list[Path]:
    """The work folders under ``parent`` that no running job holds; returns those removed."""
    removed = []
    for folder in parent.iterdir():
        if not folder.name.startswith(WORK_PREFIXES) or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            if time.time() - folder.stat().st_mtime < ABANDONED_AFTER_SECONDS:
                continue
            handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # gone meanwhile
        try:
            if not _locked_at_once(handle):
                continue  # a running job's
            _empty_gently(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(handle)
    return removed


def write_atomic(path: Path, text: str) -> None:
    """Readers and crashes see the old file or the new one, whole, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
