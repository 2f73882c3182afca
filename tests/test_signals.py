"""SIGTERM/SIGINT stop the process even when they land while the main thread holds the stop event's lock."""

from __future__ import annotations

import os
import signal
import threading
import time

from patrol.signals import stop_on_signals


def test_signal_landing_while_the_event_lock_is_held_does_not_deadlock() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop.set):
        with stop._cond:  # the main thread holds the event's lock, as Event.wait/clear do for a moment
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, on this thread: it must not wait for the lock
            assert not stop.is_set()
        assert stop.wait(5), "the stop callback never ran"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_no_handlers_outside_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: list[object] = []

    def body() -> None:
        with stop_on_signals(lambda: None):
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join(5)
    assert seen == [before]
