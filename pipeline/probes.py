"""Liveness, readiness and metrics over HTTP: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers 200 while the process serves HTTP at all (alive: do not restart it).
``/readyz`` runs every named :data:`Probe` and answers 200 ``{"ready": true, "checks": {...}}`` when
each says ok, else 503 with the same body and each failing check's reason (one line, redacted);
what the probes are is the caller's choice (``patrol run``: database, broker, cameras).
``/metrics`` is Prometheus text of one registry. Any other path is 404; methods other than GET and
HEAD are 405.

:class:`CameraReadiness` is the cameras' probe: a configured camera is fine when it produced a
frame for analysis within ``watchdog.stall_timeout_s`` plus two analysis intervals (the watchdog
would have reconnected by then), or when camera health has reported it ``offline`` (its
``camera_offline`` incident is open: the pipeline did its job; a dead camera must not take a
pipeline out of service). A camera that is still connecting, or stalled but not yet reported, is
not ready.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from camera_config.schema import Camera
from core.errors import PatrolError
from core.redact import redact_text
from pipeline.metrics import CameraMetrics

log = logging.getLogger("patrol.probes")

Probe = Callable[[], "str | None"]
"""A readiness check: None when fine, else why not (one line)."""

PATHS = ("/healthz", "/readyz", "/metrics")
READY_ANALYSIS_INTERVALS = 2.0
"""Analysis intervals a camera may go without a frame beyond its watchdog's stall timeout."""


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]
    """Check name -> ``"ok"`` or the reason it is not."""

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": self.checks}


def check_readiness(probes: Mapping[str, Probe]) -> Readiness:
    """Run every probe; one that raises counts as not ready, with its error as the reason."""
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            reason = probe()
        except Exception as exc:  # a broken probe must answer 503, not take the endpoint down
            reason = f"probe failed: {exc} ({type(exc).__name__})"
        checks[name] = "ok" if reason is None else redact_text(str(reason))
    return Readiness(all(v == "ok" for v in checks.values()), checks)


def connected_probe(link: Any, what: str) -> Probe:
    """Ready while ``link.connected`` (an :class:`alerts.transport.Transport`, say); ``what`` names
    it in the reason (e.g. ``broker 10.0.0.5:1883``)."""

    def probe() -> str | None:
        if link.connected:
            return None
        why = getattr(link, "last_error", None)  # MqttTransport says why: wrong CA, bad password, ...
        return f"{what} not connected: {why}" if why else f"{what} not connected"

    return probe


class CameraReadiness:
    """The cameras' readiness probe, fed with metrics (``cameras``) and with the health reports of
    :mod:`pipeline.health` (it is an event sink for those: put it beside the run's sink)."""

    def __init__(self, cameras: Sequence[Camera], metrics: Callable[[], Iterable[CameraMetrics]],
                 clock: Callable[[], float] = time.time) -> None:
        self._cameras = tuple(cameras)
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._health: dict[str, str] = {}

    @staticmethod
    def fresh_s(camera: Camera) -> float:
        return camera.watchdog.stall_timeout_s + READY_ANALYSIS_INTERVALS / camera.analysis_fps

    # -- event sink (health reports only) ----------------------------------------------------------

    def publish(self, events: Sequence[Any]) -> None:
        """Incident events are not this probe's business."""

    def report_health(self, reports: Sequence[Any]) -> None:
        with self._lock:
            for r in reports:
                self._health[r.camera_id] = r.state

    def flush(self) -> None:
        """Nothing is buffered."""

    # -- the probe --------------------------------------------------------------------------------

    def __call__(self) -> str | None:
        now = self._clock()
        by_id = {m.camera_id: m for m in self._metrics()}
        with self._lock:
            health = dict(self._health)
        problems = []
        for cam in self._cameras:
            if health.get(cam.id) == "offline":
                continue
            m = by_id.get(cam.id)
            last = m.last_frame_wall if m is not None else None
            state = m.state if m is not None else "unknown"
            if last is None:
                problems.append(f"camera {cam.id}: no frame yet ({state})")
            elif now - last > self.fresh_s(cam):
                problems.append(f"camera {cam.id}: no frame for {now - last:.0f} s ({state}), "
                                f"not reported offline")
        if not problems:
            return None
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return "; ".join(problems[:3]) + more


class ProbeServerError(PatrolError):
    """The metrics port cannot be opened (taken, or not ours to bind)."""


class ProbeServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on one port, served by daemon threads."""

    def __init__(self, port: int, registry: CollectorRegistry, probes: Mapping[str, Probe] | None = None,
                 host: str = "0.0.0.0") -> None:
        self.registry = registry
        self.probes: dict[str, Probe] = dict(probes or {})
        handler = type("Handler", (_Handler,), {"server_ref": self})
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ProbeServerError(f"metrics port {host}:{port}: cannot listen: {exc.strerror or exc}") from exc
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> ProbeServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                        name=f"probes-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ProbeServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server_ref: ProbeServer

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_POST(self) -> None:
        self._send(405, _json({"detail": "method not allowed", "allow": "GET, HEAD"}), "application/json", True,
                   extra={"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server_ref
        if path == "/healthz":
            self._send(200, _json({"status": "alive"}), "application/json", body)
        elif path == "/readyz":
            result = check_readiness(srv.probes)
            self._send(200 if result.ready else 503, _json(result.body()), "application/json", body)
        elif path == "/metrics":
            self._send(200, generate_latest(srv.registry), CONTENT_TYPE_LATEST, body)
        else:
            self._send(404, _json({"detail": "not found", "paths": list(PATHS)}), "application/json", body)

    def _send(self, status: int, payload: bytes, content_type: str, body: bool,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("probe request: " + format, *args)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode("utf-8")
