"""``patrol replay --config FILE --camera ID --source VIDEO``: one camera's full pipeline on a clip.

Runs as fast as it can, with the video's own timestamps as the clock: wall time is a fixed base
(``--start-time``, default Monday 2026-01-05 09:00 in the site's time zone) plus pts, so zone
schedules apply and two runs print the same JSON lines (one :class:`~core.events.IncidentEvent`
per line). The core is :func:`rules.analyzer.replay` (frames -> detections -> analyzer), which
evaluation and tuning call with a detector or with cached detections.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from camera_config.loader import load_config
from camera_config.schema import Camera
from core.errors import ConfigError, InputError, PatrolError, SourceError
from core.events import IncidentEvent
from core.progress import progress
from core.types import Frame
from rules.analyzer import detector_fn, replay

DEFAULT_START = "2026-01-05T09:00:00"
_END = object()


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="run one camera's pipeline on a recorded clip; "
                                      "print incident events as JSON lines")
    p.add_argument("--config", required=True, metavar="FILE", help="site config (YAML)")
    p.add_argument("--camera", required=True, metavar="ID", help="camera id in the config")
    p.add_argument("--source", required=True, metavar="VIDEO", help="video file to replay")
    p.add_argument("--start-time", default=DEFAULT_START, metavar="ISO",
                   help="wall time of pts 0, ISO 8601; without an offset it is in the site's time zone "
                        f"(default {DEFAULT_START})")
    p.add_argument("--model", default=None, help="detector name or ONNX file (default: the camera's)")
    p.add_argument("--analysis-fps", type=float, default=None, help="override the camera's analysis_fps")
    p.add_argument("--trace", metavar="OUT.jsonl",
                   help="write one JSON line per analysed frame: detections, tracks, each rule's state "
                        "(clocks, limits, why it fires or not), findings and events")
    p.add_argument("--debug-video", metavar="OUT.mp4",
                   help="write the analysed frames annotated: zones, detections with scores, track ids, "
                        "each rule's candidates with their clocks, reasons and events")
    p.set_defaults(func=replay_command)


def parse_start(text: str, timezone: str) -> float:
    """Unix time of an ISO 8601 time; a naive time is read in ``timezone``."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PatrolError(f"--start-time {text!r}: not an ISO 8601 time ({exc})") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.timestamp()


def clip_frames(path: Path, camera: Camera, analysis_fps: float, wall_start: float) -> Iterator[Frame]:
    """Sampled frames of a video file, decoded by :class:`pipeline.sources.Source` as fast as it can,
    with ``wall_time = wall_start + pts``. Raises :class:`SourceError` if the file cannot be read."""
    from pipeline.sources import Source

    frames: queue.Queue[Any] = queue.Queue(maxsize=8)

    def on_frame(frame: Frame) -> None:
        frames.put(frame)  # offline replay: waiting for the analyzer here only paces the decoder

    # every frame decoded and sampled by stream time (no keyframe-only shortcut): the analysed
    # frames then depend on the clip and the rate alone
    source = Source(camera.id, str(path), on_frame, analysis_fps=analysis_fps, realtime=False,
                    keyframe_only=False, watchdog=camera.watchdog)

    def read() -> None:
        try:
            source.run()
        finally:
            frames.put(_END)

    thread = threading.Thread(target=read, name=f"replay-{camera.id}", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not _END:
            yield Frame(camera_id=camera.id, pts=item.pts, wall_time=wall_start + item.pts, image=item.image,
                        keyframe=item.keyframe)
    finally:
        source.stop()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                frames.get(timeout=0.1)
        thread.join()
    if source.error is not None:
        raise source.error


def replay_command(args: argparse.Namespace) -> int:
    """``patrol replay``: the clip is the command's input, so a clip it cannot read is a usage error
    (exit 2), not a failing camera (``patrol run``'s exit 1)."""
    try:
        return run_replay(args)
    except SourceError as exc:
        raise InputError(str(exc)) from exc


def run_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        camera = config.camera(args.camera)
    except KeyError:
        known = ", ".join(c.id for c in config.cameras)
        raise ConfigError(args.config, [f"{args.config}: no camera {args.camera!r} (cameras: {known})"]) from None
    source = Path(args.source)
    if not source.is_file():
        raise SourceError(camera.id, f"no such file: {source}")
    fps = args.analysis_fps or camera.analysis_fps
    if not fps > 0:
        raise PatrolError(f"--analysis-fps must be positive, got {fps}")
    timezone = config.site.timezone
    wall_start = parse_start(args.start_time, timezone)

    from models.factory import load_detector
    from models.regions import with_regions

    choice = camera.detector
    detector = with_regions(load_detector(args.model or choice.model,  # tiles as `patrol run` has them
                                          score_threshold=choice.lowest_score),
                            camera)
    frames = progress(clip_frames(source, camera, fps, wall_start), desc=f"replay {camera.id}",
                      total=expected_frames(source, fps), unit="frame", quiet=getattr(args, "log_json", False))
    # sampled again by the analyzer: a no-op for well-formed files, a guard for files whose
    # frame times go backwards (AVI with B-frames), which restart the source's sampler
    log_frames = logging.getLogger("patrol.replay").isEnabledFor(logging.DEBUG)
    if not (args.trace or args.debug_video or log_frames):
        for event in replay(camera, frames, detector_fn(detector), timezone, analysis_fps=fps):
            _print(event)
        return 0
    from evaluation.debug import DebugVideo, debug_replay

    with contextlib.ExitStack() as stack:
        trace = None
        if args.trace:
            Path(args.trace).parent.mkdir(parents=True, exist_ok=True)
            trace = stack.enter_context(Path(args.trace).open("w", encoding="utf-8"))
        video = stack.enter_context(DebugVideo(Path(args.debug_video), fps)) if args.debug_video else None
        for event in debug_replay(camera, frames, detector_fn(detector), timezone, fps, trace=trace, video=video,
                                  log_frames=log_frames):
            _print(event)
    return 0


def _print(event: IncidentEvent) -> None:
    sys.stdout.write(event.to_json() + "\n")
    sys.stdout.flush()


def expected_frames(path: Path, fps: float) -> int | None:
    """About how many frames a replay of ``path`` analyses (its duration x ``fps``), for the progress
    bar; None when the file does not say its duration."""
    import av

    try:
        with av.open(str(path)) as container:
            duration = container.duration
    except (av.FFmpegError, OSError):
        return None
    return None if not duration else int(duration / 1e6 * fps) + 1
