"""Operator verdicts as labels: ``patrol eval export-labels --db URL --camera ID --clip FILE ...``.

The review database knows, per incident, its type, zone, when its problem started (``started_at``),
when it opened (the ``opened`` event) and the operators' verdicts. For a recorded clip of the camera
that began at ``--clip-start`` (wall time of its first frame; default: the file's ``creation_time``
tag), every incident that opened while the clip ran becomes (the camera's config is ``--config``,
default: the one site file under ``camera_config/sites`` with that camera):

* **confirmed** (latest verdict ``confirm``) -> an expected incident of its type and zone, start
  window ``[started - clip start, opened - clip start + slack]`` (clamped at 0), and, when the
  incident has a location, ``where``: a normalised box of ``PLACE_HALF`` around it, with the
  location as its ground point;
* **rejected** (latest verdict ``reject``) -> a quiet span of its type and zone around its
  opening, ``opened +- slack``: the rules must not fire there again.

Incidents without a verdict are left out. The labels are not exhaustive (``exhaustive: false``):
an operator reviewed what fired, not everything that happened, so an unreviewed incident in a
replay is reported as unlabelled instead of being counted as a false positive.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
from sqlalchemy import select

from camera_config.loader import load_config
from core.errors import ConfigError, PatrolError
from core.redact import redact_text
from evaluation.labels import LabelDoc, LabelError, dump_labels, parse_labels, sha256_file

DEFAULT_SLACK_S = 30.0

PLACE_HALF = 0.05
"""Half the side of an exported ``where`` box, normalised: the lifecycle's ``place_radius`` (two
findings this close are one incident), so a replay's incident at the place the operator confirmed
matches it and one at a neighbouring place does not."""


@dataclass(frozen=True)
class Reviewed:
    incident_id: str
    type: str
    zone: str | None
    started_at: float
    opened_at: float
    closed_at: float | None
    verdict: str
    reason: str
    location: tuple[float, float] | None = None


def parse_time(text: str) -> float:
    """Unix seconds, or an ISO 8601 time (with an offset; without one it is taken as UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PatrolError(f"--clip-start: {text!r} is neither Unix seconds nor an ISO 8601 time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def clip_duration(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
            last = 0.0
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    last = float(frame.pts * frame.time_base)
            return last
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise PatrolError(f"--clip: cannot read video {path}: {exc}") from exc


def clip_creation_time(path: Path) -> float | None:
    """The container's ``creation_time`` tag (recorders write the start of the recording), if any."""
    try:
        with av.open(str(path)) as container:
            tag = container.metadata.get("creation_time") or container.streams.video[0].metadata.get("creation_time")
    except (av.FFmpegError, OSError, IndexError):
        return None
    if not tag:
        return None
    try:
        return parse_time(str(tag).replace("Z", "+00:00"))
    except PatrolError:
        return None


SITES_DIR = Path(__file__).resolve().parents[1] / "camera_config" / "sites"


def find_site_config(camera_id: str, sites_dir: Path = SITES_DIR) -> Path:
    """The one site file under ``camera_config/sites`` that has ``camera_id``."""
    found = []
    for path in sorted(sites_dir.glob("*.yaml")):
        try:
            site = load_config(path)
        except ConfigError:
            continue
        if any(c.id == camera_id for c in site.cameras):
            found.append(path)
    if len(found) != 1:
        where = ", ".join(map(str, found)) if found else f"no file in {sites_dir}"
        raise PatrolError(f"--config: camera {camera_id!r} is in {where}; name the site file with --config")
    return found[0]


def reviewed_incidents(db_url: str, camera_id: str, since: float, until: float) -> list[Reviewed]:
    """Incidents of ``camera_id`` that opened in ``[since, until]`` and have a verdict (latest wins)."""
    from storage.db import Database
    from storage.models import Incident, IncidentEventRow, Verdict

    db = Database(db_url)
    try:
        with db.transaction() as s:
            opened = {r.incident_id: r.event_at for r in s.scalars(
                select(IncidentEventRow).join(Incident, Incident.id == IncidentEventRow.incident_id)
                .where(Incident.camera_id == camera_id, IncidentEventRow.event == "opened"))}
            verdicts: dict[str, Any] = {}
            for v in s.scalars(select(Verdict).join(Incident, Incident.id == Verdict.incident_id)
                               .where(Incident.camera_id == camera_id).order_by(Verdict.at, Verdict.id)):
                verdicts[v.incident_id] = v
            out = []
            for inc in s.scalars(select(Incident).where(Incident.camera_id == camera_id)
                                 .order_by(Incident.started_at, Incident.id)):
                at = opened.get(inc.id, inc.started_at)
                verdict = verdicts.get(inc.id)
                if verdict is None or not since <= at <= until:
                    continue
                loc = None if inc.location_x is None or inc.location_y is None else (inc.location_x,
                                                                                     inc.location_y)
                out.append(Reviewed(inc.id, inc.type, inc.zone_id, inc.started_at, at, inc.closed_at,
                                    verdict.verdict, verdict.reason or "", loc))
            return out
    finally:
        db.dispose()


def labels_from_verdicts(reviewed: list[Reviewed], *, clip: str, clip_sha256: str, camera: str,
                         config: str, clip_start: float, slack_s: float = DEFAULT_SLACK_S) -> dict[str, Any]:
    """The label document (as a mapping) for one clip from reviewed incidents."""
    expected: list[dict[str, Any]] = []
    quiet: list[dict[str, Any]] = []
    for r in reviewed:
        opened = max(0.0, r.opened_at - clip_start)
        if r.zone is None:
            continue  # camera-level incidents (camera_offline) are not the rules' business
        note = f"incident {r.incident_id}: operator {r.verdict}" + (f" ({r.reason})" if r.reason else "")
        if r.verdict == "confirm":
            started = max(0.0, min(r.started_at - clip_start, opened))
            item: dict[str, Any] = {"type": r.type, "zone": r.zone,
                                    "start": [round(started, 2), round(opened + slack_s, 2)]}
            if r.location is not None:
                item["where"] = {"box": place_box(r.location), "units": "norm",
                                 "point": [round(r.location[0], 4), round(r.location[1], 4)]}
            expected.append({**item, "note": note})
        elif r.verdict == "reject":
            quiet.append({"from": round(max(0.0, opened - slack_s), 2), "to": round(opened + slack_s, 2),
                          "types": [r.type], "zones": [r.zone], "note": note})
    return {"version": 1, "clip": clip, "clip_sha256": clip_sha256, "camera": camera, "config": config,
            "recorded_at": datetime.fromtimestamp(clip_start, UTC).isoformat(),
            "exhaustive": False, "expected": expected, "quiet": quiet,
            "note": f"exported from operator verdicts: {len(expected)} confirmed, {len(quiet)} rejected"}


def place_box(location: tuple[float, float], half: float = PLACE_HALF) -> list[float]:
    """A normalised ``where`` box of ``half`` around a location, clipped to the frame."""
    x, y = location
    return [round(max(0.0, x - half), 4), round(max(0.0, y - half), 4), round(min(1.0, x + half), 4),
            round(min(1.0, y + half), 4)]


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path.resolve(), base.resolve())


def run_export(args: argparse.Namespace) -> int:
    missing = [f"--{n}" for n in ("db", "camera", "clip") if not getattr(args, n, None)]
    if missing or len(args.labels) != 1:
        raise PatrolError("export-labels needs " + ", ".join(missing or ["no LABELS arguments"]) +
                          " (usage: patrol eval export-labels --db URL --camera ID --clip FILE [--config FILE] "
                          "[--clip-start TIME] [--out FILE])")
    clip = Path(args.clip)
    if not clip.is_file():
        raise PatrolError(f"--clip: {clip} does not exist")
    config = Path(args.config) if args.config else find_site_config(args.camera)
    try:
        site = load_config(config)
    except ConfigError as exc:
        raise PatrolError("--config: " + "; ".join(exc.problems)) from exc
    if args.camera not in {c.id for c in site.cameras}:
        raise PatrolError(f"--camera: {config} has no camera {args.camera!r}")
    if args.clip_start:
        start = parse_time(args.clip_start)
    else:
        found = clip_creation_time(clip)
        if found is None:
            raise PatrolError(f"--clip-start: {clip} carries no creation_time; give the wall time of its first frame")
        start = found
    duration = clip_duration(clip)
    reviewed = reviewed_incidents(args.db, args.camera, start, start + duration)
    base = Path(args.out).parent if args.out else Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    doc = labels_from_verdicts(reviewed, clip=_rel(clip, base), clip_sha256=sha256_file(clip),
                               camera=args.camera, config=_rel(config, base), clip_start=start)
    out_path = Path(args.out) if args.out else base / "exported.yaml"
    try:
        parsed = parse_labels(doc, out_path)  # the exported file must load as it is written
    except LabelError as exc:
        raise PatrolError(f"exported labels do not validate: {redact_text(str(exc))}") from exc
    text = "# Labels exported from operator verdicts (patrol eval export-labels).\n" + dump_labels(parsed.doc)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{args.out}: {len(parsed.expected)} expected, {len(parsed.quiet)} quiet span(s)")
    else:
        print(text, end="")
    return 0


__all__ = ["LabelDoc", "Reviewed", "labels_from_verdicts", "parse_time", "place_box", "reviewed_incidents",
           "run_export"]
