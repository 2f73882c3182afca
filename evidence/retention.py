"""Evidence retention: by age, then by total size, oldest first — never the evidence of an open ticket.

Which incidents are protected is asked in one batch from a :data:`KeepCheck` (normally the storage
repository: incident or ticket still open, or not yet reviewed), so this module needs no database.
"""

from __future__ import annotations

import logging
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
