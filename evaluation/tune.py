"""Sweep zone parameters over labelled clips and pick the best setting for an objective.

A grid is YAML, one key per parameter and a list of values to try::

    limit_s: [5, 10, 20]                    # every zone that has the field
    no_parking:still_tolerance: [0.1, 0.25] # zones of one type (any registered zone type)
    kerb_east:min_score: [0.25, 0.4]        # one zone, by id
    weights.stall_object: [0.5, 1.0]        # nested fields by dots

Every combination (the Cartesian product) is applied to each clip's camera config, validated by
the config's own schema (bounds included), replayed through ``replay_fn`` and scored against the
labels. A clip's result depends only on its camera's effective config, so combinations that leave
a camera unchanged reuse its earlier result: a sweep over parking parameters replays a clip
without parking zones once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from camera_config.schema import Camera, zone_types
from core.errors import PatrolError
from evaluation.labels import ClipLabels, LabelError, read_yaml
from evaluation.matching import OVERALL, ClipResult, Observed, Score, match_clip, score

MAX_COMBINATIONS = 100_000
Objective = Literal["f1", "recall@precision>=0.9"]
OBJECTIVES: tuple[str, ...] = ("f1", "recall@precision>=0.9")

ReplayFn = Callable[[ClipLabels, Camera], list[Observed]]
"""(clip labels, camera with the setting applied) -> the incidents the replay opened."""


class GridError(PatrolError):
    """A parameter grid is malformed or names parameters no labelled zone has."""


@dataclass(frozen=True)
class GridParam:
    key: str
    selector: str | None
    path: tuple[str, ...]
    values: tuple[Any, ...]

    def applies_to(self, zone: Mapping[str, Any]) -> bool:
        if self.selector is not None and self.selector not in (zone.get("type"), zone.get("id")):
            return False
        node: Any = zone
        for part in self.path:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True


def parse_grid(raw: Any, where: str = "<grid>") -> list[GridParam]:
    if not isinstance(raw, dict) or not raw:
        raise GridError(f"{where}: expected a mapping of parameter name -> list of values")
    params = []
    for key, values in raw.items():
        if not isinstance(key, str) or not key:
            raise GridError(f"{where}: parameter names must be text, got {key!r}")
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}: {key}: expected a non-empty list of values, got {values!r}")
        if any(isinstance(v, dict | list) for v in values):
            raise GridError(f"{where}: {key}: values must be numbers, text or booleans")
        selector, _, name = key.rpartition(":")
        path = tuple(name.split("."))
        if not all(path) or name in ("id", "type", "polygon"):
            raise GridError(f"{where}: {key}: not a tunable zone parameter")
        params.append(GridParam(key, selector or None, path, tuple(dict.fromkeys(values))))
    return params


def load_grid(path: str | Path) -> list[GridParam]:
    p = Path(path)
    try:
        raw = read_yaml(p)
    except LabelError as exc:
        raise GridError(str(exc)) from exc
    return parse_grid(raw, str(p))


def _set(node: dict[str, Any], path: tuple[str, ...], value: Any) -> Any:
    for part in path[:-1]:
        node = node[part]
    old = node[path[-1]]
    node[path[-1]] = value
    return old


def apply_setting(camera: Camera, setting: Mapping[GridParam, Any]) -> Camera:
    """A copy of ``camera`` with the setting applied to every zone each parameter selects."""
    raw = camera.model_dump(mode="python")
    raw["url"] = camera.url  # keep the SecretStr as is
    for zone in raw["zones"]:
        for param, value in setting.items():
            if param.applies_to(zone):
                _set(zone, param.path, value)
    try:
        return Camera.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        shown = {p.key: v for p, v in setting.items()}
        raise GridError(f"camera {camera.id!r}: setting {shown} is not a valid config: {loc}: {err['msg']}") \
            from exc


def config_digest(camera: Camera) -> str:
    data = camera.model_dump(mode="json", exclude={"url"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def current_values(labels: Sequence[ClipLabels], params: Sequence[GridParam]) -> dict[str, list[Any]]:
    """For each parameter, the distinct values the labelled configs use now (in order of appearance)."""
    out: dict[str, list[Any]] = {}
    for param in params:
        seen: list[Any] = []
        for lab in labels:
            for zone in lab.camera.model_dump(mode="python")["zones"]:
                if param.applies_to(zone):
                    node: Any = zone
                    for part in param.path:
                        node = node[part]
                    if node not in seen:
                        seen.append(node)
        if not seen:
            hint = ""
            if param.selector is not None and param.selector not in zone_types():
                hint = (f" ({param.selector!r} is no zone id of theirs, nor a zone type: "
                        f"{', '.join(zone_types())})")
            raise GridError(f"grid parameter {param.key!r} matches no zone of the labelled cameras{hint}")
        out[param.key] = seen
    return out


@dataclass
class Trial:
    """One setting and how it scored."""

    setting: dict[str, Any]
    scores: dict[str, Score]
    is_default: bool = False
    changes: int = 0
    """How many parameters differ from what the labelled configs use now (fewer wins ties)."""
    results: list[ClipResult] = field(default_factory=list)

    @property
    def overall(self) -> Score:
        return self.scores[OVERALL]

    def summary(self) -> dict[str, Any]:
        o = self.overall
        delays = sorted(o.delays)
        return {"setting": self.setting, "precision": round(o.precision, 4), "recall": round(o.recall, 4),
                "f1": round(o.f1, 4), "tp": o.tp, "fp": o.fp, "fn": o.fn,
                "median_delay_s": round(delays[len(delays) // 2], 2) if delays else None}


def evaluate_setting(labels: Sequence[ClipLabels], setting: Mapping[GridParam, Any], replay_fn: ReplayFn,
                     memo: dict[tuple[str, str], list[Observed]] | None = None) -> list[ClipResult]:
    results = []
    for lab in labels:
        cam = apply_setting(lab.camera, setting) if setting else lab.camera
        key = (str(lab.path), config_digest(cam))
        if memo is not None and key in memo:
            incidents = memo[key]
        else:
            incidents = replay_fn(lab, cam)
            if memo is not None:
                memo[key] = incidents
        results.append(match_clip(lab.name, incidents, lab.expected, lab.quiet, lab.exhaustive))
    return results


def sweep(labels: Sequence[ClipLabels], params: Sequence[GridParam], replay_fn: ReplayFn,
          progress: Callable[[int, int], None] | None = None) -> tuple[Trial, list[Trial]]:
    """Score the labelled configs as they are (the default) and every combination of the grid."""
    current = current_values(labels, params)  # raises GridError if a parameter selects no zone
    total = 1
    for p in params:
        total *= len(p.values)
    if total > MAX_COMBINATIONS:
        raise GridError(f"grid has {total} combinations; at most {MAX_COMBINATIONS} are allowed")
    memo: dict[tuple[str, str], list[Observed]] = {}
    default_results = evaluate_setting(labels, {}, replay_fn, memo)
    default = Trial({}, score(default_results), is_default=True, results=default_results)
    trials = []
    for i, combo in enumerate(itertools.product(*(p.values for p in params))):
        setting = dict(zip(params, combo, strict=True))
        res = evaluate_setting(labels, setting, replay_fn, memo)
        changes = sum(1 for p, v in setting.items() if v not in current[p.key])
        trials.append(Trial({p.key: v for p, v in setting.items()}, score(res), results=res, changes=changes))
        if progress is not None:
            progress(i + 1, total)
    return default, trials


def _delay(t: Trial) -> float:
    d = sorted(t.overall.delays)
    return d[len(d) // 2] if d else 0.0


def rank_key(objective: str, trial: Trial) -> tuple[float, ...]:
    """Larger is better. Ties: higher F1 / recall, shorter median start delay, fewer changed parameters."""
    o = trial.overall
    if objective == "f1":
        return (o.f1, o.recall, o.precision, -_delay(trial), -trial.changes)
    if objective == "recall@precision>=0.9":
        feasible = 1.0 if o.precision >= 0.9 else 0.0
        return (feasible, o.recall if feasible else o.precision, o.f1, -_delay(trial), -trial.changes)
    raise GridError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def meets(objective: str, trial: Trial) -> bool:
    return objective != "recall@precision>=0.9" or trial.overall.precision >= 0.9


def score_key(objective: str, trial: Trial) -> tuple[float, ...]:
    """What the objective scores (larger is better), without the tie-breaks: trials with equal keys
    form a plateau."""
    return rank_key(objective, trial)[:3]


def _axes(trials: Sequence[Trial]) -> dict[str, list[Any]]:
    """Each parameter's values in grid order (the order the Cartesian product visits them)."""
    axes: dict[str, list[Any]] = {}
    for t in trials:
        for k, v in t.setting.items():
            values = axes.setdefault(k, [])
            if v not in values:
                values.append(v)
    return axes


def margins(trial: Trial, plateau: set[tuple[int, ...]], axes: Mapping[str, Sequence[Any]]) -> list[int]:
    """Per parameter, how many grid steps ``trial`` may move either way and stay on the plateau:
    1 + the smaller of the plateau runs below and above it along that parameter, the others held
    (at the grid's first or last value the run on that side is 0)."""
    keys = list(axes)
    here = [list(axes[k]).index(trial.setting[k]) for k in keys]
    out = []
    for a, k in enumerate(keys):
        runs = []
        for step in (-1, 1):
            n, pos = 0, list(here)
            while True:
                pos[a] += step
                if not 0 <= pos[a] < len(axes[k]) or tuple(pos) not in plateau:
                    break
                n += 1
            runs.append(n)
        out.append(1 + min(runs))
    return out


def _off_centre(trial: Trial, plateau_points: Sequence[tuple[int, ...]], axes: Mapping[str, Sequence[Any]],
                only: Sequence[int]) -> float:
    """Squared distance, in grid steps over each parameter's span, from the middle of the plateau's
    extent, over the parameters numbered in ``only``."""
    keys = list(axes)
    total = 0.0
    for a in only:
        k = keys[a]
        lo = min(p[a] for p in plateau_points)
        hi = max(p[a] for p in plateau_points)
        span = max(len(axes[k]) - 1, 1)
        total += ((list(axes[k]).index(trial.setting[k]) - (lo + hi) / 2) / span) ** 2
    return total


def _at_edge(trial: Trial, plateau: set[tuple[int, ...]], axes: Mapping[str, Sequence[Any]],
             only: Sequence[int]) -> int:
    """How many of the parameters numbered in ``only`` sit at the grid's first or last value although
    the plateau goes on inward from there (what lies beyond the grid's edge was never scored)."""
    keys = list(axes)
    here = tuple(list(axes[k]).index(trial.setting[k]) for k in keys)
    n = 0
    for a in only:
        last = len(axes[keys[a]]) - 1
        inward = 1 if here[a] == 0 else -1 if here[a] == last else 0
        if inward and (*here[:a], here[a] + inward, *here[a + 1:]) in plateau:
            n += 1
    return n


def indifferent_axes(plateau: set[tuple[int, ...]], axes: Mapping[str, Sequence[Any]]) -> list[int]:
    """Parameters (by number) the best score does not depend on: from every plateau setting, every
    value of the parameter is on the plateau too."""
    sizes = [len(v) for v in axes.values()]
    out = []
    for a, n in enumerate(sizes):
        if all((*p[:a], i, *p[a + 1:]) in plateau for p in plateau for i in range(n)):
            out.append(a)
    return out


def plateau_of(objective: str, trials: Sequence[Trial]) -> list[Trial]:
    """The trials that share the best objective score (empty without trials)."""
    if not trials:
        return []
    best = max(score_key(objective, t) for t in trials)
    return [t for t in trials if score_key(objective, t) == best]


def choose(objective: str, default: Trial, trials: Sequence[Trial]) -> Trial:
    """The best trial for the objective, robust to where the grid's values happen to lie.

    The default setting wins when no trial scores better (change nothing needlessly). Otherwise,
    among the trials tied at the best score (the plateau), the one whose every parameter the score
    depends on can move furthest either way and stay on the plateau wins (maximin over those
    parameters of :func:`margins`), then the one changing fewest parameters (a parameter the score
    does not depend on, :func:`indifferent_axes`, keeps its configured value when the grid has it),
    then the one nearest the middle of the plateau, then the shortest median start delay. A grid
    value at the plateau's edge is a setting one step from scoring worse; the grid's first value
    (the old tie-break's pick for ``limit_s``, by start delay) is chosen only when the plateau
    allows nothing else.
    """
    plateau = plateau_of(objective, trials)
    if not plateau or score_key(objective, default) >= score_key(objective, plateau[0]):
        return default
    axes = _axes(trials)
    keys = list(axes)
    points = [tuple(list(axes[k]).index(t.setting[k]) for k in keys) for t in plateau]
    on = set(points)
    indifferent = indifferent_axes(on, axes)
    telling = [a for a in range(len(keys)) if a not in indifferent]

    def robust(t: Trial) -> tuple[Any, ...]:
        m = margins(t, on, axes)
        m = [m[a] for a in telling]
        return (sorted(m), sum(m), -_at_edge(t, on, axes, telling), -t.changes,
                -_off_centre(t, points, axes, telling), -_off_centre(t, points, axes, indifferent), -_delay(t))

    return max(plateau, key=robust)


def _zone_changes(lab: ClipLabels, setting: Mapping[GridParam, Any]) -> dict[str, dict[str, Any]]:
    """Per zone of the clip's camera, each field the setting changes: ``{field: {old, new}}``."""
    zones_out: dict[str, Any] = {}
    for zone in lab.camera.model_dump(mode="python")["zones"]:
        changes: dict[str, Any] = {}
        for param, value in setting.items():
            if not param.applies_to(zone):
                continue
            node: Any = zone
            for part in param.path:
                node = node[part]
            if node != value:
                changes[".".join(param.path)] = {"old": node, "new": value}
        if changes:
            zones_out[zone["id"]] = changes
    return zones_out


def config_patch(labels: Sequence[ClipLabels], params: Sequence[GridParam], chosen: Trial, default: Trial,
                 objective: str, trials_run: int) -> dict[str, Any]:
    """The reviewable patch of one setting for all clips: per camera and zone, each changed field
    ``{old, new}``, and the scores (see :func:`camera_patch` for one setting per camera)."""
    by_key = {p.key: p for p in params}
    setting = {by_key[k]: v for k, v in chosen.setting.items()}
    cameras: dict[str, Any] = {}
    for lab in labels:
        zones_out = _zone_changes(lab, setting)
        if zones_out:
            cam = cameras.setdefault(lab.camera.id, {"labels": [], "zones": {}})
            cam["labels"].append(str(lab.path))
            for zid, ch in zones_out.items():
                cam["zones"].setdefault(zid, {}).update(ch)
    return {
        "objective": objective,
        "objective_met": meets(objective, chosen),
        "settings_tried": trials_run,
        "clips": [str(lab.path) for lab in labels],
        "scores": {"before": default.summary(), "after": chosen.summary()},
        "cameras": cameras,
    }


# --- per camera -------------------------------------------------------------------------------------

LIMIT_FIELDS = frozenset({"limit_s"})
"""Zone fields that are policy, not parameters to fit: how long a car may stand, how long an object
may lie, is the operator's rule (DOMAIN.md), and on short clips every limit below the clip's dwell
scores the same. Held at the configured value unless ``--tune-limits``."""


def is_limit(param: GridParam) -> bool:
    return param.path[-1] in LIMIT_FIELDS


@dataclass
class CameraTuning:
    """The sweep of one camera over its own label files: its grid, its trials and its choice."""

    camera: str
    labels: list[ClipLabels]
    params: list[GridParam]
    held: list[str]
    """Grid keys that select this camera's zones but were held at the configured values (limits)."""
    default: Trial
    trials: list[Trial]
    chosen: Trial
    objective: str

    @property
    def plateau(self) -> list[Trial]:
        return plateau_of(self.objective, self.trials)


def params_for(labels: Sequence[ClipLabels], params: Sequence[GridParam],
               tune_limits: bool = False) -> tuple[list[GridParam], list[str]]:
    """The grid parameters that select a zone of these clips' cameras, and the keys held fixed."""
    zones = [z for lab in labels for z in lab.camera.model_dump(mode="python")["zones"]]
    applies = [p for p in params if any(p.applies_to(z) for z in zones)]
    used = [p for p in applies if tune_limits or not is_limit(p)]
    return used, [p.key for p in applies if p not in used]


def tune_per_camera(labels: Sequence[ClipLabels], params: Sequence[GridParam], replay_fn: ReplayFn,
                    objective: str = "f1", *, tune_limits: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> list[CameraTuning]:
    """Sweep each camera (the label files' ``camera``) over the grid parameters that select its zones,
    limits held fixed unless ``tune_limits``, and choose per camera (:func:`choose`). A parameter
    that selects no zone of any labelled camera is a :class:`GridError`."""
    current_values(labels, params)  # every parameter must select some zone
    groups: dict[str, list[ClipLabels]] = {}
    for lab in labels:
        groups.setdefault(lab.camera.id, []).append(lab)
    plan = [(cam, group, *params_for(group, params, tune_limits)) for cam, group in groups.items()]
    sizes = [math.prod(len(p.values) for p in used) if used else 0 for _, _, used, _ in plan]
    total, done = sum(sizes), 0
    out = []
    for (cam, group, used, held), size in zip(plan, sizes, strict=True):
        if used:
            step = None if progress is None else (lambda i, _n, base=done: progress(base + i, total))
            default, trials = sweep(group, used, replay_fn, progress=step)
        else:
            res = evaluate_setting(group, {}, replay_fn)
            default, trials = Trial({}, score(res), is_default=True, results=res), []
        done += size
        out.append(CameraTuning(cam, group, used, held, default, trials, choose(objective, default, trials),
                                objective))
    return out


def combined(trials: Sequence[Trial]) -> Trial:
    """One trial scoring the clip results of several (each camera's choice, say) together."""
    results = [r for t in trials for r in t.results]
    return Trial({}, score(results), results=results)


def camera_patch(tunings: Sequence[CameraTuning], objective: str, tune_limits: bool = False) -> dict[str, Any]:
    """The reviewable patch of a per-camera sweep: per camera its labels, the setting chosen, its
    scores before and after, and per zone each changed field ``{old, new}``
    (``patrol config apply`` reads ``cameras.<id>.zones``)."""
    cameras: dict[str, Any] = {}
    for t in tunings:
        by_key = {p.key: p for p in t.params}
        setting = {by_key[k]: v for k, v in t.chosen.setting.items()}
        zones: dict[str, Any] = {}
        for lab in t.labels:
            for zid, ch in _zone_changes(lab, setting).items():
                zones.setdefault(zid, {}).update(ch)
        cameras[t.camera] = {
            "labels": [str(lab.path) for lab in t.labels],
            "settings_tried": len(t.trials),
            "best_plateau": len(t.plateau),
            "held_fixed": t.held,
            "objective_met": meets(objective, t.chosen),
            "setting": "as configured" if t.chosen.is_default else dict(t.chosen.setting),
            "scores": {"before": t.default.summary(), "after": t.chosen.summary()},
            "zones": zones,
        }
    before, after = combined([t.default for t in tunings]), combined([t.chosen for t in tunings])
    return {
        "objective": objective,
        "objective_met": all(meets(objective, t.chosen) for t in tunings),
        "per_camera": True,
        "tune_limits": tune_limits,
        "settings_tried": sum(len(t.trials) for t in tunings),
        "clips": [str(lab.path) for t in tunings for lab in t.labels],
        "scores": {"before": before.summary(), "after": after.summary()},
        "cameras": cameras,
    }


def patch_yaml(patch: Mapping[str, Any]) -> str:
    head = ("# Config patch from `patrol tune` — review before applying.\n"
            "# Per camera and zone: each changed field as {old, new}; scores before/after on the same labels.\n")
    return head + yaml.safe_dump(json.loads(json.dumps(patch)), sort_keys=False, allow_unicode=True)
