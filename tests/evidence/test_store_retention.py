"""The store refuses every path that leaves it; retention deletes oldest closed evidence, never open."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from evidence.errors import EvidenceError, UnsafePathError
from evidence.retention import RetentionPolicy, apply_retention, plan_retention
from evidence.store import EvidenceEntry, EvidenceStore

DAY = 86_400.0
NOW = 1_800_000_000.0


def _incident(store: EvidenceStore, incident_id: str, opened_at: float, size: int) -> None:
    folder = store.incident_dir(incident_id)
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\0" * size)
    (folder / "manifest.json").write_text(json.dumps({"times": {"opened_at": opened_at}}))


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    s = EvidenceStore(tmp_path / "evidence")
    _incident(s, "inc-00000001", NOW - 3 * DAY, 1000)
    (tmp_path / "secret.txt").write_text("outside the store")
    return s


@pytest.mark.parametrize("bad", [
    "../secret.txt", "inc-00000001/../../secret.txt", "/etc/passwd", "inc-00000001/./clip.mp4",
    "..", ".", "", "inc-00000001//clip.mp4", "inc-00000001\\..\\..\\secret.txt", "%2e%2e/secret.txt",
    "inc-00000001/\x00clip.mp4",
])
def test_paths_that_leave_the_store_are_refused(store: EvidenceStore, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        store.resolve(bad)


def test_symlink_out_of_the_store_is_refused(store: EvidenceStore, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", store.root / "inc-00000001" / "link.jpg")
    with pytest.raises(UnsafePathError):
        store.resolve("inc-00000001/link.jpg")


def test_a_file_inside_resolves_and_a_missing_one_is_not_found(store: EvidenceStore) -> None:
    assert store.resolve("inc-00000001/clip.mp4") == store.root / "inc-00000001" / "clip.mp4"
    with pytest.raises(EvidenceError, match="no such file"):
        store.resolve("inc-00000001/nope.mp4")


@pytest.mark.parametrize("bad_id", ["../../etc", "short", "a/b/cdefghij", "..........", ""])
def test_unsafe_incident_ids_never_become_folders(store: EvidenceStore, bad_id: str) -> None:
    with pytest.raises(EvidenceError, match="not a safe folder name"):
        store.incident_dir(bad_id)


def _entries(*rows: tuple[str, float, int]) -> list[EvidenceEntry]:
    return [EvidenceEntry(i, Path(i), NOW - age * DAY, mb * 1024 * 1024) for i, age, mb in rows]


def _keep(ids: set[str]):
    def keep(candidates: Sequence[str]) -> set[str]:
        return ids & set(candidates)
    return keep


# (entries (id, age days, MB), open ids, policy (days, MB), expected deleted ids, in order)
CASES = [
    pytest.param([("a-closed-old", 40, 1), ("b-closed-new", 1, 1)], set(), (30, 100), ["a-closed-old"],
                 id="by-age"),
    pytest.param([("a-open-old01", 40, 1), ("b-closed-new", 1, 1)], {"a-open-old01"}, (30, 100), [],
                 id="open-ticket-survives-age"),
    pytest.param([("c-closed-mid", 5, 4), ("a-closed-old", 9, 4), ("b-closed-new", 1, 4)], set(), (30, 9),
                 ["a-closed-old"], id="size-oldest-first"),
    pytest.param([("a-open-old01", 9, 4), ("c-closed-mid", 5, 4), ("b-closed-new", 1, 4)], {"a-open-old01"},
                 (30, 5), ["c-closed-mid", "b-closed-new"], id="size-skips-open"),
    pytest.param([("a-open-old01", 9, 40), ("b-open-new01", 1, 40)], {"a-open-old01", "b-open-new01"},
                 (1, 5), [], id="all-open-nothing-goes"),
]


@pytest.mark.parametrize(("rows", "open_ids", "policy", "expected"), CASES)
def test_retention_plan(rows, open_ids, policy, expected) -> None:
    plan = plan_retention(_entries(*rows), RetentionPolicy(*policy), NOW, _keep(open_ids))
    assert [e.incident_id for e in plan.delete] == expected
    assert not set(expected) & open_ids


def test_apply_retention_deletes_folders_oldest_closed_first(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev")
    _incident(store, "inc-old-closed", NOW - 20 * DAY, 600_000)
    _incident(store, "inc-older-open", NOW - 25 * DAY, 600_000)
    _incident(store, "inc-mid-closed", NOW - 10 * DAY, 600_000)
    _incident(store, "inc-new-closed", NOW - 1 * DAY, 600_000)
    plan = apply_retention(store, RetentionPolicy(max_age_days=30, max_total_mb=1.5), NOW,
                           _keep({"inc-older-open"}))
    assert [e.incident_id for e in plan.delete] == ["inc-old-closed", "inc-mid-closed"]
    left = sorted(p.name for p in store.root.iterdir())
    assert left == ["inc-new-closed", "inc-older-open"]
