"""Incident events per second through the delivery path: outbox commit -> MQTT -> ticket service.

The real pieces on this machine: a throwaway PostgreSQL (the cluster's one database: the outbox
and the tickets in it, as in a many-host deployment), a throwaway mosquitto, the pipeline's
:class:`alerts.outbox.Outbox` (commit, publisher thread, QoS 1 until PUBACK) and ``instances``
:class:`tickets.service.TicketService` consumers on the shared subscription. ``incidents``
incidents of three events each (opened, updated, closed) are committed in batches of ``batch``
(one worker's events of one analysed frame) as fast as the database takes them.

Printed (JSON): events, seconds from the first commit to the last event applied, and the rates of
each stage over the same run: committed/s, delivered/s (PUBACKed), applied/s (ticket service
transactions). The README's capacity plan divides the sustained applied/s by the events one
camera makes (see ``camera_event_rate``) to size the ticket services of a district.

    python -m benchmarks.event_rate [--incidents 600] [--instances 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.stages import _services

log = logging.getLogger("patrol.bench")


def _events(incidents: int) -> list[Any]:
    from core.events import Evidence, EvidenceBox, IncidentEvent

    out = []
    now = time.time()
    for i in range(incidents):
        base = {"incident_id": f"inc-bench-{i:06d}", "type": "illegal_parking", "camera_id": f"cam-{i % 48:02d}",
                "grid_cell": f"G-{i % 12:02d}", "zone_id": "kerb", "location": (0.5, 0.8), "started_at": now - 300,
                "evidence": Evidence(boxes=(EvidenceBox(label="car", score=0.8, xyxy=(10, 20, 200, 180), track_id=i),),
                                     durations={"dwell_s": 300.0}, frame_size=(1920, 1080))}
        for seq, kind in enumerate(("opened", "updated", "closed"), start=1):
            out.append(IncidentEvent.model_validate({**base, "seq": seq, "event": kind, "event_at": now + seq}))
    return out


def _applied(services: list[Any]) -> int:
    return sum(n for svc in services for outcome, n in list(svc.counts.items()) if outcome != "dead_letter")


def run_event_rate(incidents: int = 600, instances: int = 1, batch: int = 4,
                   timeout_s: float = 300.0) -> dict[str, Any]:
    """One burst through the real path; the figures of :mod:`benchmarks.event_rate`."""
    if shutil.which("mosquitto") is None:
        return {"error": "mosquitto not installed (scripts/install_system_deps.sh)"}
    services_mod = _services()
    if not (services_mod.PG_BIN / "postgres").exists():
        return {"error": f"PostgreSQL binaries not found in {services_mod.PG_BIN}"}
    from alerts.mqtt import MqttTransport
    from alerts.outbox import Outbox
    from alerts.transport import Endpoint
    from camera_config.schema import MqttConfig, TicketsConfig
    from core.topics import Topics
    from storage.db import open_database
    from tickets.service import TicketService

    events = _events(incidents)
    with services_mod.Postgres() as pg, services_mod.Mosquitto() as broker:
        mqtt = MqttConfig(host="127.0.0.1", port=broker.port, client_id="bench")
        db = open_database(pg.url)
        ticket_dbs = [open_database(pg.url) for _ in range(instances)]
        consumers = [TicketService(tdb, mqtt, TicketsConfig(), client_id=f"bench-tickets-{k}") for k, tdb in
                     enumerate(ticket_dbs)]
        stops = [threading.Event() for _ in consumers]
        threads = [threading.Thread(target=svc.run, args=(stop,), daemon=True)
                   for svc, stop in zip(consumers, stops, strict=True)]
        for t in threads:
            t.start()
        for svc in consumers:
            if not svc.transport.wait_connected(15):
                return {"error": "ticket service could not subscribe to the local mosquitto"}
        transport = MqttTransport(mqtt, Endpoint("bench-pipeline", availability=Topics().availability("bench"),
                                                  persistent=True))
        outbox = Outbox(db, transport, mqtt.topic_prefix).start()
        if not transport.wait_connected(15):
            return {"error": "outbox could not connect to the local mosquitto"}
        try:
            t0 = time.perf_counter()
            for i in range(0, len(events), batch):
                outbox.sink.publish(events[i:i + batch])
            committed_s = time.perf_counter() - t0
            deadline = time.monotonic() + timeout_s
            delivered_s = None
            while time.monotonic() < deadline:
                if delivered_s is None and outbox.publisher.sent >= len(events):
                    delivered_s = time.perf_counter() - t0
                if _applied(consumers) >= len(events):
                    break
                time.sleep(0.01)
            applied_s = time.perf_counter() - t0
            applied = _applied(consumers)
        finally:
            outbox.close()
            for stop in stops:
                stop.set()
            for t in threads:
                t.join(15)
            for tdb in ticket_dbs:
                tdb.dispose()
    n = len(events)
    return {
        "events": n, "incidents": incidents, "ticket_services": instances, "batch": batch,
        "applied": applied, "complete": applied >= n,
        "committed_per_s": round(n / committed_s, 1),
        "delivered_per_s": round(n / delivered_s, 1) if delivered_s else None,
        "applied_per_s": round(applied / applied_s, 1),
        "seconds": round(applied_s, 2),
        "database": "postgresql", "broker": "mosquitto (local, QoS 1)",
    }


def camera_event_rate(incidents_per_camera_hour: float = 6.0, events_per_incident: float = 3.0) -> float:
    """Events per second one camera makes at a busy kerb: a handful of incidents an hour, each
    opened, updated about once and closed (health reports are retained state, a few per day)."""
    return incidents_per_camera_hour * events_per_incident / 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=600, help="incidents in the burst (3 events each)")
    parser.add_argument("--instances", type=int, default=1, help="ticket services on the shared subscription")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run_event_rate(args.incidents, args.instances)
    if "applied_per_s" in result:
        per_camera = camera_event_rate()
        result["cameras_one_ticket_service_carries"] = int(result["applied_per_s"] / per_camera)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
