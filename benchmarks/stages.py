"""Per-stage latency on one core's worth of work, unloaded: warm-up, then measured iterations.

Stages: decode (every frame / keyframes only), colour conversion + resize (the three ways to get a
model-sized BGR picture out of a decoded frame), inference per model, tracking, rules (the real
:class:`rules.analyzer.CameraAnalyzer` per zone type, at native and at model size), and publish
(outbox commit to SQLite; MQTT QoS 1 publish to a local mosquitto until PUBACK). Frame-to-decision
per model is the sum, frame by frame, of keyframe decode, conversion, inference, analysis and the
outbox commit, on the real clip.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import av
import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.stats import percentiles
from core.types import Detections, Frame

log = logging.getLogger("patrol.bench")
REPO = Path(__file__).resolve().parent.parent
Image = npt.NDArray[np.uint8]


def bgr(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> Image:
    """A decoded frame as a BGR array, converted straight to ``size`` when given."""
    out = frame.reformat(size[0], size[1], format="bgr24") if size else frame
    return cast(Image, out.to_ndarray(format="bgr24"))


def timed(fn: Callable[[], Any], iterations: int, warmup: int = 2) -> dict[str, float | int]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def keyframes(path: Path, limit: int) -> Iterator[tuple[float, av.VideoFrame, float]]:
    """(pts, frame, decode seconds) of the first ``limit`` keyframes, decoding nothing else."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.codec_context.skip_frame = "NONKEY"
        n = 0
        for packet in container.demux(stream):
            if not packet.is_keyframe or packet.pts is None:
                continue
            t0 = time.perf_counter()
            frames = packet.decode()
            spent = time.perf_counter() - t0
            for frame in frames:
                yield float(packet.pts * packet.time_base), frame, spent
                n += 1
            if n >= limit:
                return


def bench_decode(path: Path, frames: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        samples = []
        for packet in container.demux(stream):
            t0 = time.perf_counter()
            packet.decode()
            samples.append(time.perf_counter() - t0)
            if len(samples) >= frames:
                break
    out["every_frame"] = percentiles(samples[2:])
    out["keyframe"] = percentiles([spent for _, _, spent in keyframes(path, max(4, frames // 10))][1:])
    return out


def analysis_size(native: tuple[int, int], net: tuple[int, int]) -> tuple[int, int]:
    w, h = native
    s = min(net[0] / w, net[1] / h, 1.0)
    return max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2)


def bench_convert(path: Path, net: tuple[int, int], iterations: int) -> dict[str, Any]:
    _, frame, _ = next(keyframes(path, 1))
    w, h = analysis_size((frame.width, frame.height), net)
    return {
        "full_bgr": timed(lambda: frame.to_ndarray(format="bgr24"), iterations),
        "full_bgr_then_cv2_resize": timed(
            lambda: cv2.resize(frame.to_ndarray(format="bgr24"), (w, h), interpolation=cv2.INTER_LINEAR),
            iterations),
        "reformat_to_model_size": timed(lambda: frame.reformat(w, h, format="bgr24").to_ndarray(), iterations),
        "reformat_to_model_size_bilinear": timed(
            lambda: frame.reformat(w, h, format="bgr24", interpolation="BILINEAR").to_ndarray(), iterations),
        "size": [w, h], "native": [frame.width, frame.height],
    }


def bench_inference(models: list[str], iterations: int, threads: int | None,
                    providers: list[str] | None, image: Image) -> dict[str, Any]:
    from models.factory import load_detector

    out: dict[str, Any] = {}
    for name in models:
        try:
            det = load_detector(name, threads=threads, providers=providers)
            det.warmup()
        except Exception as exc:  # a model that cannot load is reported, not fatal to the run
            out[name] = {"error": str(exc)}
            continue
        one = timed(partial(det.detect, [image]), iterations)
        eight = timed(partial(det.detect, [image] * 8), max(2, iterations // 8), warmup=1)
        per_frame_8 = {k: round(v / 8, 3) if k.endswith("_ms") else v for k, v in eight.items()}
        out[name] = {"batch1": one, "batch8_per_frame": per_frame_8,
                     "input": list(getattr(det, "input_size", ()))}
    return out


def bench_regions(detector: Any, native: list[tuple[float, Image]], iterations: int,
                  fps: float = 0.5) -> dict[str, Any]:
    """CPU of one analysed frame's detection at native size with ``detector.regions`` off (the whole
    frame) and on (:data:`benchmarks.analysis.BENCH_REGIONS`), and what regions on adds per
    camera-second at ``fps`` analysed frames per second."""
    from benchmarks.analysis import BENCH_REGIONS, bench_camera
    from camera_config.schema import Camera
    from models.regions import RegionDetector, RegionPlanner

    camera = Camera.model_validate(bench_camera("bench", "rtsp://127.0.0.1/bench", fps, detector.name,
                                                regions=list(BENCH_REGIONS)))
    regional = RegionDetector(detector, RegionPlanner.for_camera(camera, detector.input_size))
    images = [img for _, img in native]
    out: dict[str, Any] = {"frame": [images[0].shape[1], images[0].shape[0]],
                           "tiles": [[t.x1, t.y1, t.x2, t.y2] for t in regional.planner.tiles(
                               (images[0].shape[1], images[0].shape[0]))]}
    for key, det in (("off", detector), ("on", regional)):
        wall = timed(partial(det.detect, [images[0]]), iterations)
        c0 = cpu_s()
        for i in range(iterations):
            det.detect([images[i % len(images)]])
        out[key] = {**wall, "cpu_ms_per_frame": round((cpu_s() - c0) * 1000 / iterations, 2)}
    added = out["on"]["cpu_ms_per_frame"] - out["off"]["cpu_ms_per_frame"]
    out["added_cpu_ms_per_camera_s"] = round(fps * added, 2)
    out["fps"] = fps
    return out


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def bench_ort_threads(model: str, iterations: int) -> dict[str, Any]:
    """Wall and CPU time per frame of the bare model call for intra-op thread settings. On a box
    whose cores are also decoding, CPU per frame is what limits capacity: spinning worker threads
    burn it while waiting."""
    import onnxruntime as ort

    from models.registry import fetch_model

    path = fetch_model(model)
    out: dict[str, Any] = {}
    for threads, spin in ((1, True), (2, True), (2, False)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).uniform(0, 255, [d if isinstance(d, int) else 1 for d in inp.shape])
        feed = {inp.name: x.astype(np.float32)}
        c0 = cpu_s()
        wall = timed(partial(sess.run, None, feed), iterations)
        cpu_ms = (cpu_s() - c0) * 1000 / (iterations + 2)
        out[f"threads{threads}{'' if spin else '_nospin'}"] = {**wall, "cpu_ms_per_frame": round(cpu_ms, 2)}
    return out


def clip_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.frames / stream.average_rate) if stream.frames and stream.average_rate else 0.0


def bench_reader_cpu(path: Path, analysis_fps: float) -> dict[str, Any]:
    """CPU milliseconds per camera-second of video spent reading one camera at ``analysis_fps``:
    the pipeline's :class:`pipeline.sources.Source` as shipped (it picks its decode mode from the
    stream), the same with keyframe-only decoding forced, and a bare reader of keyframe packets
    converted straight to the model's input size (what the Source would cost if it converted there),
    sampled by the pipeline's own :class:`pipeline.sampler.TimeSampler`. CPU time, not wall time,
    so other people's load on the machine barely moves it."""
    from pipeline.sampler import TimeSampler
    from pipeline.sources import Source

    seconds = clip_seconds(path)
    out: dict[str, Any] = {"analysis_fps": analysis_fps, "video_s": round(seconds, 1)}
    for label, forced in (("source_as_shipped", None), ("source_keyframe_only_forced", True)):
        frames: list[Frame] = []
        src = Source("bench", str(path), frames.append, analysis_fps=analysis_fps, realtime=False,
                     keyframe_only=forced)
        c0 = cpu_s()
        src.run()
        out[label] = {"cpu_ms_per_camera_s": round((cpu_s() - c0) * 1000 / seconds, 2), "frames": len(frames),
                      "keyframe_only": src.metrics.keyframe_only}
    c0, n = cpu_s(), 0
    # only keyframes are offered, one GOP apart (2 s on the benchmark clips, the 0.5 fps interval):
    # half that spacing, as the Source sets it (pipeline/sources.py), lets a keyframe that comes a
    # little before its slot serve it
    sampler = TimeSampler(1.0 / analysis_fps, tolerance_s=0.5 / analysis_fps)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for packet in container.demux(stream):
            if packet.pts is None or not packet.is_keyframe or not sampler.due(float(packet.pts * packet.time_base)):
                continue
            for frame in packet.decode():
                bgr(frame, (416, 234))
                n += 1
    out["keyframes_to_model_size"] = {"cpu_ms_per_camera_s": round((cpu_s() - c0) * 1000 / seconds, 2),
                                      "frames": n, "keyframe_only": True}
    return out


def sample_camera(zone_types: tuple[str, ...] | None = None) -> Any:
    """The benchmark street's camera with its zones of ``zone_types`` (all of them: ``None``)."""
    from benchmarks.analysis import bench_camera
    from camera_config.schema import Camera

    return Camera.model_validate(bench_camera("bench", "rtsp://127.0.0.1/bench", 0.5, "yolox_nano_416", zone_types))


def bench_analysis(frames: list[tuple[float, Image]], detections: list[Detections]) -> dict[str, Any]:
    """Tracking alone, then each registered rule kind's rules (analyzer time minus tracking time),
    on the benchmark street's zone of that kind; a kind the street has no zone for is named."""
    from benchmarks.analysis import BENCH_ZONES, TimedTracking
    from pipeline.tracking import ObjectTracker
    from rules.analyzer import CameraAnalyzer
    from rules.registry import rule_kinds

    out: dict[str, Any] = {}
    tracker = ObjectTracker()
    track_s = []
    for (pts, _), dets in zip(frames, detections, strict=True):
        t0 = time.perf_counter()
        tracker.update(pts, dets)
        track_s.append(time.perf_counter() - t0)
    out["tracking"] = percentiles(track_s[1:])
    on_street = {z["type"] for z in BENCH_ZONES}
    for zone in (kind.zone_type for kind in rule_kinds()):
        if zone not in on_street:
            out[f"rules_{zone}"] = {"error": f"no {zone} zone on the benchmark street (benchmarks/analysis.py)"}
            continue
        analyzer = CameraAnalyzer(sample_camera((zone,)), "UTC")
        # this analyzer's own tracker call, timed in the same frame: subtracting the standalone
        # tracker's time instead went below zero on a busy machine and read as 0 ms of rules
        timing = TimedTracking(analyzer)
        rule_s = []
        for (pts, image), dets in zip(frames, detections, strict=True):
            frame = Frame("bench", pts, 1_700_000_000.0 + pts, image)
            timing.track_s = 0.0
            t0 = time.perf_counter()
            analyzer.process(frame, dets)
            rule_s.append(time.perf_counter() - t0 - timing.track_s)
        out[f"rules_{zone}"] = percentiles(rule_s[1:])
    return out


def sample_event() -> Any:
    from core.events import Evidence, EvidenceBox, IncidentEvent

    return IncidentEvent(
        incident_id="inc-ille-0123456789abcdef0123", seq=1, event="opened", type="illegal_parking",
        camera_id="bench", grid_cell="bench", zone_id="kerb", location=(0.5, 0.8), started_at=time.time() - 200,
        event_at=time.time(), stream_pts=200.0,
        evidence=Evidence(boxes=(EvidenceBox(label="car", score=0.8, xyxy=(10, 20, 200, 180), track_id=3),),
                          durations={"dwell_s": 200.0}, frame_size=(1920, 1080)))


def _services() -> ModuleType:
    path = REPO / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("patrol_bench_services", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["patrol_bench_services"] = module
    spec.loader.exec_module(module)
    return module


def bench_publish(iterations: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    event = sample_event()
    with tempfile.TemporaryDirectory(prefix="patrol-bench-") as tmp:
        try:
            from alerts.outbox import OutboxSink
            from storage.db import Database

            db = Database(f"sqlite:///{tmp}/bench.db")
            db.migrate()
            sink = OutboxSink(db)
            counter = iter(range(1, 10**9))
            out["outbox_commit"] = timed(
                lambda: sink.publish([event.model_copy(update={"seq": next(counter)})]), iterations)
        except Exception as exc:
            out["outbox_commit"] = {"error": f"{type(exc).__name__}: {exc}"}
    if shutil.which("mosquitto") is None:
        out["mqtt_qos1"] = {"error": "mosquitto not installed"}
        return out
    try:
        from alerts.mqtt import MqttTransport
        from alerts.transport import Endpoint
        from camera_config.schema import MqttConfig

        with _services().Mosquitto() as broker:
            link = MqttTransport(MqttConfig(host="127.0.0.1", port=broker.port), Endpoint("bench"))
            link.start()
            if not link.wait_connected(10):
                raise RuntimeError("could not connect to the local mosquitto")
            payload = event.to_json()
            out["mqtt_qos1"] = timed(lambda: link.publish(event.topic(), payload).wait(5), iterations)
            link.stop()
    except Exception as exc:
        out["mqtt_qos1"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def bench_e2e_per_model(path: Path, models: list[str], frames: int, threads: int | None,
                        providers: list[str] | None) -> dict[str, Any]:
    """Unloaded frame-to-decision per model: keyframe decode + reformat + detect + analyse + commit."""
    from models.factory import load_detector
    from rules.analyzer import CameraAnalyzer

    clip = [(pts, frame, dec) for pts, frame, dec in keyframes(path, frames)]
    out: dict[str, Any] = {}
    camera = sample_camera()
    for name in models:
        try:
            det = load_detector(name, threads=threads, providers=providers)
            det.warmup()
        except Exception as exc:
            out[name] = {"error": str(exc)}
            continue
        analyzer = CameraAnalyzer(camera, "UTC")
        total = []
        for pts, frame, dec in clip:
            t0 = time.perf_counter()
            w, h = analysis_size((frame.width, frame.height), det.input_size)
            image = bgr(frame, (w, h))
            dets = det.detect([image])[0]
            analyzer.process(Frame("bench", pts, 1_700_000_000.0 + pts, image), dets)
            total.append(dec + time.perf_counter() - t0)
        out[name] = percentiles(total[1:])
    return out


def run_stages(clip: Path, models: list[str], *, smoke: bool, threads: int | None = None,
               providers: list[str] | None = None) -> dict[str, Any]:
    """Every stage; ``smoke`` cuts iterations so the whole thing takes seconds."""
    from models.factory import load_detector

    iters = 5 if smoke else 40
    result: dict[str, Any] = {"clip": clip.name}
    result["decode"] = bench_decode(clip, 30 if smoke else 250)
    result["reader_cpu"] = bench_reader_cpu(clip, 0.5)
    default = load_detector(models[0], threads=threads, providers=providers)
    default.warmup()
    result["convert"] = bench_convert(clip, default.input_size, iters)
    frames: list[tuple[float, Image]] = []
    native: list[tuple[float, Image]] = []
    for pts, frame, _ in keyframes(clip, 6 if smoke else 20):
        w, h = analysis_size((frame.width, frame.height), default.input_size)
        frames.append((pts, bgr(frame, (w, h))))
        native.append((pts, bgr(frame)))
    result["inference"] = bench_inference(models, iters, threads, providers, frames[0][1])
    result["ort_threads"] = bench_ort_threads(models[0], iters)
    result["regions"] = bench_regions(default, native, iters)
    dets_small = [default.detect([img])[0] for _, img in frames]
    dets_native = [default.detect([img])[0] for _, img in native]
    result["analysis_model_size"] = bench_analysis(frames, dets_small)
    result["analysis_native"] = bench_analysis(native, dets_native)
    result["publish"] = bench_publish(iters)
    result["e2e_unloaded"] = bench_e2e_per_model(clip, models, 6 if smoke else 16, threads, providers)
    result["cpu_model"] = cpu_model(result)
    return result


def cpu_model(stages: dict[str, Any], fps: float = 0.5, use: float = 0.85) -> dict[str, Any]:
    """Where one camera's CPU goes at ``fps`` analysed frames per second, from the stage figures:
    reader CPU + fps x (bare model call CPU + median analysis time), and the cameras that would fit
    in ``use`` of all cores. An explanation of the capacity trials, not a substitute for them."""
    reader = stages.get("reader_cpu", {})
    threads = stages.get("ort_threads", {})
    analysis = stages.get("analysis_model_size", {})
    analyse_ms = sum(v.get("p50_ms", 0.0) for v in analysis.values())
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"fps": fps, "analysis_ms_per_frame": round(analyse_ms, 2)}
    for reader_key in ("source_as_shipped", "source_keyframe_only_forced", "keyframes_to_model_size"):
        for ort_key in ("threads2", "threads1"):
            if reader_key not in reader or ort_key not in threads:
                continue
            per_cam = (reader[reader_key]["cpu_ms_per_camera_s"]
                       + fps * (threads[ort_key]["cpu_ms_per_frame"] + analyse_ms))
            out[f"{reader_key}+ort_{ort_key}"] = {"cpu_ms_per_camera_s": round(per_cam, 1),
                                                  "cameras": round(use * cores * 1000 / per_cam, 1)}
    return out
