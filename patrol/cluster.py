"""``patrol run --cluster ADDRESS``: a site's cameras over the nodes of a Ray cluster.

The cameras are cut into groups; each group is one Ray actor (:class:`CameraGroup`) running
today's :class:`pipeline.worker.PatrolWorker` on its cameras, one logical CPU each (``--group-cpus``),
spread over the nodes. Groups are sized so that they still fit when the largest node is lost
(:func:`group_size`): Ray restarts an actor whose node died (``max_restarts=-1``) on a node with room,
and the restarted group picks its incidents up where the database says they were
(``patrol.commands.run.reconcile_at_start``: resumed at the same place, or closed) — no second
incident for the same parked car.

Events take the one durable path of a single-host run: every group commits its events to the
site's database (the outbox table; PostgreSQL in a cluster, where every node reaches it), and this
process — the driver, on a node of the cluster — keeps the one outbox publisher to the broker, the
verifier and the evidence retention, as ``patrol run`` does. Events are not echoed to stdout here.

``--cluster-status FILE`` rewrites FILE (JSON) every second with each group's node, restarts and
per-camera state: what ops (and the cluster test) watch. Ray is imported only here, so a run
without ``--cluster`` never loads it (the ``cluster`` extra: ``pip install '.[cluster]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from camera_config.schema import SiteConfig
from core.errors import PatrolError
from pipeline.shards import CAMERAS_PER_PROCESS

log = logging.getLogger("patrol.cluster")

STATUS_EVERY_S = 1.0
STOP_TIMEOUT_S = 90.0


class ClusterError(PatrolError):
    """The Ray cluster cannot be reached, or cannot hold the site."""


@dataclass(frozen=True)
class RunHooks:
    """What ``patrol run`` does around a worker, handed in by patrol/commands/run.py (which imports
    this module, not the other way round); module-level functions, so they travel to the actors."""

    select_cameras: Callable[..., SiteConfig]
    attach_evidence: Callable[..., dict[str, Any]]
    reconcile_at_start: Callable[..., None]
    reconcile_at_stop: Callable[..., None]
    open_sink: Callable[..., Any]


def group_size(cameras: int, node_cpus: list[float], group_cpus: float = 1.0,
               most: int = CAMERAS_PER_PROCESS) -> int:
    """Cameras per group: as many groups as the nodes hold *without their largest one* (so a lost
    node's groups find room on the others), at most ``most`` cameras a group (one process keeps
    up with about 16 1080p cameras on a core; README "Performance")."""
    cpus = [c for c in node_cpus if c > 0]
    if not cpus:
        raise ClusterError("ray cluster: no node offers CPUs for camera groups")
    spare = sum(cpus) - max(cpus) if len(cpus) > 1 else sum(cpus)
    slots = max(1, int(spare // group_cpus))
    return max(1, min(most, math.ceil(cameras / slots)))


def plan_groups(camera_ids: list[str], size: int) -> list[list[str]]:
    """Consecutive cameras, ``size`` a group (the last may be smaller)."""
    return [camera_ids[i:i + size] for i in range(0, len(camera_ids), size)]


class CameraGroup:
    """One group of cameras on one node: a PatrolWorker whose events are committed to the site's
    database. Ray runs it as an actor; a restart (its node died) runs ``__init__`` again elsewhere."""

    def __init__(self, config: SiteConfig, group: int, camera_ids: list[str], options: dict[str, Any],
                 hooks: RunHooks) -> None:
        from alerts.outbox import OutboxSink
        from camera_config.secrets import register_config_secrets
        from patrol.logs import setup_logging
        from pipeline.worker import PatrolWorker
        from rules.analyzer import camera_analyzer
        from storage.db import open_database

        setup_logging(options.get("log_level", "info"), options.get("log_json", False))
        register_config_secrets(config)
        import ray

        self.group = group
        self.hooks = hooks
        self.node_ip = ray.util.get_node_ip_address()
        self.started_at = time.time()
        self.config = hooks.select_cameras(config, camera_ids, f"cluster group {group}")
        self.db = open_database(config.database.url)
        spill = Path(options.get("spill_dir", "var/data/spill")) / f"{options['pipeline_id']}-g{group}.jsonl"
        self.sink = OutboxSink(self.db, config.mqtt.topic_prefix, spill_path=spill)
        self.stack = contextlib.ExitStack()
        kwargs: dict[str, Any] = {"sink": self.sink, "analyzer_factory": camera_analyzer}
        if options.get("evidence"):
            from evidence.keep import reference_writer

            kwargs.update(hooks.attach_evidence(self.config, reference_writer(self.db), self.stack))
        self.worker = PatrolWorker(self.config, realtime=options.get("realtime", True), **kwargs)
        self.worker.load_detectors()
        hooks.reconcile_at_start(self.worker, SimpleNamespace(sink=self.sink, db=self.db))
        self.thread = threading.Thread(target=self.worker.run, name=f"group-{group}", daemon=True)
        self.thread.start()
        log.info("camera group %d (%s) running on node %s", group, ", ".join(camera_ids), self.node_ip)

    def status(self) -> dict[str, Any]:
        return {"group": self.group, "node_ip": self.node_ip, "pid": os.getpid(), "started_at": self.started_at,
                "cameras": [{"camera_id": r["camera_id"], "state": r["state"], "frames_analysed": r["frames_analysed"],
                             "events": r["events"]} for r in self.worker.summary()]}

    def stop(self) -> list[dict[str, Any]]:
        """Stop the cameras, close what is open (``pipeline_stopped``), commit, drain the evidence."""
        self.worker.request_stop()
        self.thread.join(STOP_TIMEOUT_S)
        self.hooks.reconcile_at_stop(self.worker)
        self.stack.close()
        self.sink.close()
        self.db.dispose()
        return self.worker.summary()


def _node_cpus(ray: Any) -> list[float]:
    return [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]


def write_status(path: Path, groups: list[dict[str, Any]], restarts: dict[int, int]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"at": time.time(), "groups": [{**g, "restarts": restarts.get(g["group"], 0)}
                                                             for g in groups]}, indent=1))
    tmp.replace(path)


def run_cluster(config: SiteConfig, args: argparse.Namespace, hooks: RunHooks) -> int:
    """The driver: place the groups, publish their events, watch them, stop them."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("patrol run --cluster needs Ray: pip install '.[cluster]'") from exc
    from patrol.signals import stop_on_signals

    if args.no_publish:
        raise ClusterError("--no-publish cannot go with --cluster: the camera groups hand their events over "
                           "through the site's database (the outbox), which this process publishes")
    if config.database.url.startswith("sqlite"):
        log.warning("cluster run on a SQLite database (%s): every node must reach the same file; use "
                    "PostgreSQL across hosts", config.database.url)
    try:
        ray.init(address=args.cluster, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"ray cluster {args.cluster}: cannot connect: {exc}") from exc
    ids = [c.id for c in config.cameras]
    size = args.cameras_per_group or group_size(len(ids), _node_cpus(ray), args.group_cpus)
    groups = plan_groups(ids, size)
    options = {"pipeline_id": args.pipeline_id, "evidence": not args.no_evidence, "realtime": not args.fast,
               "spill_dir": str(getattr(args, "spill_dir", "var/data/spill")),
               "log_level": getattr(args, "log_level", "info"), "log_json": getattr(args, "log_json", False)}
    actor: Any = ray.remote(num_cpus=args.group_cpus, max_restarts=-1, max_task_retries=-1)(CameraGroup)
    log.info("site %s: %d camera(s) in %d group(s) of up to %d over %d node(s)", config.site.name, len(ids),
             len(groups), size, len(_node_cpus(ray)))
    stop = threading.Event()
    status_path = Path(args.cluster_status) if args.cluster_status else None
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(ray.shutdown)
        hooks.open_sink(config, args, stack)  # the outbox publisher and the verifier
        actors: list[Any] = [actor.options(scheduling_strategy="SPREAD", name=f"patrol-{args.pipeline_id}-g{k}").remote(
            config, k, cams, options, hooks) for k, cams in enumerate(groups)]
        last: dict[int, dict[str, Any]] = {}
        restarts: dict[int, int] = {}
        deadline = time.monotonic() + args.duration if args.duration else None
        with stop_on_signals(stop.set):
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                refs = {a.status.remote(): k for k, a in enumerate(actors)}
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=5.0)
                for ref in ready:
                    try:
                        st = ray.get(ref)
                    except Exception as exc:  # the actor is being restarted: keep its last status
                        log.debug("group %d: no status (%s)", refs[ref], exc)
                        continue
                    k = refs[ref]
                    prev = last.get(k)
                    if prev is not None and st["started_at"] != prev["started_at"]:
                        restarts[k] = restarts.get(k, 0) + 1
                        log.warning("camera group %d restarted on node %s (was %s)", k, st["node_ip"], prev["node_ip"])
                    last[k] = st
                if status_path is not None and last:
                    write_status(status_path, [last[k] for k in sorted(last)], restarts)
                stop.wait(STATUS_EVERY_S)
        summaries = [a.stop.remote() for a in actors]
        done, _ = ray.wait(summaries, num_returns=len(summaries), timeout=STOP_TIMEOUT_S)
        for ref in done:
            with contextlib.suppress(Exception):
                rows.extend(ray.get(ref))
    failed = [r for r in rows if r["state"] == "failed"]
    print(json.dumps({"site": config.site.name, "groups": len(groups), "restarts": sum(restarts.values()),
                      "cameras": len(rows), "events": sum(r["events"] for r in rows)}))
    return 1 if len(done) < len(actors) or (failed and len(failed) == len(rows)) else 0
