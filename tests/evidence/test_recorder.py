"""One incident's evidence end to end: snapshot drawn, clean frame kept, clip remuxed, manifest true."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from camera_config.loader import parse_config
from core.events import Evidence, EvidenceBox, IncidentEvent
from core.types import Frame
from evidence.clip import ClipWriter
from evidence.manifest import MANIFEST_SCHEMA, ModelInfo, config_version, verify_manifest
from evidence.recorder import EvidenceRecorder
from evidence.snapshot import draw_snapshot
from evidence.store import EvidenceStore

POLYGON = ((0.0, 0.55), (0.45, 0.55), (0.45, 1.0), (0.0, 1.0))
SITE = {"site": {"name": "test"}, "cameras": [{"id": "cam-street", "url": "rtsp://u:secret@host/x",
                                               "grid_cell": "G-01"}]}


def _event(at: float, pts: float) -> IncidentEvent:
    box = EvidenceBox(label="car", score=0.87, xyxy=(40.0, 220.0, 190.0, 330.0), track_id=7)
    return IncidentEvent(incident_id="inc-street-0001", seq=1, event="opened", type="illegal_parking",
                         camera_id="cam-street", grid_cell="G-01", zone_id="kerb", started_at=at - 30,
                         event_at=at, stream_pts=pts, location=(0.18, 0.9),
                         evidence=Evidence(boxes=(box,), durations={"dwell_s": 30.0},
                                           thresholds={"limit_s": 30.0, "still_tolerance": 0.25},
                                           frame_size=(640, 352)))


def test_recorder_writes_snapshot_frame_clip_and_a_manifest_that_verifies(street_clip: Path,
                                                                         tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    writer = ClipWriter()
    cfg = parse_config(SITE)
    recorder = EvidenceRecorder(store, writer, pre_roll_s=4, post_roll_s=4, config_version=config_version(cfg),
                                model=ModelInfo("yolox_nano_416", "d39b" + "0" * 60), timezone="Asia/Shanghai")
    ring = recorder.ring("cam-street")
    links: dict[str, str] = {}
    fire_at = 10.0
    with av.open(str(street_clip)) as src:
        stream = src.streams.video[0]
        for packet in src.demux(stream):
            ring.on_packet(packet, stream)
            for frame in packet.decode():
                if not links and frame.time >= fire_at:
                    f = Frame("cam-street", frame.time, 1_700_000_000.0, frame.to_ndarray(format="bgr24"))
                    links = recorder.record(_event(1_700_000_000.0, frame.time), f, POLYGON)
    ring.end_of_stream()
    writer.close()

    assert links == {"clip": "inc-street-0001/clip.mp4", "snapshot": "inc-street-0001/snapshot.jpg",
                     "frame": "inc-street-0001/frame.jpg", "manifest": "inc-street-0001/manifest.json"}
    folder = store.root / "inc-street-0001"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema"] == MANIFEST_SCHEMA
    assert manifest["clip"]["status"] == "written"
    assert manifest["clip"]["duration_s"] >= 8.0
    assert set(manifest["files"]) == {"clip.mp4", "snapshot.jpg", "frame.jpg"}
    for name, info in manifest["files"].items():
        assert info["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert verify_manifest(folder, manifest) == []
    assert manifest["model"] == {"name": "yolox_nano_416", "sha256": "d39b" + "0" * 60}
    assert manifest["rule"]["thresholds"] == {"limit_s": 30.0, "still_tolerance": 0.25}
    assert manifest["zone_polygon"] == [list(p) for p in POLYGON]
    assert manifest["config_version"] == config_version(cfg)
    assert "secret" not in (folder / "manifest.json").read_text()

    snap = cv2.imread(str(folder / "snapshot.jpg"))
    clean = cv2.imread(str(folder / "frame.jpg"))
    assert snap.shape == clean.shape == (352, 640, 3)
    assert np.abs(snap.astype(int) - clean.astype(int)).mean() > 2  # the drawing is there
    (folder / "snapshot.jpg").write_bytes(b"tampered")
    assert verify_manifest(folder, manifest) == ["snapshot.jpg"]


def test_config_version_changes_with_the_config_but_not_with_the_password() -> None:
    a = parse_config(SITE)
    b = parse_config({**SITE, "cameras": [{**SITE["cameras"][0], "url": "rtsp://u:other@host/x"}]})
    c = parse_config({**SITE, "cameras": [{**SITE["cameras"][0], "grid_cell": "G-02"}]})
    assert config_version(a) == config_version(b) != config_version(c)
    assert config_version(a).startswith("sha256:")


def test_snapshot_draws_box_and_zone_where_they_are() -> None:
    img = np.full((360, 640, 3), 128, np.uint8)
    box = EvidenceBox(label="car", score=0.9, xyxy=(300.0, 200.0, 400.0, 300.0))
    out = draw_snapshot(img, camera_id="cam", when=0.0, title="illegal_parking", boxes=[box],
                        polygon=((0.1, 0.5), (0.3, 0.5), (0.3, 0.9)))
    assert tuple(out[250, 300]) == (0, 0, 255)  # red box edge
    assert tuple(out[250, 350]) == (128, 128, 128)  # inside the box untouched
    assert (img == 128).all()  # the clean frame is never drawn on
    with pytest.raises(Exception, match="BGR uint8"):
        draw_snapshot(np.zeros((10, 10), np.uint8), camera_id="cam", when=0.0, title="x")
