"""Prometheus metrics served at ``/metrics``.

From the database (any process can read them): incidents by type and state, incidents by review
status, the outbox depth by state, the cameras' last known health. From the pipeline, when it runs in
this process: its own registries (:func:`pipeline.metrics.make_registry`: frames in, analysed,
dropped, stage times incl. inference, camera state) are passed in and exported alongside.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from storage import repository as repo
from storage.db import Database
from storage.errors import StorageError
from storage.models import Incident, Verdict


class DatabaseCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily("patrol_incidents", "Incidents known to the database.",
                                      labels=["type", "state"])
        reviewed = GaugeMetricFamily("patrol_verdicts", "Operator verdicts recorded.", labels=["verdict"])
        outbox = GaugeMetricFamily("patrol_outbox_depth", "Outbox messages by state (pending = not yet "
                                   "acknowledged by the broker).", labels=["state"])
        health = GaugeMetricFamily("patrol_camera_online", "1 when the camera's last health report is online.",
                                   labels=["camera"])
        up = GaugeMetricFamily("patrol_review_database_up", "1 when the database answered this scrape.")
        try:
            with self.db.transaction() as s:
                for typ, state, n in s.execute(select(Incident.type, Incident.state, func.count())
                                               .group_by(Incident.type, Incident.state)):
                    incidents.add_metric([typ, state], float(n))
                for verdict, n in s.execute(select(Verdict.verdict, func.count()).group_by(Verdict.verdict)):
                    reviewed.add_metric([verdict], float(n))
                counts = repo.outbox_counts(s)
                for state in sorted({"pending", "sent", *counts}):
                    outbox.add_metric([state], float(counts.get(state, 0)))
                for cam, row in sorted(repo.camera_health(s).items()):
                    health.add_metric([cam], 1.0 if row.state == "online" else 0.0)
            up.add_metric([], 1.0)
        except StorageError:
            up.add_metric([], 0.0)
        yield from (incidents, reviewed, outbox, health, up)


def make_registry(db: Database) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def render(registries: Iterable[CollectorRegistry]) -> bytes:
    return b"".join(generate_latest(r) for r in registries)
