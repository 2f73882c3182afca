"""Each camera's latest analysed frame for the camera page (pipeline/snapshots.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from core.types import Frame
from patrol.cli import main
from pipeline.snapshots import SnapshotAnalyzer, SnapshotWriter


def frame(camera: str, wall: float, value: int) -> Frame:
    image = np.full((72, 128, 3), value, dtype=np.uint8)
    image[10:30, 20:60] = (0, 0, 255)
    return Frame(camera_id=camera, pts=wall, wall_time=wall, image=image)


class Inner:
    def __init__(self) -> None:
        self.seen = 0
        self.last = "report"

    def process(self, frame: Frame, detections: Any) -> list[Any]:
        self.seen += 1
        return ["event"]


def test_one_picture_per_interval_per_camera_written_whole(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, interval_s=10)
    analyzer = SnapshotAnalyzer(Inner(), writer)
    for t in range(0, 25):  # 1 frame a second for 25 s
        assert analyzer.process(frame("cam-a", 1000.0 + t, 10 * (t % 20)), None) == ["event"]
    analyzer.process(frame("cam-b", 1000.0, 50), None)
    assert writer.written == 4  # cam-a at 0, 10, 20 s; cam-b once
    assert analyzer.seen == 26 and analyzer.last == "report"  # the inner analyzer's attributes pass through
    latest = cv2.imread(str(tmp_path / "cam-a" / "latest.jpg"))
    assert latest.shape == (72, 128, 3)
    assert abs(int(latest[60, 100, 0]) - 0) <= 3  # the 20 s frame (grey 0), not the 24 s one (grey 40)
    assert latest[20, 40, 2] > 200 and latest[20, 40, 0] < 60  # the red patch
    assert sorted(p.name for p in (tmp_path / "cam-a").iterdir()) == ["latest.jpg"]  # no temporary left


def test_a_failing_write_is_logged_once_and_never_costs_the_analysis(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cam-a").write_text("a file where the camera's folder should be")
    writer = SnapshotWriter(tmp_path, interval_s=1)
    inner = Inner()
    analyzer = SnapshotAnalyzer(inner, writer)
    with caplog.at_level(logging.ERROR, logger="patrol.snapshots"):
        for t in range(5):
            assert analyzer.process(frame("cam-a", float(t), 0), None) == ["event"]
    assert inner.seen == 5 and writer.written == 0
    assert len([r for r in caplog.records if "latest frame not written" in r.getMessage()]) == 1
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        SnapshotWriter(tmp_path, interval_s=0)


@pytest.mark.slow
def test_patrol_run_writes_the_latest_frame_the_camera_page_shows(tmp_path: Path, asset_path: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    site = {"site": {"name": "frames-test", "timezone": "UTC"},
            "cameras": [{"id": "street", "url": str(asset_path("vehicle_counting_input_video")),
                         "grid_cell": "JD-0101", "analysis_fps": 2}]}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site), encoding="utf-8")
    frames = tmp_path / "frames"
    assert main(["run", "--config", str(cfg), "--duration", "4", "--no-publish", "--no-evidence",
                 "--processes", "1", "--latest-frames", str(frames)]) == 0
    capsys.readouterr()
    latest = cv2.imread(str(frames / "street" / "latest.jpg"))
    assert latest is not None and latest.shape == (352, 640, 3)
