"""The recorded street run the browser tests review (a plain module: tests/ is not a package).

The pipeline (file source -> 2 fps -> YOLOX-Nano -> tracker -> parking rule -> lifecycle -> outbox)
over the first 18 s of vehicle_counting_input_video.mp4 with two no_parking zones: the kerb on the
right where a silver car stands all clip, and the far side where a queue of cars waits at the
junction for ~20 s (see tests/rules/test_parking_footage.py for what the footage shows). Evidence
(remuxed clip, snapshots, manifest) is written by the recorder hooked into the worker.

It runs at the camera's own pace (18 s of wall time), so the review tests record it once per session
(``street_run`` in conftest.py) and each test reviews its own copy of the database and evidence.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from alerts.outbox import OutboxSink
from camera_config.loader import parse_config
from camera_config.schema import SiteConfig
from evidence.attach import build_recorder, drain, packet_listeners, with_evidence
from evidence.keep import reference_writer
from storage.db import Database

KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 10,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}
FAR_SIDE = {"id": "far-side", "type": "no_parking", "limit_s": 10,
            "polygon": [[0.40, 0.28], [0.70, 0.28], [0.70, 0.50], [0.40, 0.50]]}
RUN_S = 18.0


class _Sink(OutboxSink):
    """Commits the events to the outbox and publishes nothing: the review page's publisher sends them."""

    def flush(self) -> None:
        pass


def street_site(tmp: Path, clip: Path, broker_port: int) -> SiteConfig:
    """The site of one street camera over ``clip``; database, evidence and review secret under ``tmp``."""
    return parse_config({
        "site": {"name": "Jiading test", "timezone": "Asia/Shanghai"},
        "cameras": [{"id": "street-1", "url": str(clip), "grid_cell": "JD-0101", "analysis_fps": 2,
                     "zones": [KERB, FAR_SIDE]}],
        "mqtt": {"port": broker_port},
        "database": {"url": f"sqlite:///{tmp / 'patrol.db'}"},
        "evidence": {"dir": str(tmp / "evidence"), "pre_roll_s": 4, "post_roll_s": 4},
        "review": {"secret_file": str(tmp / "review-secret")},
    })


def run_pipeline(config: SiteConfig, db: Database) -> None:
    """The real worker over the first 18 s of the clip at the camera's own pace (a live camera feeds
    frames in real time; read faster, the latest-frame slot would drop most frames), evidence hooked in."""
    from pipeline.worker import PatrolWorker
    from rules.analyzer import camera_analyzer

    recorder, writer = build_recorder(config, on_written=reference_writer(db))
    worker = PatrolWorker(config, analyzer_factory=with_evidence(camera_analyzer, recorder),
                          packet_listeners=packet_listeners(recorder), sink=_Sink(db, config.mqtt.topic_prefix),
                          realtime=True)
    worker.run(duration=RUN_S)
    drain(recorder, writer, [c.id for c in config.cameras])
    assert writer.written >= 2 and writer.dropped == 0 and writer.failed == 0


def copy_run(recorded: Path, to: Path) -> None:
    """The recorded run's database (its WAL checkpointed at dispose) and evidence, into ``to``.
    Evidence references in the database are relative to the store, so the copy is self-contained."""
    for part in recorded.glob("patrol.db*"):
        shutil.copy(part, to / part.name)
    shutil.copytree(recorded / "evidence", to / "evidence")
