"""What ``patrol run``'s ``/readyz`` checks (served with ``/healthz`` and ``/metrics`` on
``--metrics-port`` by :class:`pipeline.probes.ProbeServer`).

* ``database`` — the outbox's database answers and its schema is at this code's head
  (:meth:`storage.db.Database.ping`);
* ``broker`` — the outbox's MQTT link is connected (events wait in the outbox meanwhile, but the
  node is not doing its job);
* ``outbox`` — the outbox sink commits what it is given (no events held back by a database that
  refuses writes: :meth:`alerts.outbox.OutboxSink.not_ready`);
* ``cameras`` — :class:`pipeline.probes.CameraReadiness`: each configured camera produced a frame
  recently or camera health reported it offline.

With ``--no-publish`` there is no database and no broker: only the cameras are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from camera_config.schema import SiteConfig
from core.redact import redact_text
from pipeline.metrics import CameraMetrics
from pipeline.probes import CameraReadiness, Probe, connected_probe


class RunProbes:
    """The probes of one ``patrol run``; the cameras' metrics source is bound once the worker (or
    the shards' metrics board) exists."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self._metrics: Callable[[], Iterable[CameraMetrics]] = list
        self.cameras = CameraReadiness(config.cameras, lambda: self._metrics())
        self.extra: dict[str, Probe] = {}

    def metrics_from(self, metrics: Callable[[], Iterable[CameraMetrics]]) -> None:
        self._metrics = metrics

    def watch_outbox(self, outbox: Any) -> None:
        """The outbox's database and broker link (an :class:`alerts.outbox.Outbox`)."""
        mqtt = self.config.mqtt
        self.extra["database"] = outbox.db.ping
        self.extra["broker"] = connected_probe(outbox.transport, redact_text(f"broker {mqtt.host}:{mqtt.port}"))
        not_ready = getattr(outbox.sink, "not_ready", None)
        if not_ready is not None:
            self.extra["outbox"] = not_ready

    def probes(self) -> dict[str, Probe]:
        return {**self.extra, "cameras": self.cameras}
