"""Sampling and flow between a camera's reader thread and the one inference loop.

* :class:`TimeSampler` decides which decoded frames to analyse, by stream time only: a frame is
  due when its pts reaches ``next_due``; frame counts never enter into it, so irregular frame
  rates, dropped frames and keyframe-only decoding all give the same analysis rate.
* :class:`LatestFrameSlot` is the bounded hand-off: one frame per camera. ``put`` never blocks;
  a frame not yet taken is replaced by the newer one and counted as dropped. The inference loop
  ``take``s whatever is latest, so a slow detector lowers the analysed rate instead of building
  latency.
"""

from __future__ import annotations

import threading

from core.types import Frame


class TimeSampler:
    """Emit one frame per ``interval_s`` of stream time.

    The first frame is always due. After an emitted frame at ``pts`` the next one is due at
    ``next_due + interval_s`` (keeps the average rate when frames arrive a little late, e.g. only
    keyframes), but never earlier than ``pts + interval_s / 2``. After a gap of more than one
    interval, sampling restarts from the frame that ended the gap instead of bursting to catch up.
    A pts that goes backwards by more than ``reorder_s`` (a new connection, a looped file) restarts
    the clock; a smaller step back is a frame out of order (AVI files with packed B-frames carry
    such timestamps) and is simply not due, so emitted frames always move forward.

    ``tolerance_s`` lets a frame just before its due time count (set it to half the spacing of
    the frames on offer, e.g. half the keyframe interval when only keyframes are decoded), so a
    keyframe at 3.993 s serves the 4 s slot instead of waiting for the next one.
    """

    def __init__(self, interval_s: float, tolerance_s: float = 0.0, reorder_s: float = 1.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"TimeSampler: interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.tolerance_s = tolerance_s
        self.reorder_s = reorder_s
        self.next_due: float | None = None
        self._last_pts: float | None = None

    def reset(self) -> None:
        self.next_due = None
        self._last_pts = None

    def due(self, pts: float) -> bool:
        """True if the frame at ``pts`` (seconds) should be analysed; advances the clock if so."""
        if self._last_pts is not None and pts < self._last_pts:
            if self._last_pts - pts <= self.reorder_s:
                return False  # reordered frame, not a new clock
            self.next_due = None
        self._last_pts = pts
        if self.next_due is not None and pts < self.next_due - min(self.tolerance_s, self.interval_s / 2):
            return False
        step = self.interval_s
        if self.next_due is None or pts >= self.next_due + step:
            self.next_due = pts + step  # first frame, or after a gap: restart from this frame
        else:
            self.next_due = max(self.next_due + step, pts + step / 2)
        return True


class LatestFrameSlot:
    """A one-frame mailbox for one camera. Thread-safe; ``put`` never blocks on the consumer.

    ``wakeup`` (shared by all slots of a worker) is set on every ``put`` so one inference loop can
    sleep until any camera has a frame.
    """

    def __init__(self, camera_id: str, wakeup: threading.Event | None = None) -> None:
        self.camera_id = camera_id
        self.wakeup = wakeup or threading.Event()
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self.put_count = 0
        self.taken = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.put_count += 1
        self.wakeup.set()

    def take(self) -> Frame | None:
        """The latest unconsumed frame, or None. Never waits."""
        with self._lock:
            frame, self._frame = self._frame, None
            if frame is not None:
                self.taken += 1
            return frame

    def pending(self) -> bool:
        with self._lock:
            return self._frame is not None
