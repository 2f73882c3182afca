"""Grid cell x incident type -> department, and deadlines per type, from the tickets config."""

from __future__ import annotations

from camera_config.schema import TicketsConfig


def route(cfg: TicketsConfig, grid_cell: str, incident_type: str) -> str:
    """Most specific first: (cell, type), (cell, '*'), ('*', type), ('*', '*'), then the default."""
    for cell in (grid_cell, "*"):
        by_type = cfg.routes.get(cell)
        if not by_type:
            continue
        for key in (incident_type, "*"):
            if key in by_type:
                return by_type[key]
    return cfg.default_department


def deadline_s(cfg: TicketsConfig, incident_type: str) -> float:
    return cfg.deadlines_s.get(incident_type, cfg.default_deadline_s)
