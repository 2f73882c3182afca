"""Stop on SIGINT/SIGTERM without deadlocking the main thread.

A Python signal handler runs on the main thread between two bytecodes — possibly while that thread
holds the very lock the handler needs (``Event.set`` takes the event's non-reentrant lock, which
``Event.wait``/``clear`` hold for a moment). Setting the event inside the handler then blocks forever.
So the handler only starts a thread, and that thread runs the callback once the lock is free.

Which signal stopped the process is remembered (:func:`interrupted`): the CLI turns a run that
SIGINT ended, however cleanly, into exit status 130; SIGTERM is an ordinary stop (0).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: set[int] = set()
"""Signals a :func:`stop_on_signals` block caught in this process (a process has one set of
signals, so this is per process by nature)."""


def interrupted() -> bool:
    """True once SIGINT stopped a :func:`stop_on_signals` block since the last :func:`forget`."""
    return signal.SIGINT in _received


def forget() -> None:
    """Clear what :func:`interrupted` remembers (the CLI does so before each command)."""
    _received.clear()


@contextmanager
def stop_on_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM call ``callback`` (from a helper thread); handlers restored after.

    Outside the main thread (signals cannot be caught there) the block runs without handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        _received.add(signum)
        threading.Thread(target=callback, name=f"stop-on-signal-{signum}", daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
