"""Evidence retention: by age, then by total size, oldest first — never the evidence of an open ticket.

Which incidents are protected is asked in one batch from a :data:`KeepCheck` (normally the storage
repository: incident or ticket still open, or not yet reviewed), so this module needs no database.
:class:`RetentionScheduler` runs it on a schedule inside the long-running services.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evidence.store import EvidenceEntry, EvidenceStore

log = logging.getLogger(__name__)

KeepCheck = Callable[[Sequence[str]], set[str]]
"""Given incident ids, return those whose evidence must be kept (their ticket is open)."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    max_age_days: float
    max_total_mb: float

    def __post_init__(self) -> None:
        if self.max_age_days <= 0 or self.max_total_mb <= 0:
            raise ValueError(f"RetentionPolicy: max_age_days and max_total_mb must be > 0, got "
                             f"{self.max_age_days} and {self.max_total_mb}")


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    delete: tuple[EvidenceEntry, ...]
    kept_open: tuple[str, ...]
    """Ids that would have gone by age or size but are protected by an open ticket."""
    total_bytes_after: int


def plan_retention(entries: Sequence[EvidenceEntry], policy: RetentionPolicy, now: float,
                   keep: KeepCheck) -> RetentionPlan:
    """Choose what to delete: past max age first, then the oldest until under max total size."""
    ordered = sorted(entries, key=lambda e: (e.created, e.incident_id))
    protected = keep([e.incident_id for e in ordered])
    total = sum(e.size_bytes for e in ordered)
    limit = policy.max_total_mb * 1024 * 1024
    cutoff = now - policy.max_age_days * 86_400
    delete: list[EvidenceEntry] = []
    kept_open: list[str] = []
    for entry in ordered:
        too_old = entry.created < cutoff
        too_big = total > limit
        if not (too_old or too_big):
            continue
        if entry.incident_id in protected:
            kept_open.append(entry.incident_id)
            continue
        delete.append(entry)
        total -= entry.size_bytes
    return RetentionPlan(tuple(delete), tuple(kept_open), total)


def apply_retention(store: EvidenceStore, policy: RetentionPolicy, now: float,
                    keep: KeepCheck) -> RetentionPlan:
    plan = plan_retention(store.entries(), policy, now, keep)
    for entry in plan.delete:
        store.delete(entry.incident_id)
        log.info("evidence deleted by retention", extra={"incident": entry.incident_id,
                                                         "bytes": entry.size_bytes})
    if plan.total_bytes_after > policy.max_total_mb * 1024 * 1024:
        log.warning("evidence store above its size limit: the rest belongs to open tickets",
                    extra={"bytes": plan.total_bytes_after, "open": len(plan.kept_open)})
    return plan


class RetentionScheduler:
    """Runs :func:`apply_retention` every ``interval_s`` on a daemon thread, inside a long-running
    service (``patrol run``, the ticket service, the review page), so no outside cron is needed.

    The first run is one interval after :meth:`start` (a service that restarts in a loop does not
    sweep the store each time). A failing run (the database away, a folder that will not go) is
    logged and the next one comes on schedule; the thread never dies of it. ``clock`` gives the
    "now" retention measures age against (a fake clock in tests); the wait between runs is real.
    Several services sweeping one store is harmless: a folder already deleted is skipped.
    """

    def __init__(self, store: EvidenceStore, policy: RetentionPolicy, keep: KeepCheck, interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        if not interval_s > 0:
            raise ValueError(f"RetentionScheduler: interval_s must be > 0, got {interval_s}")
        self.store = store
        self.policy = policy
        self.keep = keep
        self.interval_s = interval_s
        self.clock = clock
        self.runs = 0
        self.failures = 0
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> RetentionPlan | None:
        """One retention pass now; None (logged, counted) when it failed."""
        try:
            plan = apply_retention(self.store, self.policy, self.clock(), self.keep)
        except Exception:
            self.failures += 1
            log.exception("scheduled evidence retention failed; next run in %.0f s", self.interval_s)
            return None
        finally:
            self.runs += 1
        self.deleted += len(plan.delete)
        return plan

    def start(self) -> RetentionScheduler:
        self._thread = threading.Thread(target=self._loop, name="evidence-retention", daemon=True)
        self._thread.start()
        log.info("evidence retention every %.0f s (max age %g days, max %g MB)", self.interval_s,
                 self.policy.max_age_days, self.policy.max_total_mb)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def __enter__(self) -> RetentionScheduler:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
