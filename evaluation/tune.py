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


def choose(objective: str, default: Trial, trials: Sequence[Trial]) -> Trial:
    """The best trial for the objective; the default setting wins ties (change nothing needlessly)."""
    best = default
    for t in trials:
        if rank_key(objective, t) > rank_key(objective, best):
            best = t
    return best


def config_patch(labels: Sequence[ClipLabels], params: Sequence[GridParam], chosen: Trial, default: Trial,
                 objective: str, trials_run: int) -> dict[str, Any]:
    """The reviewable patch: per camera and zone, each changed field ``{old, new}``, and the scores."""
    by_key = {p.key: p for p in params}
    setting = {by_key[k]: v for k, v in chosen.setting.items()}
    cameras: dict[str, Any] = {}
    for lab in labels:
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


def patch_yaml(patch: Mapping[str, Any]) -> str:
    head = ("# Config patch from `patrol tune` — review before applying.\n"
            "# Per camera and zone: each changed field as {old, new}; scores before/after on the same labels.\n")
    return head + yaml.safe_dump(json.loads(json.dumps(patch)), sort_keys=False, allow_unicode=True)
