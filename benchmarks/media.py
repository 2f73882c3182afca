"""Benchmark streams: real footage upscaled and pre-encoded ONCE, then served over local RTSP.

The clip is encoded like an IP camera's stream (H.264 Main, no B-frames, constant GOP with a
keyframe every ``gop_s`` seconds, capped bitrate) into ``var/bench/media`` and reused by later
runs; the RTSP server (``benchmarks/rtsp_serve.py`` under the system python) only packetises it.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from core.errors import PatrolError

REPO = Path(__file__).resolve().parent.parent
SOURCE_ASSET = "vehicle_counting_input_video"
SYSTEM_PYTHON = "/usr/bin/python3"


class BenchSetupError(PatrolError):
    """The benchmark cannot prepare its streams (ffmpeg missing, encode failed, server did not start)."""


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """How one benchmark stream is encoded."""

    name: str
    width: int
    height: int
    fps: int = 25
    gop_s: float = 2.0
    duration_s: float = 60.0
    bitrate_kbps: int = 4000

    @property
    def filename(self) -> str:
        return (f"{self.name}_{self.width}x{self.height}_{self.fps}fps_gop{self.gop_s:g}s_"
                f"{self.duration_s:g}s_{self.bitrate_kbps}k.mp4")


def source_footage(asset: str = SOURCE_ASSET) -> Path:
    """The real footage the benchmark clips are made from, fetched through the asset cache."""
    from core.assets import fetch

    return fetch(asset)


def encode_clip(spec: ClipSpec, out_dir: Path, source: Path | None = None) -> Path:
    """Encode ``spec`` once into ``out_dir`` (kept between runs); return its path."""
    out = out_dir / spec.filename
    if out.is_file() and out.stat().st_size > 0:
        return out
    if shutil.which("ffmpeg") is None:
        raise BenchSetupError("ffmpeg not found on PATH (scripts/install_system_deps.sh installs it)")
    src = source or source_footage()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    gop = max(1, round(spec.fps * spec.gop_s))
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-stream_loop", "-1", "-i", str(src), "-t", f"{spec.duration_s:g}",
        "-vf", f"scale={spec.width}:{spec.height}:flags=bicubic,fps={spec.fps}", "-an",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
        "-b:v", f"{spec.bitrate_kbps}k", "-maxrate", f"{spec.bitrate_kbps}k",
        "-bufsize", f"{2 * spec.bitrate_kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
        "-movflags", "+faststart", str(tmp),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BenchSetupError(f"ffmpeg could not encode {spec.filename} from {src}: {proc.stderr.strip()[-400:]}")
    tmp.rename(out)
    return out


class RtspServer:
    """The local GStreamer RTSP server as a context manager; ``url(name)`` gives a mount's address."""

    def __init__(self, mounts: dict[str, Path], port: int = 0, start_timeout_s: float = 20.0) -> None:
        self.mounts = mounts
        self.port = port
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None

    def url(self, name: str) -> str:
        if name not in self.mounts:
            raise KeyError(f"no RTSP mount {name!r}; have {sorted(self.mounts)}")
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> RtspServer:
        if not os.path.exists(SYSTEM_PYTHON):
            raise BenchSetupError(f"{SYSTEM_PYTHON} not found: the RTSP server needs the system python with gi")
        cmd = [SYSTEM_PYTHON, str(REPO / "benchmarks" / "rtsp_serve.py"), "--port", str(self.port)]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"{name}={path}"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                line = self._proc.stdout.readline()
                if line.startswith("READY"):
                    self.port = int(line.split()[1])
                    return self
            if self._proc.poll() is not None:
                break
        err = self._stop()
        raise BenchSetupError(f"RTSP server did not start: {err.strip()[-400:]}")

    def cpu_seconds(self) -> float | None:
        """User+system CPU the server process has used so far (Linux /proc), or None."""
        if self._proc is None:
            return None
        try:
            with open(f"/proc/{self._proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _stop(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.stderr.read() if proc.stderr else ""

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()
