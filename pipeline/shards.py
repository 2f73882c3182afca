"""One site's cameras split over several worker processes ("shards").

One process runs every camera's reader thread, the inference loop and the analysis thread under
one GIL. On the 2-core reference machine (benchmarks/, README "Performance") that is what limits
a large site: past about 30 1080p cameras the readers' per-packet Python work and the analysis
thread contend for the GIL, each frame costs inference and analysis several times its unloaded
time, and the worker tips into a backlog; the same cameras in two processes run with CPU to spare.
So a large site runs as shards: cameras dealt round-robin into ``n`` groups, each run by a process
of its own (spawned, not forked: the parent may hold threads and locks), with its own readers,
detector session and analyzers — the same :class:`pipeline.worker.PatrolWorker` as ever.

What must be one per site stays in the parent: the durable outbox and its MQTT link, the verifier,
stdout. A shard sends what it produces — incident events, camera health reports, evidence
references, its summary at the end — as ``(kind, payload)`` messages down a pipe of its own; the
parent hands each to ``on_message(shard, kind, payload)`` on the thread that called
:meth:`ShardedRun.run`, in the order the shard sent them. A send returns once the message is in the
pipe, so what a shard produced reaches the parent even if the shard is killed right after.

What runs in a shard is ``entry(config, outlet, stop, options)``, named as ``"module:function"``
(the spawned child imports it): ``config`` holds the shard's cameras only; ``outlet.send(kind,
payload)`` reaches the parent; ``stop`` (a :class:`StopFlag`) is set when the run should end;
``options`` is a picklable dict. The entry sends ``ready`` once its cameras are starting, then runs
until ``stop`` is set or its sources end.

Failures: a shard that fails before ``ready`` (a model that will not load, say) stops the whole run
with :class:`ShardError`, as a single-process worker's start would. A shard that dies later is
logged (which shard, which cameras, exit code) and started again after a backoff that doubles while
it keeps dying soon after starting (capped at ``RESTART_BACKOFF_S``); the other shards never stop
for it. Each shard ignores SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent
decides when to stop) and stops by itself if the parent disappears.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from camera_config.schema import SiteConfig
from core.errors import PatrolError
from core.redact import redact_text

log = logging.getLogger("patrol.shards")

CAMERAS_PER_PROCESS = 16
"""What :func:`auto_processes` aims at: one process stays well inside its GIL up to here."""
PROCESSES_PER_CORE = 4
RESTART_BACKOFF_S = (1.0, 60.0)
"""First and longest wait before a shard that died is started again."""

MessageHandler = Callable[[int, str, Any], None]


class ShardError(PatrolError):
    """A shard could not start: its cameras would never run."""


def auto_processes(cameras: int, cores: int | None = None) -> int:
    """Worker processes for ``cameras`` cameras: one per ``CAMERAS_PER_PROCESS`` cameras, at least
    one, at most ``PROCESSES_PER_CORE`` per core. More processes than cores is deliberate: what a
    process runs out of first is its GIL, not a core (benchmarks/: 48 1080p cameras on 2 cores,
    p95 frame-to-decision 0.29 s in 3 processes, 0.98 s in 2)."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(PROCESSES_PER_CORE * cores, math.ceil(cameras / CAMERAS_PER_PROCESS)))


def partition(camera_ids: Sequence[str], n: int) -> list[list[str]]:
    """Deal ``camera_ids`` round-robin into at most ``n`` non-empty groups (config order kept)."""
    n = max(1, min(n, len(camera_ids)))
    return [list(camera_ids[i::n]) for i in range(n)]


def shard_config(config: SiteConfig, camera_ids: Sequence[str]) -> SiteConfig:
    keep = set(camera_ids)
    return config.model_copy(update={"cameras": tuple(c for c in config.cameras if c.id in keep)})


class StopFlag:
    """Set by the parent, polled by the shards: a shared byte. (A ``multiprocessing.Event`` will not
    do: its ``set`` waits for every process sleeping in ``wait`` to wake, forever if one has died.)"""

    POLL_S = 0.1

    def __init__(self, ctx: Any) -> None:
        self._flag = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def is_set(self) -> bool:
        return bool(self._flag.value)

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL_S)
        return True


class Outlet:
    """A shard's way to the parent: ``send(kind, payload)`` (payloads must pickle), from any thread.

    The send is synchronous, straight into the pipe: once it returns the message is in the kernel's
    buffer and reaches the parent even if this process is killed the next moment. A full pipe (a
    parent busy committing) makes the sender wait, as a slow sink would in one process."""

    def __init__(self, conn: Any, shard: int) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.shard = shard

    def send(self, kind: str, payload: Any = None) -> None:
        with self._lock:
            self._conn.send((kind, payload))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class OutletSink:
    """A shard's event sink (:class:`pipeline.worker.EventSink`): incident events and camera health
    reports go to the parent, which publishes them through the site's one outbox."""

    def __init__(self, outlet: Outlet) -> None:
        self.outlet = outlet

    def publish(self, events: Sequence[Any]) -> None:
        if events:
            self.outlet.send("events", list(events))

    def report_health(self, reports: Sequence[Any]) -> None:
        if reports:
            self.outlet.send("health", list(reports))

    def flush(self) -> None:
        """Nothing waits here: every message is already on its way to the parent."""


def resolve(entry: str) -> Callable[..., None]:
    module, _, name = entry.partition(":")
    fn: Callable[..., None] = getattr(importlib.import_module(module), name)
    return fn


def _watch_parent(parent: int, stop: StopFlag) -> None:
    while not stop.wait(0.5):
        if os.getppid() != parent:
            log.error("worker shard: parent process %d is gone; stopping", parent)
            stop.set()
            return


def shard_main(entry: str, config: SiteConfig, shard: int, options: dict[str, Any], conn: Any, stop: StopFlag,
               parent: int) -> None:
    """The spawned process: run ``entry`` for this shard's cameras; report failure and end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outlet = Outlet(conn, shard)
    threading.Thread(target=_watch_parent, args=(parent, stop), name="watch-parent", daemon=True).start()
    code = 0
    try:
        resolve(entry)(config, outlet, stop, options)
    except BaseException as exc:  # everything, KeyboardInterrupt too, is reported to the parent
        outlet.send("failed", redact_text(f"{exc} ({type(exc).__name__})"))
        code = 1
    finally:
        try:
            outlet.send("done")
            outlet.close()
        except OSError:  # the parent is gone: there is no one left to tell
            code = code or 1
    os._exit(code)  # skip interpreter teardown of ORT/FFmpeg threads: everything was sent


@dataclass
class Shard:
    index: int
    camera_ids: list[str]
    process: Any = None
    conn: Any = None
    """The read end of the shard's pipe; None once the shard closed it (or died)."""
    ready: bool = False
    done: bool = False
    starts: int = 0
    started_mono: float = 0.0
    restart_at: float | None = None
    backoff_s: float = RESTART_BACKOFF_S[0]
    failure: str | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)


class ShardedRun:
    """Runs ``entry`` for every shard of ``config`` in its own process until stopped or done."""

    def __init__(self, config: SiteConfig, processes: int, entry: str, on_message: MessageHandler,
                 options: dict[str, Any] | None = None,
                 restart_backoff_s: tuple[float, float] = RESTART_BACKOFF_S) -> None:
        if processes < 1:
            raise ValueError(f"ShardedRun: processes must be >= 1, got {processes}")
        self.config = config
        self.entry = entry
        self.on_message = on_message
        self.options = options or {}
        self.restart_backoff_s = restart_backoff_s
        self._ctx = mp.get_context("spawn")
        self._stop = StopFlag(self._ctx)
        self._local_stop = threading.Event()
        self.shards = [Shard(i, ids, backoff_s=restart_backoff_s[0])
                       for i, ids in enumerate(partition([c.id for c in config.cameras], processes))]
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def request_stop(self) -> None:
        """Safe from any thread (e.g. a signal's helper thread)."""
        self._local_stop.set()

    def _spawn(self, shard: Shard) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        shard.process = self._ctx.Process(
            target=shard_main, name=f"patrol-shard-{shard.index}", daemon=False,
            args=(self.entry, shard_config(self.config, shard.camera_ids), shard.index, self.options,
                  writer, self._stop, os.getpid()))
        shard.process.start()
        writer.close()  # the child holds the only write end: its death reads as end of file here
        shard.conn = reader
        shard.starts += 1
        shard.started_mono = time.monotonic()
        shard.done = False
        shard.restart_at = None
        log.info("worker shard %d started (pid %d): cameras %s", shard.index, shard.process.pid,
                 ", ".join(shard.camera_ids))

    def run(self, duration: float | None = None) -> None:
        """Start every shard, hand their messages to ``on_message`` here, and stop them at the end:
        on :meth:`request_stop`, after ``duration`` seconds, or when every shard has finished."""
        self.started_at = time.time()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            for shard in self.shards:
                self._spawn(shard)
            while not all(s.done and s.restart_at is None for s in self.shards):
                if self._local_stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    self._stop.set()
                self._pump(0.25)
                self._reap()
        finally:
            self._stop.set()
            self._finish()
            self.stopped_at = time.time()
        failed = [s for s in self.shards if s.failure is not None and not s.ready]
        if failed:
            s = failed[0]
            raise ShardError(f"worker shard {s.index} (cameras {', '.join(s.camera_ids)}) could not start: "
                             f"{s.failure}")

    def _pump(self, timeout: float) -> None:
        """Deliver what the shards sent: wait up to ``timeout`` for anything, then take all there is."""
        conns = {s.conn: s for s in self.shards if s.conn is not None}
        if not conns:
            time.sleep(timeout)
            return
        for conn in mp_connection.wait(list(conns), timeout):
            self._drain(conns[conn])

    def _drain(self, shard: Shard) -> None:
        conn = shard.conn
        try:
            while conn is not None and conn.poll():
                kind, payload = conn.recv()
                self._deliver(shard.index, kind, payload)
        except (EOFError, OSError):
            conn.close()
            shard.conn = None

    def _deliver(self, index: int, kind: str, payload: Any) -> None:
        shard = self.shards[index]
        if kind == "ready":
            shard.ready = True
        elif kind == "failed":
            shard.failure = payload
            log.error("worker shard %d (cameras %s) failed: %s", index, ", ".join(shard.camera_ids), payload)
            if not shard.ready:
                self._stop.set()  # it cannot start: neither can the run
        elif kind == "done":
            shard.done = True
        elif kind == "summary":
            shard.summary = payload
        try:
            self.on_message(index, kind, payload)
        except Exception:
            log.exception("worker shard %d: handling its %r message failed", index, kind)

    def _reap(self) -> None:
        """Notice shards that ended; start again those that died while the run goes on."""
        now = time.monotonic()
        for shard in self.shards:
            proc = shard.process
            if shard.restart_at is not None:
                if self._stop.is_set():
                    shard.restart_at = None
                elif now >= shard.restart_at:
                    self._spawn(shard)
                continue
            if proc is None or proc.is_alive():
                continue
            proc.join()
            if not shard.done:  # killed without a word: take what it sent, then count it as ended
                self._drain(shard)
                if not shard.done:
                    shard.done = True
                    shard.failure = f"exited with code {proc.exitcode}"
                    log.error("worker shard %d (cameras %s) exited with code %s", shard.index,
                              ", ".join(shard.camera_ids), proc.exitcode)
            ended_early = not self._stop.is_set() and shard.ready and shard.failure is not None
            if ended_early:
                first, longest = self.restart_backoff_s
                if now - shard.started_mono > longest:  # it had been running a good while: a fresh fault
                    shard.backoff_s = first
                log.warning("worker shard %d: starting again in %.1f s", shard.index, shard.backoff_s)
                shard.restart_at = now + shard.backoff_s
                shard.backoff_s = min(shard.backoff_s * 2, longest)
                shard.ready = False
                shard.failure = None

    def _finish(self, timeout_s: float = 60.0) -> None:
        """Wait for every shard to flush and end, delivering what they send; kill any that hang."""
        deadline = time.monotonic() + timeout_s
        while any(s.process is not None and s.process.is_alive() for s in self.shards):
            if time.monotonic() >= deadline:
                for s in self.shards:
                    if s.process is not None and s.process.is_alive():
                        log.error("worker shard %d did not stop within %.0f s; killed", s.index, timeout_s)
                        s.process.kill()
                break
            self._pump(0.1)
        for s in self.shards:
            if s.process is not None:
                with contextlib.suppress(Exception):
                    s.process.join(5)
        self._pump(0.0)

    def summary(self) -> list[dict[str, Any]]:
        """Every shard's last summary rows, in the config's camera order."""
        rows = {row["camera_id"]: row for s in self.shards for row in s.summary}
        return [rows[c.id] for c in self.config.cameras if c.id in rows]
