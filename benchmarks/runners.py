"""The capacity trial's runners by name.

``ours`` is :class:`pipeline.worker.PatrolWorker` as shipped (over worker processes when ``patrol run``
would use them, :mod:`benchmarks.worker_runner`); ``baseline`` is what a user would write instead,
one OpenCV thread per camera (:mod:`benchmarks.baseline`). There is no third copy of the hot path:
the prototype "fast path" runner, which kept its own sampler and keyframe clock, was dropped once the
shipped worker sustained more cameras than it did (40 vs 36 at 1080p, 0.5 fps; README "Performance").
"""

from __future__ import annotations

from benchmarks.records import Runner, RunnerState, TrialSpec
from benchmarks.warmup import warm_detector

RUNNERS = ("ours", "baseline")


def make_runner(spec: TrialSpec, state: RunnerState) -> Runner:
    if spec.runner not in RUNNERS:
        raise ValueError(f"unknown runner {spec.runner!r}; expected one of {RUNNERS}")
    if spec.runner == "ours":
        from benchmarks.worker_runner import PatrolWorkerRunner, ShardedWorkerRunner
        from pipeline.shards import auto_processes

        processes = spec.processes or auto_processes(spec.n)
        if processes > 1:  # the worker processes load their own detectors
            return ShardedWorkerRunner(spec, state, processes)
        return PatrolWorkerRunner(spec, state, warm_detector(spec))
    from benchmarks.baseline import OpenCvThreadRunner

    return OpenCvThreadRunner(spec, state, warm_detector(spec))
