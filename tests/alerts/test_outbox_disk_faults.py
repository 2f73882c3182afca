"""Two more real ways a SQLite database refuses writes mid-run (issue 14 item 2), beside the immutable
file and the read-only PostgreSQL of test_outbox_durability.py: the disk fills up, and another process
holds the database's write lock past the busy timeout. Both times every event is kept, in order, and
committed exactly once when the database takes writes again.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alerts.outbox import OutboxSink
from storage.db import Database, open_database
from storage.models import OutboxRow

pytestmark = pytest.mark.integration


def _committed(db: Database) -> list[tuple[str, int | None]]:
    with db.transaction() as s:
        return [(r.incident_id, r.seq) for r in s.scalars(sa.select(OutboxRow).order_by(OutboxRow.id))
                if r.incident_id is not None]


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own (root only), unmounted at the end."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk says it is full."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass


def test_a_disk_that_fills_up_mid_run_loses_no_event(small_disk: Path, tmp_path: Path,
                                                      make_incident_event: Any) -> None:
    db = open_database(f"sqlite:///{small_disk / 'patrol.db'}")
    sink = OutboxSink(db, spill_path=tmp_path / "spill" / "outbox.jsonl", memory_events=10, retry_s=(0.1, 0.5))
    produced = [make_incident_event(f"inc-full-{i:04d}", 1, evidence={"links": {"clip": "x" * 500}})
                for i in range(60)]
    filler = small_disk / "filler"
    try:
        sink.publish(produced[:5])
        _fill(filler)
        for ev in produced[5:45]:
            sink.publish([ev])
        assert _wait(lambda: sink.held_events > 0, 10), "a full disk refuses the commits"
        held = sink.held_events
        print(f"disk full: {held} of 40 event(s) held (memory, then the spill file on another disk)")
        assert sink.not_ready() is not None and sink.lost_events == 0
        filler.unlink()
        sink.publish(produced[45:])
        assert _wait(lambda: sink.held_events == 0, 30), sink.not_ready()
        assert _committed(db) == [(e.incident_id, e.seq) for e in produced], "all committed once, in order"
    finally:
        sink.close()
        db.dispose()


BUSY_TIMEOUT_S = 3.0
"""The lock test's busy timeout: storage/db.py waits 30 s for a lock; what the sink does once the wait
runs out ('database is locked') is the same after 3 s, and the test waits a tenth as long."""


def _busy_timeout(db: Database, seconds: float) -> None:
    """Every connection of ``db`` from now on waits ``seconds`` for a lock (set after storage's own pragmas)."""

    @sa.event.listens_for(db.engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")

    db.engine.dispose()  # the migration's pooled connections were made with the 30 s wait


def test_a_write_lock_held_past_the_busy_timeout_loses_no_event(tmp_path: Path, make_incident_event: Any) -> None:
    path = tmp_path / "patrol.db"
    db = open_database(f"sqlite:///{path}")
    _busy_timeout(db, BUSY_TIMEOUT_S)
    sink = OutboxSink(db, spill_path=tmp_path / "spill" / "outbox.jsonl", memory_events=5, retry_s=(0.1, 0.5))
    produced = [make_incident_event(f"inc-lock-{i:04d}", 1) for i in range(20)]
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        sink.publish(produced[:3])
        locker.execute("BEGIN EXCLUSIVE")  # another process's long write transaction
        hold_s = BUSY_TIMEOUT_S + 5.0  # past the busy timeout, by as much as the 35 s hold past storage's 30 s
        release = threading.Timer(hold_s, lambda: locker.execute("COMMIT"))
        release.start()
        t0 = time.monotonic()
        for ev in produced[3:15]:
            sink.publish([ev])  # the first waits out the busy timeout once, the rest are only queued
        if release.is_alive():  # still locked: what could not be committed is held, none dropped
            assert sink.held_events > 0 and sink.not_ready() is not None
            print(f"lock held: {sink.held_events} event(s) held after {time.monotonic() - t0:.1f} s")
        release.join()
        sink.publish(produced[15:])
        assert _wait(lambda: sink.held_events == 0, 30), sink.not_ready()
        assert _committed(db) == [(e.incident_id, e.seq) for e in produced], "all committed once, in order"
        assert sink.lost_events == 0
    finally:
        locker.close()
        sink.close()
        db.dispose()
