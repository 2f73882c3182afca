"""The committed performance budget (benchmarks/budget.yaml) and the check against a run's results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError

BUDGET_YAML = Path(__file__).with_name("budget.yaml")


@dataclass(frozen=True, slots=True)
class BudgetLine:
    name: str
    path: str
    max: float | None = None
    min: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    line: BudgetLine
    value: float | None
    status: str  # "ok" | "FAIL" | "skipped"

    def describe(self) -> str:
        limit = f"<= {self.line.max:g}" if self.line.max is not None else f">= {self.line.min:g}"
        shown = "not measured" if self.value is None else f"{self.value:g}"
        return f"{self.status:7} {self.line.name}: {shown} (budget {limit}; {self.line.path})"


def load_budget(path: Path = BUDGET_YAML) -> list[BudgetLine]:
    """Read and validate the budget; every problem names the file and the line."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), [f"{path}: cannot read budget: {exc}"]) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("lines"), list):
        raise ConfigError(str(path), [f"{path}: expected a mapping with a 'lines' list"])
    lines, problems = [], []
    for i, item in enumerate(raw["lines"]):
        where = f"{path}: lines[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "path", "max", "min"}:
            problems.append(f"{where}: expected keys name, path and one of max/min, got {item!r}")
            continue
        if not isinstance(item.get("name"), str) or not isinstance(item.get("path"), str):
            problems.append(f"{where}: 'name' and 'path' must be strings")
            continue
        limits = [k for k in ("max", "min") if k in item]
        if len(limits) != 1 or not isinstance(item[limits[0]], int | float) or isinstance(item[limits[0]], bool):
            problems.append(f"{where} ({item['name']}): needs exactly one numeric 'max' or 'min'")
            continue
        lines.append(BudgetLine(item["name"], item["path"], item.get("max"), item.get("min")))
    if problems:
        raise ConfigError(str(path), problems)
    return lines


def lookup(results: dict[str, Any], path: str) -> float | None:
    """The number at a dotted path, or None when any part is missing or not a number.

    Keys may contain dots themselves (``ours_1080p_0.5fps``): the longest key that matches wins.
    """
    node: Any = results
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return None
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def check(results: dict[str, Any], lines: list[BudgetLine]) -> list[Verdict]:
    out = []
    for line in lines:
        value = lookup(results, line.path)
        if value is None:
            status = "skipped"
        elif line.max is not None:
            status = "ok" if value <= line.max else "FAIL"
        else:
            assert line.min is not None
            status = "ok" if value >= line.min else "FAIL"
        out.append(Verdict(line, value, status))
    return out
