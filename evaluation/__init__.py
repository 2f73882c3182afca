"""Threshold tuning and evaluation for engineers.

- :mod:`evaluation.labels` — the label file format (expected incidents, quiet spans) and its loader;
- :mod:`evaluation.matching` — event-level matching of incidents to labels, TP/FP/FN and scores;
- :mod:`evaluation.cache` — the per-clip detection cache (.npz, keyed by clip, model and settings);
- :mod:`evaluation.replay` — replay of a labelled clip over cached detections, with the shortcuts
  that make sweeps cheap;
- :mod:`evaluation.tune` — parameter grids, the sweep, the choice and the config patch;
- :mod:`evaluation.report` — tables, JSON, Markdown and plots;
- :mod:`evaluation.export` — operator verdicts from the review database as labels.

The commands are ``patrol eval``, ``patrol eval export-labels`` and ``patrol tune``
(:mod:`patrol.commands.evaluate`).
"""
