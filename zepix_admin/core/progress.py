"""Progress of a long command: a bar with its rate and the time left on a terminal, nothing when
the output is piped, logged or the worker runs the work (the command's own lines then say
what was done, one per step)."""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], object]  # called with how many more rows or bytes are done


def _size(stream) -> tuple[int, int]:
    """The terminal's columns and lines; 80 x 24 where it reports none: a terminal without a size
    says 0 x 0, and tqdm then draws nothing at all."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


@contextmanager
def progress_bar(total: int | None, *, unit: str, description: str, stream=None) -> Iterator[Advance]:
    stream = stream or sys.stderr
    if not stream.isatty():
        yield lambda done: None
        return
    from tqdm import tqdm  # on a terminal only: 6-13 ms of every command's start otherwise

    byte_sized = unit == "B"
    with tqdm(
        total=total,
        unit=unit,
        unit_scale=byte_sized,
        unit_divisor=1024 if byte_sized else 1000,
        desc=description,
        file=stream,
        ncols=_size(stream)[0],
        nrows=_size(stream)[1],
        leave=True,
    ) as bar:
        yield bar.update
