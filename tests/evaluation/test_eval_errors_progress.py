"""What an engineer sees of an evaluation: each false positive and miss with its time, place and a
snapshot crop in report.md; a progress bar at a terminal, none when piped or in CI (a real
pseudo-terminal, the ``pty`` module)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from eval_helpers import CountingDetector

from camera_config.schema import Camera
from evaluation import report
from evaluation.labels import ClipLabels, load_labels
from evaluation.matching import match_clip, score
from evaluation.replay import Replayer
from evaluation.snapshots import FN_BGR, FP_BGR, write_snapshots

REPO = Path(__file__).resolve().parents[2]


def labels_for(tmp_path: Path, clip: Path) -> ClipLabels:
    """The scripted car (box 40-70 x 30-50 of 96x64) parks from 0 s; the kerb zone's limit is 1 s, so it
    opens at 1 s. The label wants it by 0.4 s, near the top left: one late false positive, one miss."""
    (tmp_path / clip.name).write_bytes(clip.read_bytes())
    full = [[0, 0], [1, 0], [1, 1], [0, 1]]
    doc: dict[str, Any] = {
        "version": 1, "clip": clip.name, "camera": "cam",
        "config": {"site": {"name": "t", "timezone": "UTC"}, "cameras": [{
            "id": "cam", "url": "file", "grid_cell": "G", "analysis_fps": 5.0,
            "zones": [{"id": "kerb", "type": "no_parking", "polygon": full, "limit_s": 1.0}]}]},
        "expected": [{"type": "illegal_parking", "zone": "kerb", "start": [0, 0.4],
                      "where": {"box": [0.05, 0.05, 0.3, 0.4], "units": "norm"}, "note": "wanted early"}],
    }
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_labels(path)


def test_report_shows_each_false_positive_and_miss_with_time_place_and_snapshot(tmp_path: Path,
                                                                               block_clip: Path) -> None:
    labels = labels_for(tmp_path, block_clip)
    detector = CountingDetector()

    def factory(camera: Camera) -> CountingDetector:
        return detector

    replayer = Replayer(tmp_path / "cache", factory)
    results = [match_clip(labels.name, replayer(labels, labels.camera), labels.expected, labels.quiet,
                          labels.exhaustive)]
    (fp,) = results[0].false_positives
    assert len(results[0].missed) == 1
    assert fp.reason == "late" and fp.incident.box == pytest.approx((40 / 96, 30 / 64, 70 / 96, 50 / 64), abs=0.01)
    shots = write_snapshots([labels], results, tmp_path / "report" / "snapshots")
    files = {s.kind: tmp_path / "report" / "snapshots" / s.file for s in shots[labels.name]}
    assert set(files) == {"FP", "FN"}
    for kind, colour in (("FP", FP_BGR), ("FN", FN_BGR)):
        img = cv2.imread(str(files[kind]))
        assert img is not None and 0 < img.shape[0] <= 64 and 0 < img.shape[1] <= 96
        drawn = np.all(np.abs(img.astype(int) - np.array(colour)) <= 40, axis=2)
        assert drawn.sum() >= 20, f"{kind}: the box is drawn on the crop"
    fp_img = cv2.imread(str(files["FP"]))
    assert fp_img is not None and (fp_img > 200).all(axis=2).sum() > 100, "the FP crop shows the white block"
    md = report.eval_markdown(score(results), results, "scores.png", [str(labels.path)], shots)
    section = md[md.index("## False positives and misses"):md.index("## Per clip")]
    fp_row = next(ln for ln in section.splitlines() if ln.startswith("| FP 1 |"))
    assert "| 1.0 |" in fp_row and "late" in fp_row and "[0.417, 0.469, 0.729, 0.781]" in fp_row
    assert f"(snapshots/{files['FP'].name})" in fp_row
    fn_row = next(ln for ln in section.splitlines() if ln.startswith("| FN 1 |"))
    assert "| 0-0.4 |" in fn_row and "[0.050, 0.050, 0.300, 0.400]" in fn_row and "wanted early" in fn_row
    assert f"(snapshots/{files['FN'].name})" in fn_row
    assert " box=[0.417, 0.469, 0.729, 0.781] (late)" in "\n".join(report.clip_lines(results))


# --- progress bars -----------------------------------------------------------------------------------

def eval_command(tmp_path: Path, block_clip: Path) -> list[str]:
    labels = labels_for(tmp_path, block_clip)
    return [sys.executable, "-m", "patrol.cli", "eval", str(labels.path), "--cache-dir", str(tmp_path / "cache"),
            "--quiet"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PATROL_PROGRESS")}
    env.update(extra)
    return env


def run_in_pty(cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal; everything it wrote, and its exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_eval_shows_progress_at_a_terminal_and_none_when_piped_or_in_ci(tmp_path: Path, block_clip: Path) -> None:
    cmd = eval_command(tmp_path, block_clip)
    # the detections are computed on the first run; the cache is made by the real detector here, so
    # warm it up first to keep the runs alike
    warm = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=300)
    assert warm.returncode == 0, warm.stderr
    code, tty_out = run_in_pty(cmd, clean_env())
    assert code == 0, tty_out
    assert "eval:" in tty_out and "0/1" in tty_out and "1/1" in tty_out and "\r" in tty_out, tty_out
    piped = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=300)
    assert piped.returncode == 0
    assert "eval:" not in piped.stderr and "0/1" not in piped.stderr and "\r" not in piped.stderr + piped.stdout
    assert "overall" in piped.stdout  # the same run, its table
    code, ci_out = run_in_pty(cmd, clean_env(CI="true"))
    assert code == 0 and "0/1" not in ci_out and "overall" in ci_out
