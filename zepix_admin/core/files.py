"""Files shared between processes: locks and durable renames.

Locks are ``flock`` on a file, released by the kernel when the holder dies, so a killed job
never leaves a lock behind."""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from zepix_admin.core.errors import Conflict


class Busy(Conflict):
    pass


@contextmanager
def file_lock(path: Path, *, wait: bool = True):
    """Hold an exclusive lock on ``path``; with ``wait=False`` raise Busy when someone holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a deletion in ``folder`` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
