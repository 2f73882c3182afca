"""``patrol eval LABELS...``, ``patrol eval export-labels ...`` and ``patrol tune LABELS... --grid PARAMS``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camera_config.schema import Camera
from core.assets import default_cache_dir
from core.progress import Counter, progress, silence
from evaluation import report
from evaluation.labels import ClipLabels, validate_label_files
from evaluation.matching import ClipResult, Observed, match_clip, score
from evaluation.replay import Replayer, default_detector_factory
from evaluation.snapshots import write_snapshots
from evaluation.tune import OBJECTIVES, camera_patch, load_grid, meets, patch_yaml, tune_per_camera

log = logging.getLogger("patrol.eval")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval", help="replay labelled clips and score incidents against the labels",
        description="Validate every label file first (every problem, with file and field), then replay each "
                    "labelled clip (detections cached), match incidents to labels by type, zone, time window "
                    "and place (`where`), and report TP/FP/FN, precision, recall, F1, start delays and "
                    "place errors. "
                    "`patrol eval export-labels --db URL --camera ID --clip FILE [--config FILE] [--clip-start T]` "
                    "turns operator verdicts into a label file instead.")
    p.add_argument("labels", nargs="+", metavar="LABELS", help="label YAML files (or: export-labels)")
    _cache_args(p)
    p.add_argument("--json", metavar="FILE", help="write the scores and per-clip matches as JSON ('-': stdout)")
    p.add_argument("--report", metavar="DIR", help="write report.md and scores.png into DIR")
    p.add_argument("--quiet", action="store_true", help="print the table only, not each match")
    g = p.add_argument_group("export-labels")
    g.add_argument("--db", metavar="URL", help="review database URL (export-labels)")
    g.add_argument("--camera", metavar="ID", help="camera id (export-labels)")
    g.add_argument("--clip", metavar="FILE", help="the recorded clip the verdicts belong to (export-labels)")
    g.add_argument("--clip-start", metavar="TIME",
                   help="wall time of the clip's first frame: Unix seconds or ISO 8601; default: the file's "
                        "creation_time (export-labels)")
    g.add_argument("--config", metavar="FILE",
                   help="site config of the camera; default: the file in camera_config/sites that has it "
                        "(export-labels)")
    g.add_argument("--out", metavar="FILE", help="write the label file here instead of stdout (export-labels)")
    p.set_defaults(func=run_eval)

    t = sub.add_parser(
        "tune", help="sweep zone parameters over cached detections and propose a config patch",
        description="Per camera (each label file's camera), sweep every combination of the grid's zone "
                    "parameters that select its zones over its labelled clips (detections from the cache: only "
                    "tracking and rules re-run; limit_s held fixed unless --tune-limits), report the "
                    "precision/recall trade-off and write each camera's most robust best setting (the middle "
                    "of the best plateau) as a reviewable config patch for `patrol config apply`.")
    t.add_argument("labels", nargs="+", metavar="LABELS", help="label YAML files")
    t.add_argument("--grid", required=True, metavar="PARAMS", help="YAML: zone parameter -> list of values")
    t.add_argument("--objective", default="f1", choices=OBJECTIVES, help="what the chosen setting maximises")
    t.add_argument("--out", metavar="FILE",
                   help="write the config patch (YAML) here; default: stdout (the table then goes to stderr)")
    t.add_argument("--report", metavar="DIR", help="write tune.md, pr.png and trials.json into DIR")
    t.add_argument("--json", metavar="FILE", help="write every trial's scores as JSON ('-': stdout)")
    t.add_argument("--tune-limits", action="store_true",
                   help="sweep the zones' limit_s too (by default a limit is policy: held at the configured value)")
    _cache_args(t)
    t.set_defaults(func=run_tune)


def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", metavar="DIR", help="detection cache folder (default: $PATROL_CACHE/detections)")
    p.add_argument("--refresh", action="store_true", help="run the detector again even if a cache matches")


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "detections"


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


ReplayFn = Callable[[ClipLabels, Camera], list[Observed]]


def evaluate(label_files: Sequence[str], replayer: ReplayFn) -> list[ClipResult]:
    """Validate every label file (all problems of all files in one :class:`LabelError`), then
    replay and match each clip. Nothing is replayed when any file is wrong."""
    labels = validate_label_files(label_files)
    return [match_clip(lab.name, replayer(lab, lab.camera), lab.expected, lab.quiet, lab.exhaustive)
            for lab in labels]


def run_eval(args: argparse.Namespace) -> int:
    if args.labels[0] == "export-labels":
        from evaluation.export import run_export

        return run_export(args)
    replayer = Replayer(_cache_dir(args), default_detector_factory, refresh=args.refresh)
    labels = validate_label_files(args.labels)  # every file checked before the first replay
    results = [match_clip(lab.name, replayer(lab, lab.camera), lab.expected, lab.quiet, lab.exhaustive)
               for lab in progress(labels, desc="eval", unit="clip", quiet=_json_mode(args))]
    scores = score(results)
    text_out = sys.stderr if args.json == "-" else sys.stdout  # stdout stays pure JSON when it carries JSON
    print(report.score_table(scores), file=text_out)
    if not args.quiet:
        print(file=text_out)
        print("\n".join(report.clip_lines(results)), file=text_out)
    if args.json:
        _write(args.json, json.dumps(report.eval_json(scores, results), indent=2) + "\n")
    if args.report:
        folder = Path(args.report)
        report.plot_eval(scores, folder / "scores.png")
        shots = write_snapshots(labels, results, folder / "snapshots")
        (folder / "report.md").write_text(report.eval_markdown(scores, results, "scores.png", args.labels, shots),
                                          encoding="utf-8")
        print(f"report: {folder / 'report.md'}", file=sys.stderr)
    return 0


def run_tune(args: argparse.Namespace) -> int:
    labels = validate_label_files(args.labels)
    params = load_grid(args.grid)
    replayer = Replayer(_cache_dir(args), default_detector_factory, refresh=args.refresh)
    quiet = _json_mode(args)
    for lab in progress(labels, desc="load clips", unit="clip", quiet=quiet):
        replayer.load(lab)  # detect (or load) every clip before timing the sweep
    started = time.perf_counter()
    with Counter(desc="tune", unit="setting", quiet=quiet) as bar:
        tunings = tune_per_camera(labels, params, replayer, args.objective, tune_limits=args.tune_limits,
                                  progress=bar.goto)
    elapsed = time.perf_counter() - started
    patch = camera_patch(tunings, args.objective, args.tune_limits)
    text = patch_yaml(patch)
    table = "\n\n".join(report.camera_tune_table(t) for t in tunings)
    # stdout carries one thing: the JSON (--json -), else the patch (no --out), else the table
    patch_to_stdout = not args.out and args.json != "-"
    print(table, file=sys.stderr if args.json == "-" or patch_to_stdout else sys.stdout)
    unmet = [t.camera for t in tunings if not meets(args.objective, t.chosen)]
    tried = sum(len(t.trials) for t in tunings)
    print(f"\n{tried} settings over {len(tunings)} camera(s), {len(labels)} clips in {elapsed:.1f} s; "
          f"objective {args.objective}" + (f" NOT met by any setting for {', '.join(unmet)} (best shown)"
                                           if unmet else "")
          + ("" if args.tune_limits else "; limits held at the configured values (--tune-limits to sweep them)"),
          file=sys.stderr)
    if args.out:
        _write(args.out, text)
        print(f"config patch: {args.out} (review, then: patrol config apply {args.out})", file=sys.stderr)
    elif patch_to_stdout:
        sys.stdout.write(text)
    if args.json:
        _write(args.json, json.dumps({"cameras": {t.camera: {
            "default": t.default.summary(), "chosen": t.chosen.summary(), "held_fixed": t.held,
            "trials": [x.summary() for x in t.trials]} for t in tunings}}, indent=2) + "\n")
    if args.report:
        folder = Path(args.report)
        pngs = []
        for t in tunings:
            if t.trials:
                png = f"pr-{t.camera}.png"
                report.plot_pr(t.default, t.trials, t.chosen, folder / png)
                pngs.append(png)
        (folder / "tune.md").write_text(report.tune_markdown(table, pngs, text), encoding="utf-8")
        (folder / "trials.json").write_text(json.dumps({t.camera: [x.summary() for x in t.trials]
                                                        for t in tunings}, indent=2), encoding="utf-8")
    return 0


def _json_mode(args: argparse.Namespace) -> bool:
    """JSON on stdout or in the log: no progress bar anywhere (core.progress.silence)."""
    quiet = args.json == "-" or bool(getattr(args, "log_json", False))
    if quiet:
        silence()
    return quiet
