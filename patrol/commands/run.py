"""``patrol run --config FILE [--duration S] [--summary]``: run a site's cameras.

Runs until SIGINT/SIGTERM, the duration, or (files only) every source has ended; then stops the
readers, analyses what is left, flushes the event sink and, with ``--summary``, prints one block
per camera. Incident events go to stdout as JSON lines; logs go to stderr.

By default the run also publishes: every event is committed to the site's database and sent from
the outbox to the broker (events wait in the database while the broker is away), each opened
incident gets its evidence (clip remuxed from the packet ring, snapshots, manifest), and a verifier
answers the ticket service's re-check requests. ``--no-publish`` and ``--no-evidence`` turn these
off. On stop the order is: readers, analysis, evidence clips, outbox flush.

A large site runs over several worker processes (``--processes``, default: one per 16 cameras;
pipeline/shards.py): each runs the cameras of its shard, evidence included, and
this process keeps the one outbox, broker link, verifier and stdout, publishing what they send.
With ``--metrics-port P`` this process serves ``/metrics`` (every camera of every shard: the shards
send theirs up their pipes), ``/healthz`` and ``/readyz`` (patrol/readiness.py) on port ``P``.
Evidence retention runs on the site's schedule (``evidence.retention.interval_s``) while the run has
a database (patrol/services.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from camera_config.loader import load_config
from camera_config.schema import SiteConfig
from core.errors import ConfigError
from core.redact import redact_text
from patrol.readiness import RunProbes
from patrol.services import evidence_retention
from patrol.signals import stop_on_signals
from pipeline.shards import CAMERAS_PER_PROCESS, auto_processes
from rules.analyzer import camera_analyzer

log = logging.getLogger("patrol.run")

DEFAULT_SPILL_DIR = "var/data/spill"
MEMORY_EVENTS = 10_000
"""Default of ``--hold-events`` (alerts.outbox.MEMORY_EVENTS, not imported here: the CLI starts light)."""
EXIT_EVENTS_AT_RISK = 3
"""Exit status when events could be neither committed nor spilled (they are on stdout only)."""


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a site's cameras: decode, detect, analyse, emit incident events")
    p.add_argument("--config", required=True, metavar="FILE", help="site config YAML")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until signalled)")
    p.add_argument("--summary", action="store_true", help="print a per-camera summary at the end")
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON to FILE")
    p.add_argument("--fast", action="store_true",
                   help="read video files as fast as possible instead of at their own pace (replay)")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on PORT")
    p.add_argument("--camera", action="append", metavar="ID",
                   help="run only this camera of the site (repeatable); split a site across workers")
    p.add_argument("--no-publish", action="store_true",
                   help="print events only: no database, no outbox, no broker, no verifier")
    p.add_argument("--no-evidence", action="store_true", help="write no clips, snapshots or manifests")
    p.add_argument("--latest-frames", metavar="DIR", help="write each camera's latest analysed frame to "
                   "DIR/<camera>/latest.jpg every 10 s, for the camera page (patrol review serve --latest-frames DIR)")
    p.add_argument("--pipeline-id", default=socket.gethostname(), metavar="ID",
                   help="this pipeline's name on the broker (availability topic, client id)")
    p.add_argument("--spill-dir", default=DEFAULT_SPILL_DIR, metavar="DIR",
                   help="where events the database refuses are spilled (append-only JSON lines, fsynced) "
                        f"once memory is full; committed first at the next start (default {DEFAULT_SPILL_DIR})")
    p.add_argument("--hold-events", type=nonnegative_int, default=MEMORY_EVENTS, metavar="N",
                   help="events held in memory while the database refuses writes before they spill "
                        f"(default {MEMORY_EVENTS})")
    p.add_argument("--processes", type=processes_arg, default="auto", metavar="N|auto",
                   help="worker processes the cameras are split over (default auto: one per "
                        f"{CAMERAS_PER_PROCESS} cameras); see pipeline/shards.py")
    c = p.add_argument_group("many hosts (Ray; patrol/cluster.py)")
    c.add_argument("--cluster", metavar="ADDRESS",
                   help="run the cameras over the nodes of this Ray cluster (e.g. 10.0.0.2:6379, or 'auto' on "
                        "a node of it); this process keeps the outbox publisher and the verifier")
    c.add_argument("--cameras-per-group", type=nonnegative_int, default=0, metavar="N",
                   help="cameras per Ray actor (default: sized so the groups fit without the largest node)")
    c.add_argument("--group-cpus", type=float, default=1.0, metavar="CPUS", help="CPUs each group reserves")
    c.add_argument("--cluster-status", metavar="FILE", help="rewrite FILE every second with each group's node "
                                                            "and cameras (JSON)")
    p.set_defaults(func=run)


def nonnegative_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def processes_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'auto', got {text!r}")
    return n


class FanOutSink:
    """Hands every batch of events and health reports to each sink in turn (the outbox first: it is
    the durable one)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def publish(self, events: Any) -> None:
        """Every sink gets the events even when an earlier one raised (stdout still shows what the
        outbox could not keep); the first error is raised afterwards."""
        error: Exception | None = None
        for sink in self.sinks:
            try:
                sink.publish(events)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def report_health(self, reports: Any) -> None:
        for sink in self.sinks:
            sink.report_health(reports)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()


def start_verifier(config: SiteConfig, pipeline_id: str, stack: contextlib.ExitStack,
                   transports: Any = None) -> None:
    """Answer the ticket service's re-check requests from this pipeline, on its own thread
    (``transports``: the bus, an alerts.transport.TransportFactory; default MQTT from the config)."""
    from alerts.verify import VerifierService

    stop = threading.Event()
    service = VerifierService(config, client_id=f"{config.mqtt.client_id}-verifier-{pipeline_id}",
                              transports=transports)
    thread = threading.Thread(target=service.run, args=(stop,), name="verifier", daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=10)

    stack.callback(close)


def open_sink(config: SiteConfig, args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[Any, Any, Any]:
    """The run's event sink (JSON lines, behind the outbox unless ``--no-publish``), its database and
    its outbox (None without); the verifier starts with the outbox. Closed by ``stack``."""
    from pipeline.worker import JsonLinesSink

    sink: Any = JsonLinesSink()
    db = outbox = None
    if not args.no_publish:
        from alerts.mqtt import mqtt_transports
        from alerts.outbox import Outbox

        transports = mqtt_transports(config.mqtt.for_role("pipeline"))
        spill = Path(getattr(args, "spill_dir", DEFAULT_SPILL_DIR))
        outbox = stack.enter_context(Outbox.from_site(config, args.pipeline_id, transports=transports,
                                                      spill_dir=spill,
                                                      memory_events=getattr(args, "hold_events", MEMORY_EVENTS)))
        db = outbox.db
        stack.enter_context(evidence_retention(config, db))
        sink = FanOutSink(outbox.sink, sink)
        start_verifier(config, args.pipeline_id, stack, mqtt_transports(config.mqtt.for_role("verifier")))
    return sink, db, outbox


def attach_evidence(config: SiteConfig, on_written: Any, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Worker arguments that record evidence for every opened incident; drained by ``stack``."""
    from evidence.attach import build_recorder, drain, packet_listeners, with_evidence

    recorder, writer = build_recorder(config, on_written=on_written)
    stack.callback(drain, recorder, writer, [c.id for c in config.cameras])
    return {"analyzer_factory": with_evidence(camera_analyzer, recorder),
            "packet_listeners": packet_listeners(recorder)}


def wire_outputs(config: SiteConfig, args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Sink, analyzer factory and packet listeners for the worker, per the flags; closed by ``stack``."""
    kwargs: dict[str, Any] = {"analyzer_factory": camera_analyzer}
    kwargs["sink"], db, kwargs["outbox"] = open_sink(config, args, stack)
    if not args.no_evidence:
        from evidence.keep import reference_writer

        kwargs.update(attach_evidence(config, reference_writer(db) if db is not None else None, stack))
    return with_latest_frames(kwargs, getattr(args, "latest_frames", None))


def with_latest_frames(kwargs: dict[str, Any], directory: str | None) -> dict[str, Any]:
    """The camera page's latest frames (pipeline/snapshots.py) around the analyzers, when asked."""
    if directory:
        from pipeline.snapshots import SnapshotWriter, with_snapshots

        kwargs["analyzer_factory"] = with_snapshots(kwargs["analyzer_factory"], SnapshotWriter(directory))
    return kwargs


def format_summary(rows: list[dict[str, Any]], elapsed_s: float | None = None) -> str:
    """Human per-camera summary; every text field is passed through redaction once more."""
    lines = []
    if elapsed_s is not None:
        lines.append(f"ran {elapsed_s:.1f} s")
    for r in rows:
        kf = r.get("keyframe_interval_s")
        decode = "keyframes only" if r["keyframe_only"] else "every frame"
        lines.append(f"camera {r['camera_id']}: {r['state']}  ({r['source']})")
        lines.append(f"  packets {r['packets']}  decoded {r['frames_decoded']} ({decode}"
                     + (f", keyframe every {kf:.2f} s" if kf else "") + ")")
        lines.append(f"  frames in {r['frames_in']}  analysed {r['frames_analysed']}  "
                     f"dropped {r['frames_dropped']}  reconnects {r['reconnects']}")
        ms = r["stage_ms"]
        lines.append(f"  mean ms: decode/packet {ms['decode']:.2f}  infer/frame {ms['infer']:.1f}  "
                     f"analyze/frame {ms['analyze']:.1f}")
        dets = r["detections"]
        lines.append("  detections: " + (", ".join(f"{k} {v}" for k, v in dets.items()) if dets else "none"))
        if "tracks" in r:
            lines.append(f"  tracks: {r['tracks']} distinct")
        lines.append(f"  incident events: {r['events']}")
        if r.get("last_error"):
            lines.append(f"  last error: {r['last_error']}")
    return redact_text("\n".join(lines))


def select_cameras(config: SiteConfig, camera_ids: list[str] | None, path: str) -> SiteConfig:
    """The site with only ``camera_ids`` (all when None); unknown ids are a config error."""
    if not camera_ids:
        return config
    known = [c.id for c in config.cameras]
    unknown = [c for c in camera_ids if c not in known]
    if unknown:
        raise ConfigError(path, [f"{path}: --camera {u!r}: no such camera (cameras: {', '.join(known)})"
                                 for u in unknown])
    return config.model_copy(update={"cameras": tuple(c for c in config.cameras if c.id in camera_ids)})


def run(args: argparse.Namespace) -> int:
    from pipeline.worker import PatrolWorker

    config = select_cameras(load_config(args.config), args.camera, args.config)
    if getattr(args, "cluster", None):
        from patrol.cluster import RunHooks, run_cluster

        return run_cluster(config, args, RunHooks(select_cameras, attach_evidence, reconcile_at_start,
                                                  reconcile_at_stop, open_sink))
    processes = auto_processes(len(config.cameras)) if args.processes == "auto" else args.processes
    outbox = fatal = None
    probes = RunProbes(config) if args.metrics_port else None
    with contextlib.ExitStack() as stack:
        if processes > 1:
            worker, outbox, fatal = run_shards(config, args, processes, stack, probes)
        else:
            kwargs = wire_outputs(config, args, stack)
            outbox = kwargs.pop("outbox")
            if probes is not None:  # readiness watches the outbox and hears the health reports
                if outbox is not None:
                    probes.watch_outbox(outbox)
                kwargs["sink"] = FanOutSink(probes.cameras, kwargs["sink"])
            worker = PatrolWorker(config, realtime=not args.fast, **kwargs)
            if outbox is not None:
                worker.registry.register(outbox.sink.collector())
                reconcile_at_start(worker, outbox)
            run_worker(worker, args, probes, outbox)
    status = report(worker, config, args)
    return durability_status(fatal or getattr(worker, "fatal", None), outbox) or status


def reconcile_at_start(worker: Any, outbox: Any) -> None:
    """Incidents an earlier run of these cameras left open (a crash, a kill): camera_offline ones are
    closed (``pipeline_restarted``: health starts afresh); the rules' go to their camera's lifecycle,
    which resumes each one the first analysed frames confirm at its place and closes the others
    (rules/lifecycle.py ``IncidentLifecycle.resume``)."""
    from rules.lifecycle import RESTARTED, LeftOpen
    from storage import repository as repo

    outbox.sink.drain()  # what an earlier run spilled is committed before we look
    with outbox.db.transaction() as s:
        rows = list(repo.open_incidents_of(s, list(worker.cameras)))
    closing = []
    for row in rows:
        lifecycle = getattr(worker.cameras[row.camera_id].analyzer, "lifecycle", None)
        if row.type == "camera_offline" or lifecycle is None:
            closing.append(_close_row(row, RESTARTED))
        else:
            closing.extend(lifecycle.resume([LeftOpen(row.id, row.type, row.zone_id, _place(row), row.severity,
                                                      row.started_at, row.last_seq)]))
    if rows:
        log.info("%d incident(s) left open by an earlier run: %d closed, %d waiting to be resumed",
                 len(rows), len(closing), len(rows) - len(closing))
    if closing:
        worker.sink.publish(closing)


def _place(row: Any) -> tuple[float, float] | None:
    return (row.location_x, row.location_y) if row.location_x is not None and row.location_y is not None else None


def _close_row(row: Any, reason: str) -> Any:
    """A ``closed`` event for a database incident row (one the running lifecycle does not hold)."""
    import time

    from core.events import IncidentEvent

    return IncidentEvent(incident_id=row.id, seq=row.last_seq + 1, event="closed", type=row.type,
                         camera_id=row.camera_id, grid_cell=row.grid_cell, zone_id=row.zone_id, location=_place(row),
                         severity=row.severity, started_at=row.started_at, event_at=time.time(), reason=reason)


def reconcile_at_stop(worker: Any, outbox: Any = None) -> None:
    """A graceful stop (SIGINT/SIGTERM) leaves nothing open: every camera's open incidents, and
    those still waiting to be resumed, are closed with reason ``pipeline_stopped``; so are its open
    camera_offline incidents, read from the database (when it holds everything: nothing is held)."""
    import time

    from rules.lifecycle import STOPPED

    events = []
    now = time.time()
    for rt in worker.cameras.values():
        lifecycle = getattr(rt.analyzer, "lifecycle", None)
        if lifecycle is not None:
            events.extend(lifecycle.close_all(STOPPED, now))
    if outbox is not None:
        events.extend(closing_rows(outbox, list(worker.cameras), STOPPED, only_type="camera_offline"))
    if events:
        log.info("stopped: %d open incident(s) closed (%s)", len(events), STOPPED)
        try:
            worker.sink.publish(events)
            worker.sink.flush()
        except Exception:
            log.exception("stopped: could not hand over the closing events")


def closing_rows(outbox: Any, camera_ids: list[str], reason: str, only_type: str | None = None) -> list[Any]:
    """``closed`` events (``reason``) for the incidents of ``camera_ids`` open in the database (of
    ``only_type`` when given); none while the outbox holds events (the database is behind then)."""
    from storage import repository as repo
    from storage.errors import StorageError

    if outbox.sink.held_events:
        log.error("%s: %d event(s) not committed yet: open incidents left for the next start",
                  reason, outbox.sink.held_events)
        return []
    try:
        with outbox.db.transaction() as s:
            rows = [r for r in repo.open_incidents_of(s, camera_ids) if only_type is None or r.type == only_type]
    except StorageError as exc:
        log.error("%s: cannot read the open incidents: %s", reason, exc)
        return []
    return [_close_row(row, reason) for row in rows]


def durability_status(fatal: Exception | None, outbox: Any) -> int:
    """Non-zero, with one clear line, when events could be neither committed nor spilled."""
    lost = outbox.sink.lost_events if outbox is not None else 0
    if fatal is None and not lost:
        return 0
    print(f"patrol run: stopped so as not to lose events: {fatal or 'the database refused writes'}; "
          f"{lost} event(s) neither committed nor spilled (they are in this run's stdout)", file=sys.stderr)
    return EXIT_EVENTS_AT_RISK


def run_worker(worker: Any, args: argparse.Namespace, probes: RunProbes | None = None, outbox: Any = None) -> None:
    probe_server = None
    if probes is not None:
        from pipeline.probes import ProbeServer

        probes.metrics_from(worker._metrics_snapshot)
        probe_server = ProbeServer(args.metrics_port, worker.registry, probes.probes()).start()

    signalled = threading.Event()

    def stop() -> None:
        signalled.set()
        worker.request_stop()

    try:
        with stop_on_signals(stop):
            worker.run(args.duration)
    finally:
        if probe_server is not None:
            probe_server.stop()
    if signalled.is_set():
        reconcile_at_stop(worker, outbox)


def run_shards(config: SiteConfig, args: argparse.Namespace, processes: int, stack: contextlib.ExitStack,
               probes: RunProbes | None = None) -> tuple[Any, Any, Exception | None]:
    """The cameras split over ``processes`` worker processes (pipeline/shards.py); this process keeps
    the one sink (outbox, broker link, verifier, stdout), publishes what the shards send and serves
    one metrics endpoint for all of them. Returns the run, its outbox (None without) and the
    :class:`pipeline.worker.EventsAtRisk` the run stopped on, if any."""
    from pipeline.metrics import MetricsBoard, make_registry
    from pipeline.shards import ShardedRun
    from pipeline.worker import EventsAtRisk

    sink, db, _outbox = open_sink(config, args, stack)
    board = MetricsBoard(c.id for c in config.cameras)
    if probes is not None:
        from pipeline.probes import ProbeServer

        if _outbox is not None:
            probes.watch_outbox(_outbox)
        probes.metrics_from(board.cameras)
        sink = FanOutSink(probes.cameras, sink)
        registry = make_registry(board.cameras)  # every shard's cameras, and the one outbox's figures
        if _outbox is not None:
            registry.register(_outbox.sink.collector())
        stack.enter_context(ProbeServer(args.metrics_port, registry, probes.probes()))
    on_written = None
    if db is not None and not args.no_evidence:
        from evidence.keep import reference_writer

        on_written = reference_writer(db)

    at_risk: list[EventsAtRisk] = []

    def keep(hand_over: Any, payload: Any) -> None:
        try:
            hand_over(payload)
        except EventsAtRisk as exc:  # the outbox can keep no more: stop rather than lose events
            if not at_risk:
                log.critical("stopping: %s", exc)
            at_risk.append(exc)
            shards.request_stop()

    def on_message(_shard: int, kind: str, payload: Any) -> None:
        if kind == "events":
            keep(sink.publish, payload)
        elif kind == "health":
            keep(sink.report_health, payload)
        elif kind == "evidence" and on_written is not None:
            on_written(*payload)
        elif kind == "metrics":
            board.post(payload)

    options = {"realtime": not args.fast, "evidence": not args.no_evidence, "metrics_port": args.metrics_port,
               "latest_frames": getattr(args, "latest_frames", None),
               "log_level": getattr(args, "log_level", "info"), "log_json": getattr(args, "log_json", False)}
    shards = ShardedRun(config, processes, "patrol.commands.run:shard_entry", on_message, options)
    log.info("site %s: %d camera(s) over %d worker processes", config.site.name, len(config.cameras), processes)
    camera_ids = [c.id for c in config.cameras]
    if _outbox is not None:  # the shards' lifecycles are in other processes: left-open incidents are closed
        from rules.lifecycle import RESTARTED

        _outbox.sink.drain()
        keep(sink.publish, closing_rows(_outbox, camera_ids, RESTARTED))
    signalled = threading.Event()

    def stop() -> None:
        signalled.set()
        shards.request_stop()

    try:
        with stop_on_signals(stop):
            shards.run(args.duration)
    finally:
        if signalled.is_set() and _outbox is not None:  # every shard has ended: the database is complete
            from rules.lifecycle import STOPPED

            keep(sink.publish, closing_rows(_outbox, camera_ids, STOPPED))
        try:
            sink.flush()
        except Exception:
            log.exception("event sink failed to flush")
    return shards, _outbox, at_risk[0] if at_risk else None


def shard_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    """One worker process of ``run_shards``: a PatrolWorker on the shard's cameras whose events,
    health reports and evidence references go to the parent through ``outlet``."""
    from camera_config.secrets import register_config_secrets
    from patrol.logs import setup_logging
    from pipeline.shards import OutletSink
    from pipeline.worker import PatrolWorker

    setup_logging(options.get("log_level", "info"), options.get("log_json", False))
    register_config_secrets(config)  # a spawned process: the parent's redaction registry is not inherited
    with contextlib.ExitStack() as stack:
        kwargs: dict[str, Any] = {"sink": OutletSink(outlet), "analyzer_factory": camera_analyzer}
        if options.get("evidence"):
            def on_written(incident_id: str, manifest: dict[str, Any]) -> None:
                outlet.send("evidence", (incident_id, manifest))

            kwargs.update(attach_evidence(config, on_written, stack))
        with_latest_frames(kwargs, options.get("latest_frames"))
        worker = PatrolWorker(config, realtime=options.get("realtime", True), **kwargs)
        worker.load_detectors()
        if options.get("metrics_port"):  # the parent serves them, with every other shard's
            from pipeline.metrics import forward_metrics

            forward_metrics(worker._metrics_snapshot, lambda rows: outlet.send("metrics", rows), stop.wait)

        def stop_when_asked() -> None:
            stop.wait()
            worker.request_stop()

        threading.Thread(target=stop_when_asked, name="shard-stop", daemon=True).start()
        outlet.send("ready")
        worker.run()
    if options.get("metrics_port"):
        outlet.send("metrics", [m.copy() for m in worker._metrics_snapshot()])
    outlet.send("summary", worker.summary())  # after the evidence is drained: the last word


def report(worker: Any, config: SiteConfig, args: argparse.Namespace) -> int:
    rows = worker.summary()
    elapsed = (worker.stopped_at or 0) - (worker.started_at or 0)
    if args.summary:
        print(format_summary(rows, elapsed), file=sys.stderr if args.summary_json == "-" else sys.stdout)
    if args.summary_json:
        text = redact_text(json.dumps({"site": config.site.name, "elapsed_s": round(elapsed, 3),
                                       "cameras": rows}, indent=2, default=str))
        if args.summary_json == "-":
            print(text)
        else:
            Path(args.summary_json).write_text(text + "\n", encoding="utf-8")
    failed = [r for r in rows if r["state"] == "failed"]
    return 1 if failed and len(failed) == len(rows) else 0
