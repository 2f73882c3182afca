"""Reports of an evaluation or a sweep: a text table, JSON, and Markdown with matplotlib plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from core.events import IncidentType
from evaluation.matching import OVERALL, ClipResult, Observed, Score
from evaluation.snapshots import Shot
from evaluation.tune import CameraTuning, Trial

RULE_OF_TYPE: dict[str, str] = {
    "illegal_parking": "parking (`rules/parking.py`)",
    "street_stall": "street stall (`rules/stall.py`)",
    "obstruction": "obstruction (`rules/obstruction.py`)",
    "fallen_branch": "fallen branch (`rules/obstruction.py`)",
    "camera_offline": "camera offline (`pipeline/health.py`)",
}
"""The rule behind each incident type, for the per-rule table (README, Evaluation and tuning)."""


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, loaded only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt_delay(s: Score) -> str:
    d = s.median_delay_s
    return "-" if d is None else f"{d:.1f}"


def _fmt_place(s: Score) -> str:
    e = s.median_place_error
    return "-" if e is None else f"{e:.3f}"


def _at(o: Observed) -> str:
    return "place=none" if o.place is None else f"place=({o.place[0]:.3f}, {o.place[1]:.3f})"


def score_table(scores: Mapping[str, Score]) -> str:
    """Fixed-width table: one row per incident type and the overall row."""
    head = (f"{'type':<16} {'TP':>4} {'FP':>4} {'FN':>4} {'prec':>6} {'recall':>6} {'F1':>6} {'delay_s':>8} "
            f"{'place':>6}")
    lines = [head, "-" * len(head)]
    for name, s in scores.items():
        lines.append(f"{name:<16} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.precision:>6.3f} {s.recall:>6.3f} "
                     f"{s.f1:>6.3f} {_fmt_delay(s):>8} {_fmt_place(s):>6}")
    lines.append("(delay_s: median start delay of matched incidents, from label start[0] to opening; place: median "
                 "place error, normalised distance from the incident's place to the label's ground point)")
    return "\n".join(lines)


def rule_table(scores: Mapping[str, Score]) -> str:
    """The README's per-rule table (Markdown): every incident type in the contract, in its order,
    then the overall row. Counts are always shown (0: nothing labelled and nothing fired);
    precision needs something fired, recall something labelled, else a dash."""
    rows = ["| rule | incident type | TP | FP | FN | precision | recall | median start delay (s) "
            "| median place error |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in (*get_args(IncidentType), OVERALL):
        s = scores.get(name) or Score()
        precision = f"{s.precision:.2f}" if s.tp + s.fp else "-"
        recall = f"{s.recall:.2f}" if s.tp + s.fn else "-"
        rows.append(f"| {RULE_OF_TYPE.get(name, 'all rules')} | {name} | {s.tp} | {s.fp} | {s.fn} | {precision} "
                    f"| {recall} | {_fmt_delay(s)} | {_fmt_place(s)} |")
    return "\n".join(rows)


def clip_lines(results: Sequence[ClipResult]) -> list[str]:
    """One line per match, false positive and miss, clip by clip."""
    out = []
    for r in results:
        out.append(f"{r.clip}: {len(r.matches)} matched, {len(r.false_positives)} false, {len(r.missed)} missed"
                   + (f", {len(r.unlabelled)} unlabelled" if r.unlabelled else ""))
        for m in r.matches:
            err = m.place_error
            out.append(f"  TP {m.label.type} zone={m.label.zone} opened={m.incident.opened:.1f}s "
                       f"delay={m.delay_s:.1f}s {_at(m.incident)}"
                       + ("" if err is None else f" place_error={err:.3f}"))
        for fp in r.false_positives:
            off = "" if fp.off_by is None else f", {fp.off_by:.3f} outside the label's box"
            box = "" if fp.incident.box is None else f" box={_fmt_box(fp.incident.box)}"
            out.append(f"  FP {fp.incident.type} zone={fp.incident.zone} opened={fp.incident.opened:.1f}s "
                       f"{_at(fp.incident)}{box} ({fp.reason}{off})")
        for miss in r.missed:
            hi = "end" if miss.start.hi is None else f"{miss.start.hi:g}"
            where = "" if miss.where is None else " where=[" + ", ".join(f"{v:.3f}" for v in miss.where.box) + "]"
            out.append(f"  FN {miss.type} zone={miss.zone} window=[{miss.start.lo:g}, {hi}]s{where}")
    return out


def _place(o: Observed) -> list[float] | None:
    return None if o.place is None else [round(o.place[0], 4), round(o.place[1], 4)]


def _where(where: Any) -> dict[str, Any] | None:
    return None if where is None else {"box": [round(v, 4) for v in where.box], "units": where.units}


def eval_json(scores: Mapping[str, Score], results: Sequence[ClipResult]) -> dict[str, Any]:
    return {
        "scores": {k: v.as_dict() for k, v in scores.items()},
        "clips": [{
            "clip": r.clip,
            "matches": [{"type": m.label.type, "zone": m.label.zone, "incident_id": m.incident.incident_id,
                         "opened_s": m.incident.opened, "closed_s": m.incident.closed,
                         "delay_s": round(m.delay_s, 3), "place": _place(m.incident),
                         "where": _where(m.label.where),
                         "place_error": None if (e := m.place_error) is None else round(e, 4)}
                        for m in r.matches],
            "false_positives": [{"type": f.incident.type, "zone": f.incident.zone, "reason": f.reason,
                                 "incident_id": f.incident.incident_id, "opened_s": f.incident.opened,
                                 "place": _place(f.incident),
                                 "off_by": None if f.off_by is None else round(f.off_by, 4)}
                                for f in r.false_positives],
            "missed": [{"type": m.type, "zone": m.zone, "start": m.start.as_list(), "where": _where(m.where),
                        "note": m.note} for m in r.missed],
            "unlabelled": [{"type": u.type, "zone": u.zone, "opened_s": u.opened, "place": _place(u)}
                           for u in r.unlabelled],
        } for r in results],
    }


def plot_eval(scores: Mapping[str, Score], png: Path) -> Path:
    """Bar chart of precision / recall / F1 per type, and the start delays of matched incidents."""
    names = list(scores)
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(names))
    for i, (metric, label) in enumerate((("precision", "precision"), ("recall", "recall"), ("f1", "F1"))):
        ax1.bar([v + (i - 1) * 0.27 for v in x], [getattr(scores[n], metric) for n in names], width=0.27,
                label=label)
    ax1.set_xticks(list(x), names, rotation=20, ha="right")
    ax1.set_ylim(0, 1.05)
    ax1.set_title("Event-level scores")
    ax1.legend(fontsize=8)
    per_type = [n for n in names if n != OVERALL]
    ax2.boxplot([scores[n].delays or [float("nan")] for n in per_type], tick_labels=per_type)
    ax2.set_ylabel("start delay (s)")
    ax2.set_title("Start delay of matched incidents")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def eval_markdown(scores: Mapping[str, Score], results: Sequence[ClipResult], png_name: str,
                  label_files: Sequence[str], shots: Mapping[str, Sequence[Shot]] | None = None,
                  snapshot_dir: str = "snapshots") -> str:
    """report.md: the per-rule table in the README's form (paste it into "Evaluation and tuning"),
    the plot, each false positive and miss with its time, place, box and snapshot crop
    (:func:`evaluation.snapshots.write_snapshots`), and every match, false positive and miss per clip."""
    names = ", ".join(f"`{Path(f).name}`" for f in label_files)
    parts = ["# Evaluation report", "", f"Label files ({len(label_files)}): {names}", "",
             rule_table(scores), "",
             "Start delay: from the label's start[0] to the incident opening, median over matches. Place "
             "error: normalised distance from the incident's place to the label's ground point (`where.point`, "
             "else the bottom centre of the `where` box), median over matches whose label has one.", "",
             f"![scores]({png_name})", "", *errors_markdown(results, shots or {}, snapshot_dir),
             "## Per clip", "", "```", *clip_lines(results), "```", ""]
    return "\n".join(parts)


def _fmt_box(box: Sequence[float] | None) -> str:
    return "-" if box is None else "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


def errors_markdown(results: Sequence[ClipResult], shots: Mapping[str, Sequence[Shot]],
                    snapshot_dir: str) -> list[str]:
    """The false positives and misses, clip by clip: when (stream seconds), where (place and box,
    normalised), why, and the snapshot crop when one was written."""
    rows = ["## False positives and misses", "",
            "Time: a false positive's opening; a miss's start window (its snapshot: the window's middle, or "
            "its start when open-ended). Place and box in fractions of the frame (x right, y down).", ""]
    any_row = False
    for r in results:
        if not r.false_positives and not r.missed:
            continue
        any_row = True
        pics = {(s.kind, s.index): f"![{s.kind} {s.index}]({snapshot_dir}/{s.file})" for s in shots.get(r.clip, ())}
        rows += [f"### {r.clip}", "", "| | type | zone | time (s) | place | box | why | snapshot |",
                 "|---|---|---|---|---|---|---|---|"]
        for i, fp in enumerate(r.false_positives, 1):
            inc = fp.incident
            place = "-" if inc.place is None else f"({inc.place[0]:.3f}, {inc.place[1]:.3f})"
            why = fp.reason + ("" if fp.off_by is None else f", {fp.off_by:.3f} outside the label's box")
            rows.append(f"| FP {i} | {inc.type} | {inc.zone} | {inc.opened:.1f} | {place} | {_fmt_box(inc.box)} "
                        f"| {why} | {pics.get(('FP', i), '-')} |")
        for i, m in enumerate(r.missed, 1):
            hi = "open" if m.start.hi is None else f"{m.start.hi:g}"
            point = "-" if m.where is None else f"({m.where.ground[0]:.3f}, {m.where.ground[1]:.3f})"
            box = None if m.where is None else m.where.box
            rows.append(f"| FN {i} | {m.type} | {m.zone} | {m.start.lo:g}-{hi} | {point} | {_fmt_box(box)} "
                        f"| {m.note or 'missed'} | {pics.get(('FN', i), '-')} |")
        rows.append("")
    if not any_row:
        rows += ["None: every incident matched a label and every label was matched.", ""]
    return rows


def tune_table(default: Trial, trials: Sequence[Trial], chosen: Trial, top: int = 15) -> str:
    """The default row, the chosen row, and the best ``top`` settings by F1."""
    def row(tag: str, t: Trial) -> str:
        o = t.overall
        setting = ", ".join(f"{k}={v}" for k, v in t.setting.items()) or "(as configured)"
        return f"{tag:<8} {o.precision:>6.3f} {o.recall:>6.3f} {o.f1:>6.3f} {o.tp:>4} {o.fp:>4} {o.fn:>4}  {setting}"

    head = f"{'':<8} {'prec':>6} {'recall':>6} {'F1':>6} {'TP':>4} {'FP':>4} {'FN':>4}  setting"
    lines = [head, "-" * 80, row("default", default), row("chosen", chosen), "-" * 80]
    ranked = sorted(trials, key=lambda t: (t.overall.f1, t.overall.recall, t.overall.precision), reverse=True)
    lines += [row(f"#{i + 1}", t) for i, t in enumerate(ranked[:top])]
    return "\n".join(lines)


def pareto(trials: Sequence[Trial]) -> list[Trial]:
    """Settings no other setting beats on both precision and recall, by recall."""
    front: list[Trial] = []
    for t in sorted(trials, key=lambda t: (-t.overall.precision, -t.overall.recall)):
        if not front or t.overall.recall > front[-1].overall.recall:
            front.append(t)
    return sorted(front, key=lambda t: t.overall.recall)


def plot_pr(default: Trial, trials: Sequence[Trial], chosen: Trial, png: Path) -> Path:
    """Precision against recall of every setting, the Pareto front, the default and the choice."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter([t.overall.recall for t in trials], [t.overall.precision for t in trials], s=12, alpha=0.4,
               label=f"settings ({len(trials)})")
    front = pareto(trials)
    ax.plot([t.overall.recall for t in front], [t.overall.precision for t in front], "-", color="grey",
            label="Pareto front")
    ax.scatter([default.overall.recall], [default.overall.precision], marker="s", s=60, color="black",
               label="default")
    ax.scatter([chosen.overall.recall], [chosen.overall.precision], marker="*", s=160, color="red", label="chosen")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Precision / recall over the parameter grid")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def tune_markdown(table: str, pngs: Sequence[str], patch_yaml_text: str) -> str:
    plots = [f"![precision-recall]({png})" for png in pngs]
    return "\n".join(["# Tuning report", "", "```", table, "```", "", *plots, "",
                      "## Config patch", "", "```yaml", patch_yaml_text, "```", ""])


def camera_tune_table(t: CameraTuning, top: int = 10) -> str:
    """One camera's sweep: what was swept and held, the plateau of best settings, and the table."""
    head = f"camera {t.camera} ({', '.join(lab.name for lab in t.labels)})"
    if not t.trials:
        why = "no grid parameter selects its zones" + (f" but the held {', '.join(t.held)}" if t.held else "")
        return f"{head}: nothing to sweep ({why}); as configured F1 {t.default.overall.f1:.3f}"
    held = f"; held fixed: {', '.join(t.held)}" if t.held else ""
    chosen = "the configured setting (no trial scores better)" if t.chosen.is_default else \
        ", ".join(f"{k}={v}" for k, v in t.chosen.setting.items())
    lines = [f"{head}: {len(t.trials)} settings of {', '.join(p.key for p in t.params)}{held}",
             f"best score shared by {len(t.plateau)} settings; chosen: {chosen}",
             tune_table(t.default, t.trials, t.chosen, top)]
    return "\n".join(lines)
