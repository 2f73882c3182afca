"""Progress bars for engineers at a terminal, and none anywhere else.

A bar (tqdm, on stderr) is shown only when stderr is a terminal, ``CI`` is not set to a true value
and the command does not speak JSON (``quiet=True``: ``--json``, ``--log-json``). Piped output,
CI logs and JSON stay free of carriage returns and bar lines. ``PATROL_PROGRESS=0`` turns bars off,
``PATROL_PROGRESS=1`` forces them on (for a terminal tqdm cannot detect).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_silenced = False


def silence(on: bool = True) -> None:
    """No bars anywhere in this process from now on (a command that writes JSON says so once, and bars
    deep in a library, a clip's detection say, stay off too)."""
    global _silenced
    _silenced = on


def bars_wanted(stream: TextIO | None = None, *, quiet: bool = False) -> bool:
    """Whether a progress bar belongs on ``stream`` (default: sys.stderr) now."""
    forced = os.environ.get("PATROL_PROGRESS", "").strip().lower()
    if quiet or _silenced or forced in ("0", "false", "no", "off"):
        return False
    if forced in _TRUE:
        return True
    if os.environ.get("CI", "").strip().lower() in _TRUE:
        return False
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it",
             quiet: bool = False) -> Iterator[T]:
    """``items`` unchanged, with a bar on stderr when :func:`bars_wanted`."""
    if not bars_wanted(quiet=quiet):
        yield from items
        return
    with tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, **_width()) as bar:
        yield from bar


def _width() -> dict[str, Any]:
    """Follow the terminal's width; a terminal that reports 0 columns (a fresh pseudo-terminal whose
    size nobody set) gets 80, where tqdm would print an empty bar."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": DEFAULT_COLUMNS}


DEFAULT_COLUMNS = 80


@contextlib.contextmanager
def reading(stream: BinaryIO, *, desc: str, total: int | None = None) -> Iterator[BinaryIO]:
    """``stream`` whose reads advance a byte bar (a download or a copy), when :func:`bars_wanted`."""
    if not bars_wanted():
        yield stream
        return
    with tqdm.wrapattr(stream, "read", total=total, desc=desc, file=sys.stderr, leave=False, unit="B",
                       unit_scale=True, unit_divisor=1024, **_width()) as wrapped:
        yield wrapped


class Counter:
    """A bar advanced by hand (``step(n)``), e.g. from a ``progress(done, total)`` callback; a no-op
    when no bar is wanted."""

    def __init__(self, *, desc: str, total: int | None = None, unit: str = "it", quiet: bool = False) -> None:
        self._bar: Any = None
        if bars_wanted(quiet=quiet):
            self._bar = tqdm(desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, **_width())

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def goto(self, done: int, total: int | None = None) -> None:
        """Set the bar to ``done`` of ``total`` (a sweep's ``progress(i, total)`` callback)."""
        if self._bar is None:
            return
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
