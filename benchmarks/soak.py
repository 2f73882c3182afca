"""Soak benchmark (issue 14 acceptance 2): nothing lost, nothing duplicated, nothing left open.

Real components, each its own process: the project's GStreamer RTSP server (``scripts/rtsp_server.py``,
clips looped gaplessly) serving 3 cameras of the shared street clip, a mosquitto broker with
persistence (``scripts/services.py``), ``patrol run`` and ``patrol tickets serve`` as subprocesses, a
SQLite file per service (``--postgres``: one throwaway PostgreSQL server, a database per service).

Each camera watches the east kerb lane of ``vehicle_counting_input_video`` (labels/
vehicle_counting_kerb.yaml): three cars stand there from the first frame and pull away at 21-26 s,
so with the loop (37.7 s) parking incidents open and close over and over.

Over the run (10 minutes by default) the faults come on a schedule (fractions of the run): the broker
restarted twice, the ticket service SIGKILLed twice (and restarted), ``patrol run`` SIGKILLed once and
restarted, the pipeline's database unwritable for ``--freeze-s`` (60 s; SQLite: ``chattr +i`` on the
file and its -wal, as tests/alerts/test_outbox_durability.py does; PostgreSQL: the server stopped). At
the end ``patrol run`` is stopped with SIGTERM (it closes its open incidents), the ticket service is
given time to catch up, and the figures are printed (and written with ``--json OUT``):

* produced: events on ``patrol run``'s stdout over all its runs, deduplicated by (incident id, seq)
* committed / delivered: the pipeline's outbox rows / those marked sent (PUBACK seen)
* ticketed: inbox rows the ticket service applied; lost = produced events never applied (must be 0)
* duplicate_tickets: tickets sharing an incident id (0); open_incidents: left open after the stop (0)

Exit status 1 when lost, duplicate tickets or open incidents is not 0 (or a fault could not be made).

    python -m benchmarks.soak [--minutes 10] [--json OUT] [--postgres] [--freeze-s 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import sqlalchemy as sa
import yaml

from benchmarks.stages import _services

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ("kerb-1", "kerb-2", "kerb-3")
KERB_EAST = {"id": "kerb-east", "type": "no_parking",
             "polygon": [[0.46, 0.33], [0.58, 0.33], [0.72, 0.44], [0.70, 0.50], [0.55, 0.49], [0.46, 0.41]],
             "limit_s": 8, "close_grace_s": 5, "cooldown_s": 5}
PIPELINE_ID = "soak-1"
TICKETS_CLIENT = "tickets-soak"
# (fraction of the run, fault); the database freeze lasts --freeze-s from its start
SCHEDULE: tuple[tuple[float, str], ...] = (
    (0.10, "broker_restart"), (0.20, "tickets_kill"), (0.33, "broker_restart"),
    (0.45, "run_kill"), (0.58, "tickets_kill"), (0.70, "db_unwritable"),
)
FREEZE_NOTES = ("database made", "database server stopped", "database writable", "database server started")


def _rtsp_module() -> ModuleType:
    path = REPO / "scripts" / "rtsp_server.py"
    spec = importlib.util.spec_from_file_location("patrol_soak_rtsp_server", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Timeline:
    """Fault timeline: seconds since the soak started, what happened."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def note(self, what: str, **detail: Any) -> None:
        row = {"t_s": round(time.monotonic() - self.t0, 1), "utc": time.strftime("%H:%M:%S", time.gmtime()),
               "what": what, **detail}
        self.rows.append(row)
        print(f"[soak {row['t_s']:7.1f} s] {what} {json.dumps(detail) if detail else ''}", file=sys.stderr,
              flush=True)


class PatrolRun:
    """One ``patrol run`` subprocess; its stdout JSON events are collected, its stderr goes to a log."""

    def __init__(self, cfg: Path, spill: Path, log: Path, events: list[dict[str, Any]],
                 clock: Callable[[], float]) -> None:
        self.clock = clock
        self.log = log.open("a", encoding="utf-8")
        self.streaming = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "patrol", "run", "--config", str(cfg), "--pipeline-id", PIPELINE_ID,
             "--no-evidence", "--spill-dir", str(spill)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = events
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream: IO[str], out: bool) -> None:
        for line in stream:
            if out and line.startswith("{"):
                event = json.loads(line)
                event["_seen_s"] = round(self.clock(), 1)  # when it reached stdout, on the timeline's clock
                self.events.append(event)
            elif not out:
                if "connecting -> streaming" in line:
                    self.streaming += 1
                self.log.write(line)
                self.log.flush()

    def end(self, sig: int, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(30)
        for t in self.threads:
            t.join(10)
        return rc


class TicketsServe:
    def __init__(self, cfg: Path, db_url: str, log: Path) -> None:
        self.cfg, self.db_url, self.log = cfg, db_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "patrol", "--log-level", "info", "tickets", "serve", "--config",
                 str(self.cfg), "--db", self.db_url, "--client-id", TICKETS_CLIENT],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_online(port: int, topic: str, timeout: float) -> bool:
    """True once the retained availability message of ``topic`` says ``online``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    online = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"soak-watch-{time.monotonic_ns()}")
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_message = lambda _c, _u, m: online.set() if m.payload == b"online" else None
    client.reconnect_delay_set(1, 2)
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    try:
        return online.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *[str(p) for p in paths if p.exists()]], check=True, capture_output=True)


def _keys(events: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(e["incident_id"], int(e["seq"])) for e in events if "incident_id" in e and "seq" in e}


def _applied(tickets_url: str) -> set[tuple[str, int]]:
    engine = sa.create_engine(tickets_url)
    try:
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT incident_id, seq FROM inbox WHERE applied_at IS NOT NULL")).all()
        return {(str(i), int(s)) for i, s in rows}
    except sa.exc.OperationalError:
        return set()
    finally:
        engine.dispose()


def figures(events: list[dict[str, Any]], pipeline_url: str, tickets_url: str) -> dict[str, Any]:
    produced = _keys(events)
    pe, te = sa.create_engine(pipeline_url), sa.create_engine(tickets_url)
    try:
        with pe.connect() as c:
            committed = {(str(i), int(s)): st for i, s, st in c.execute(sa.text(
                "SELECT incident_id, seq, state FROM outbox WHERE incident_id IS NOT NULL")).all()}
            in_db = {(str(i), int(s)) for i, s in c.execute(sa.text(
                "SELECT incident_id, seq FROM incident_events")).all()}
            open_rows = [str(r[0]) for r in c.execute(sa.text(
                "SELECT id FROM incidents WHERE state = 'open'")).all()]
        with te.connect() as c:
            applied = {(str(i), int(s)) for i, s in c.execute(sa.text(
                "SELECT incident_id, seq FROM inbox WHERE applied_at IS NOT NULL")).all()}
            dup = c.execute(sa.text("SELECT incident_id, COUNT(*) FROM tickets GROUP BY incident_id "
                                    "HAVING COUNT(*) > 1")).all()
            tickets = c.execute(sa.text("SELECT COUNT(*) FROM tickets")).scalar_one()
            dead = c.execute(sa.text("SELECT COUNT(*) FROM dead_letters")).scalar_one()
    finally:
        pe.dispose()
        te.dispose()
    lost = sorted(produced - applied)
    return {
        "produced": len(produced),
        "incidents": len({i for i, _ in produced}),
        "by_event": {k: sum(1 for e in {(e["incident_id"], e["seq"]): e for e in events}.values()
                            if e.get("event") == k) for k in ("opened", "updated", "closed")},
        "committed": len(committed),
        "incident_events_in_db": len(in_db),
        "delivered": sum(1 for st in committed.values() if st == "sent"),
        "ticketed": len(applied & produced),
        "applied_not_produced": len(applied - produced),
        "lost": len(lost),
        "lost_keys": [list(k) for k in lost[:50]],
        "not_committed": [list(k) for k in sorted(produced - set(committed))[:50]],
        "tickets": tickets,
        "duplicate_tickets": len(dup),
        "duplicate_ticket_incidents": [str(r[0]) for r in dup],
        "open_incidents": len(open_rows),
        "open_incident_ids": open_rows,
        "dead_letters": dead,
    }


def _site(work: Path, db_url: str, broker_port: int, urls: dict[str, str]) -> Path:
    site = {
        "site": {"name": "soak", "timezone": "UTC"},
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "cameras": [{"id": cam, "url": urls[cam], "grid_cell": f"SOAK-0{n + 1}", "analysis_fps": 2,
                     "detector": {"model": "yolox_nano_416", "default_score": 0.3},
                     "zones": [KERB_EAST]} for n, cam in enumerate(CAMERAS)],
    }
    cfg = work / "site.yaml"
    cfg.write_text(yaml.safe_dump(site), encoding="utf-8")
    return cfg


def soak(minutes: float, freeze_s: float, postgres: bool, work: Path) -> dict[str, Any]:
    from core.assets import AssetCache, data_assets
    from core.topics import Topics
    from storage.db import open_database

    clip = AssetCache().fetch(data_assets()["vehicle_counting_input_video"])
    services = _services()
    duration = minutes * 60.0
    timeline = Timeline()
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    rtsp = _rtsp_module().RtspServerProcess({cam: clip for cam in CAMERAS}, log_path=work / "rtsp.log")
    broker = services.Mosquitto()
    pg = services.Postgres() if postgres else None
    tickets: TicketsServe | None = None
    run: PatrolRun | None = None
    frozen: list[Path] = []
    try:
        rtsp.start()
        broker.start()
        if pg is not None:
            pg.start()
            subprocess.run(pg._cmd(str(pg.bin / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user,
                                   "tickets"), check=True, capture_output=True)
            pipeline_url, tickets_url = pg.url, pg.url.rsplit("/", 1)[0] + "/tickets"
        else:
            pipeline_url = f"sqlite:///{work / 'pipeline.db'}"
            tickets_url = f"sqlite:///{work / 'tickets.db'}"
        for url in (pipeline_url, tickets_url):  # migrate once, before the services start
            open_database(url).dispose()
        cfg = _site(work, pipeline_url, broker.port, {cam: rtsp.url(cam) for cam in CAMERAS})
        timeline.note("started", rtsp_port=rtsp.port, broker_port=broker.port, database=pipeline_url.split("@")[-1],
                      tickets_database=tickets_url.split("@")[-1], minutes=minutes)
        tickets = TicketsServe(cfg, tickets_url, work / "tickets.log")
        tickets.start()
        if not wait_online(broker.port, Topics().availability(TICKETS_CLIENT), 90):
            raise RuntimeError(f"the ticket service never came online; see {tickets.log}")
        spill = work / "spill"
        spill.mkdir(exist_ok=True)
        run = PatrolRun(cfg, spill, work / "run.log", events, timeline.elapsed)
        first = run
        if not _wait(lambda: first.streaming >= len(CAMERAS) or first.proc.poll() is not None, 180):
            raise RuntimeError("patrol run: the cameras never streamed; see run.log")
        timeline.note("cameras streaming")
        start = time.monotonic()
        for frac, fault in SCHEDULE:
            at = start + frac * duration
            while time.monotonic() < at:
                time.sleep(min(1.0, max(0.0, at - time.monotonic())))
            if run.proc.poll() is not None:
                problems.append(f"patrol run exited with {run.proc.returncode} before {fault}")
                timeline.note("patrol run exited by itself", rc=run.proc.returncode)
                run = PatrolRun(cfg, spill, work / "run.log", events, timeline.elapsed)
            if fault == "broker_restart":
                broker.stop()
                timeline.note("broker stopped")
                time.sleep(5)
                broker.start()
                timeline.note("broker started")
            elif fault == "tickets_kill":
                tickets.kill()
                timeline.note("ticket service SIGKILLed", rc=tickets.proc.returncode if tickets.proc else None)
                time.sleep(3)
                tickets.start()
                timeline.note("ticket service restarted")
            elif fault == "run_kill":
                rc = run.end(signal.SIGKILL)
                timeline.note("patrol run SIGKILLed", rc=rc, events_so_far=len(_keys(events)))
                time.sleep(2)
                run = PatrolRun(cfg, spill, work / "run.log", events, timeline.elapsed)
                timeline.note("patrol run restarted")
            elif fault == "db_unwritable":
                if pg is not None:
                    pg.stop()
                    timeline.note("database server stopped")
                    time.sleep(freeze_s)
                    pg.start()
                    timeline.note("database server started", down_s=freeze_s)
                else:
                    db_path = work / "pipeline.db"
                    frozen = [db_path, db_path.with_name(db_path.name + "-wal")]  # never -shm: mmapped
                    _chattr("+i", frozen)
                    timeline.note("database made immutable (chattr +i)", files=[p.name for p in frozen if p.exists()])
                    time.sleep(freeze_s)
                    _chattr("-i", frozen)
                    frozen = []
                    timeline.note("database writable again", frozen_s=freeze_s)
        while time.monotonic() < start + duration:
            time.sleep(1.0)
        if run.proc.poll() is not None:
            problems.append(f"patrol run exited with {run.proc.returncode} before the final stop")
        rc = run.end(signal.SIGTERM)
        timeline.note("patrol run stopped (SIGTERM)", rc=rc)
        if rc != 0:
            problems.append(f"patrol run's final SIGTERM stop exited with {rc}")
        produced = _keys(events)
        caught_up = _wait(lambda: produced <= _applied(tickets_url), 180, 1.0)
        timeline.note("ticket service caught up" if caught_up else "ticket service did not catch up in 180 s")
        result = figures(events, pipeline_url, tickets_url)
        window = [r["t_s"] for r in timeline.rows if r["what"].startswith(FREEZE_NOTES)]
        if len(window) == 2:  # events the pipeline produced while its database refused writes
            result["produced_while_unwritable"] = len(_keys([e for e in events
                                                            if window[0] <= e["_seen_s"] <= window[1]]))
    finally:
        if frozen:
            _chattr("-i", frozen)
        if run is not None:
            run.end(signal.SIGKILL, 10)
        if tickets is not None:
            tickets.stop()
        broker.close()
        rtsp.kill()
        if pg is not None:
            pg.close()
    result["problems"] = problems
    result["timeline"] = timeline.rows
    result["logs"] = str(work)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    p.add_argument("--freeze-s", type=float, default=60.0, help="seconds the database is unwritable (default 60)")
    p.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL instead of SQLite files")
    p.add_argument("--json", type=Path, help="write the figures and the timeline as JSON here")
    p.add_argument("--keep", type=Path, help="work folder to keep (logs, databases); default a temp folder")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.freeze_s < 0:
        p.error("--minutes must be > 0 and --freeze-s >= 0")
    if args.freeze_s >= 0.25 * args.minutes * 60:
        p.error(f"--freeze-s {args.freeze_s} does not fit in a {args.minutes}-minute schedule (< a quarter)")
    if not args.postgres and shutil.which("chattr") is None:
        p.error("chattr (e2fsprogs) is needed to make the SQLite database unwritable")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="patrol-soak-"))
    result = soak(args.minutes, args.freeze_s, args.postgres, work)
    summary = {k: result[k] for k in ("produced", "incidents", "committed", "delivered", "ticketed", "lost",
                                      "duplicate_tickets", "open_incidents", "tickets", "dead_letters")}
    summary["produced_while_unwritable"] = result.get("produced_while_unwritable")
    print(json.dumps(summary))
    for row in result["timeline"]:
        print(f"  {row['t_s']:7.1f} s  {row['utc']}  {row['what']}")
    for line in result["problems"]:
        print(f"problem: {line}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    bad = result["lost"] or result["duplicate_tickets"] or result["open_incidents"] or result["problems"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
