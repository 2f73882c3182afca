"""Accelerator check: batched inference and decode throughput on whatever execution provider is
present (``python -m benchmarks.gpu --out DIR``; scripts/device_bench.sh runs it on a lent GPU).

Inference: each registered model's batch axis is made symbolic in memory (the shipped files are
fixed at batch 1; files whose graphs hard-code the batch in a Reshape stay at batch 1 and say so),
then frames per second at batch 1, 8, 32 on the first available provider of
TensorRT / CUDA / CPU. Decode: software H.264 decode of the 1080p benchmark clip (every frame,
keyframes only, decoder threads auto) and, where FFmpeg has it, NVDEC through ``-hwaccel cuda``.
With no GPU everything runs on the CPU path and the JSON says ``provider: CPUExecutionProvider``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnxruntime as ort

from benchmarks.media import REPO, ClipSpec, encode_clip
from models.base import pick_providers

PREFERRED = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def dynamic_batch(path: Path) -> bytes:
    """The model with its first input's and outputs' batch dimension renamed to a symbol."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input[:1], *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].dim_value == 1:
            dims[0].dim_param = "N"
    return bytes(model.SerializeToString())


def session(source: bytes | str, providers: list[str], threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(source, sess_options=opts, providers=providers)


def bench_model(path: Path, providers: list[str], threads: int | None, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        sess = session(dynamic_batch(path), providers, threads)
        batches: tuple[int, ...] = (1, 8, 32)
    except Exception as exc:  # onnx or ORT refusing the edited graph: measure the file as shipped
        out["dynamic_batch_error"] = str(exc)[:200]
        sess, batches = session(str(path), providers, threads), (1,)
    out["provider"] = sess.get_providers()[0]
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    for b in batches:
        x = np.random.default_rng(0).uniform(0, 255, (b, *shape[1:])).astype(np.float32)
        try:
            sess.run(None, {inp.name: x})
        except Exception as exc:
            out[f"batch{b}"] = {"error": str(exc).splitlines()[0][:200]}
            continue
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            sess.run(None, {inp.name: x})
            n += 1
        spent = time.perf_counter() - t0
        out[f"batch{b}"] = {"fps": round(n * b / spent, 1), "ms_per_batch": round(spent / n * 1000, 3)}
    return out


def bench_decode(clip: Path, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("every_frame", "keyframes_only"):
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if mode == "keyframes_only":
                stream.codec_context.skip_frame = "NONKEY"
            n, t0 = 0, time.perf_counter()
            for _ in container.decode(stream):
                n += 1
                if time.perf_counter() - t0 > seconds:
                    break
            out[f"software_{mode}_fps"] = round(n / (time.perf_counter() - t0), 1)
    if shutil.which("ffmpeg"):
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-hwaccel", "cuda", "-i", str(clip),
               "-f", "null", "-"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        spent = time.perf_counter() - t0
        with av.open(str(clip)) as c:
            frames = c.streams.video[0].frames
        out["nvdec_every_frame_fps"] = round(frames / spent, 1) if proc.returncode == 0 else \
            {"error": proc.stderr.strip()[-200:]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder of the registered .onnx files (default: the asset cache)")
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(4)  # failed batch>1 attempts are reported in the JSON, not spammed
    from models.registry import fetch_model, registry

    providers = pick_providers(PREFERRED)
    result: dict[str, Any] = {"available_providers": ort.get_available_providers(), "providers": providers,
                              "models": {}}
    for name, spec in registry().items():
        path = args.models_dir / spec.file if args.models_dir else fetch_model(name)
        result["models"][name] = bench_model(path, providers, args.threads, args.seconds)
        print(name, json.dumps(result["models"][name]), flush=True)
    clip_spec = ClipSpec("street", 1920, 1080, duration_s=20, bitrate_kbps=4000)
    clip = encode_clip(clip_spec, REPO / "var" / "bench" / "media")
    result["decode_1080p"] = bench_decode(clip, args.seconds)
    print("decode", json.dumps(result["decode_1080p"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
