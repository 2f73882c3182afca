"""What each rule saw, frame by frame: a JSON-lines trace and an annotated debug video.

``patrol replay --trace OUT.jsonl --debug-video OUT.mp4`` runs the camera's analyzer in debug mode
(:class:`rules.analyzer.CameraAnalyzer` with ``debug=True``) and reads its
:class:`~rules.analyzer.FrameReport` after every analysed frame:

* the trace gets one JSON object per analysed frame: the detections past the score thresholds,
  the tracks, each zone's rule state (``rule.debug_state(pts)``: every candidate with its clock,
  its limit, whether it fires and why or why not), the findings and the lifecycle events;
* the video gets the frame with the zones, every detection with its score, every track id, every
  rule candidate (red when it fires, yellow while its clock runs) with its clock against its limit,
  and a panel with each zone's reasons and the frame's events.

With ``--log-level debug`` the same state goes to the log, one line per analysed frame. The events
are the same as a plain replay's: debug mode only reads the rules' state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import av
import cv2
import numpy as np
import numpy.typing as npt

from camera_config.schema import Camera
from core.coco import COCO80
from core.events import IncidentEvent
from core.types import Frame
from rules.analyzer import CameraAnalyzer, DetectFn, FrameReport, sample

Image = npt.NDArray[np.uint8]
log = logging.getLogger("patrol.replay")

# colours (BGR) of what is drawn; distinct from each other on street footage
DETECTION_BGR = (255, 160, 0)
TRACK_BGR = (255, 255, 255)
ZONE_BGR = (0, 200, 0)
WAITING_BGR = (0, 220, 255)
FIRING_BGR = (0, 0, 255)
PANEL_LINES = 8
"""Lines of reasons shown in the frame's panel (the trace has them all)."""


def _box(values: Sequence[float]) -> list[float]:
    return [round(float(v), 1) for v in values]


def trace_line(camera_id: str, report: FrameReport) -> dict[str, Any]:
    """One analysed frame of the trace (JSON-able)."""
    kept = report.kept
    detections = [
        {"class": COCO80[int(c)], "score": round(float(s), 4), "xyxy": _box(b)}
        for b, s, c in zip(kept.xyxy, kept.score, kept.class_id, strict=True)]
    return {
        "camera": camera_id,
        "pts": round(report.pts, 6),
        "detections": detections,
        "tracks": [{"id": t.track_id, "class": COCO80[t.class_id], "xyxy": _box(t.xyxy)} for t in report.tracks],
        "rules": list(report.rule_states),
        "findings": [{"type": f.type, "zone": f.zone_id, "place": [round(f.place[0], 4), round(f.place[1], 4)],
                      "started_pts": round(f.started_pts, 3), "signals": dict(f.evidence.signals),
                      "durations": dict(f.evidence.durations)} for f in report.findings],
        "events": [{"event": e.event, "incident_id": e.incident_id, "type": e.type, "zone": e.zone_id,
                    "seq": e.seq, "location": list(e.location) if e.location is not None else None}
                   for e in report.events],
    }


def _text(img: Image, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float = 0.4) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _rect(img: Image, xyxy: Sequence[float], colour: tuple[int, int, int], thickness: int) -> tuple[int, int]:
    x1, y1, x2, y2 = (round(float(v)) for v in xyxy)
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness)
    return x1, y1


def draw(image: Image, camera: Camera, report: FrameReport) -> Image:
    """A copy of ``image`` with zones, detections, tracks, rule state and events drawn on it."""
    img = np.ascontiguousarray(image).copy()
    h, w = img.shape[:2]
    for zone in camera.zones:
        pts = np.asarray([[x * w, y * h] for x, y in zone.polygon], np.int32)
        cv2.polylines(img, [pts], True, ZONE_BGR, 1, cv2.LINE_AA)
        _text(img, f"{zone.id} ({zone.type})", (int(pts[0][0]) + 2, int(pts[0][1]) + 12), ZONE_BGR)
    kept = report.kept
    for b, s, c in zip(kept.xyxy, kept.score, kept.class_id, strict=True):
        x1, y1 = _rect(img, b, DETECTION_BGR, 1)
        _text(img, f"{COCO80[int(c)]} {float(s):.2f}", (x1, max(y1 - 3, 10)), DETECTION_BGR)
    for t in report.tracks:
        x1, _, _, y2 = (round(v) for v in t.xyxy)
        _text(img, f"#{t.track_id}", (x1 + 2, y2 - 3), TRACK_BGR)
    panel: list[tuple[str, tuple[int, int, int]]] = []
    for state in report.rule_states:
        zone_id = state.get("zone", "?")
        if state.get("off_schedule"):
            panel.append((f"{zone_id}: off schedule", WAITING_BGR))
        for item in state.get("items", []):
            colour = FIRING_BGR if item.get("fires") else WAITING_BGR
            x1, y1 = _rect(img, item["box"], colour, 2)
            clock = f"{item.get('clock_s', 0.0):.1f}/{item.get('limit_s', 0.0):g}s"
            score = f" score {item['score']:.2f}" if "score" in item else ""
            _text(img, f"{item.get('label', '')} {clock}{score}", (x1, max(y1 - 14, 10)), colour)
            panel.append((f"{zone_id} {item.get('id', '')}: {item.get('why', '')}", colour))
    for e in report.events:
        panel.insert(0, (f"{e.event.upper()} {e.type} zone={e.zone_id} #{e.seq}", FIRING_BGR))
    _text(img, f"t={report.pts:.2f}s", (4, h - 6), TRACK_BGR)
    for i, (line, colour) in enumerate(panel[:PANEL_LINES]):
        _text(img, line[:90], (4, 14 + 14 * i), colour)
    return img


class DebugVideo:
    """An H.264 MP4 of annotated frames at the analysis rate (nearly lossless: CRF 12, so a
    decoded frame differs from the clean one where something was drawn, not elsewhere)."""

    CRF = "12"
    """x264 constant rate factor. Measured on the kerb and lobby clips (tests/rules/test_replay_debug.py):
    the decoded frame differs from the clean one by a median of 3.0-3.5 grey levels (largest channel;
    4:2:0 chroma), by at least 45.9 on average along each drawn box's outline."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self._container: Any = None
        self._stream: Any = None

    def write(self, image: Image) -> None:
        """Append one annotated frame (frames are spaced 1 / fps apart, as analysed)."""
        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
            rate = Fraction(self.fps).limit_denominator(1000)
            self._stream = self._container.add_stream("libx264", rate=rate)
            h, w = image.shape[:2]
            self._stream.width, self._stream.height = w - w % 2, h - h % 2  # yuv420p wants even sizes
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": self.CRF, "preset": "veryfast"}
        h, w = self._stream.height, self._stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> DebugVideo:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def frame_summary(report: FrameReport) -> str:
    """One log line per analysed frame: counts, then each zone's candidates with clock and reason."""
    parts = [f"pts {report.pts:.2f}: {report.detections} detections, {len(report.tracks)} tracks, "
             f"{len(report.findings)} findings, {len(report.events)} events"]
    for state in report.rule_states:
        items = "; ".join(f"{i.get('id')} {i.get('clock_s', 0.0):.1f}/{i.get('limit_s', 0.0):g}s {i.get('why')}"
                          for i in state.get("items", []))
        off = " (off schedule)" if state.get("off_schedule") else ""
        parts.append(f"{state.get('zone')}{off}: {items or 'nothing'}")
    return " | ".join(parts)


def debug_replay(camera: Camera, frames: Iterable[Frame], detect: DetectFn, timezone: str, analysis_fps: float,
                 *, trace: TextIO | None = None, video: DebugVideo | None = None,
                 log_frames: bool = False) -> Iterator[IncidentEvent]:
    """:func:`rules.analyzer.replay` with the analyzer in debug mode: the same events, and each
    analysed frame written to ``trace`` (one JSON line), ``video`` (annotated) and, with
    ``log_frames``, the log at DEBUG (:func:`frame_summary`)."""
    analyzer = CameraAnalyzer(camera, timezone, debug=True)
    for frame in sample(frames, analysis_fps):
        events = analyzer.process(frame, detect(frame))
        report = analyzer.last
        assert report is not None  # set by every process()
        if log_frames:
            log.debug("camera %s: %s", camera.id, frame_summary(report))
        if trace is not None:
            trace.write(json.dumps(trace_line(camera.id, report)) + "\n")
        if video is not None:
            video.write(draw(frame.image, camera, report))
        yield from events
