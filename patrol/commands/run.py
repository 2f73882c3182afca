"""``patrol run --config FILE [--duration S] [--summary]``: run a site's cameras.

Runs until SIGINT/SIGTERM, the duration, or (files only) every source has ended; then stops the
readers, analyses what is left, flushes the event sink and, with ``--summary``, prints one block
per camera. Incident events go to stdout as JSON lines; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from camera_config.loader import load_config
from camera_config.schema import SiteConfig
from patrol.errors import ConfigError
from patrol.redact import redact_text


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
    p.set_defaults(func=run)


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
    worker = PatrolWorker(config, realtime=not args.fast)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=worker.registry)

    def on_signal(signum: int, _frame: Any) -> None:
        worker.request_stop()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        worker.run(args.duration)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
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
