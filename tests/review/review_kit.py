"""Helpers shared by the review tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.events import Evidence, EvidenceBox, IncidentEvent

PASSWORD = "correct horse battery"


def incident(incident_id: str, camera: str = "cam-a", cell: str = "G-01", type_: str = "illegal_parking",
             started: float = 1_790_000_000.0) -> IncidentEvent:
    return IncidentEvent(incident_id=incident_id, seq=1, event="opened", type=type_, camera_id=camera,
                         grid_cell=cell, zone_id="kerb", started_at=started, event_at=started + 30,
                         evidence=Evidence(boxes=(EvidenceBox(label="car", score=0.8, xyxy=(1, 2, 3, 4)),)))


def login(client: TestClient, user: str = "alice", password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": "/queue"})
    assert r.status_code == 303, r.text
    me = client.get("/api/me")
    assert me.status_code == 200
    return str(me.json()["csrf_token"])


def routes_of(app: FastAPI) -> list[tuple[str, set[str], Any]]:
    """(path, methods, route) of every route the app serves, routers included: FastAPI from 0.16x
    keeps an included router as one entry of ``app.routes``, so walk its effective routes."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    if walk is None:  # older FastAPI copies the routers' routes into app.routes
        return [(getattr(r, "path", ""), set(getattr(r, "methods", None) or ()), r) for r in app.routes]
    return [(c.path or "", set(c.methods or ()), c.original_route) for c in walk(app.routes)]
