"""A Ray cluster of network namespaces on this machine, for the cluster tests.

Ray will not use a loopback node address, so each node gets a network namespace of its own
(``ip netns``), joined to a bridge in the root namespace by a veth pair, with a private address
of ``SUBNET``; the bridge itself has ``.1``, where the test's services (RTSP server, mosquitto,
PostgreSQL) listen. Each node is one ``ray start --block`` child process, stopped by its PID
(SIGTERM: ray stops the node's raylet and workers), never by a broad ``ray stop``.

    with NetnsCluster(workers=[2, 2]) as cluster:    # a head and two workers with 2 CPUs each
        cluster.head.address                          # "10.213.0.2:6379"
        cluster.run_in(cluster.head, [...])          # a process inside the head's namespace
        cluster.stop_node(cluster.workers[0])        # that node goes away

Needs root (namespaces, veth) and iproute2; everything made is removed on exit, also after a
failed start. Names carry this process's PID, so parallel runs do not collide.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SUBNET = "10.213.0"
"""A private /24 for the test's nodes (RFC 1918); .1 is the bridge, .2 the head, .3... the workers."""
RAY_PORT = 6379


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def _ray_command() -> str:
    """This Python's own ``ray`` (the venv's), else one on PATH: the nodes must run our interpreter."""
    own = Path(sys.executable).parent / "ray"
    return str(own) if own.exists() else (shutil.which("ray") or "ray")


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "iproute2 (ip) not installed"
    probe = f"ptprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Node:
    name: str
    ns: str
    ip: str
    cpus: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    host_veth: str = ""

    @property
    def address(self) -> str:
        return f"{self.ip}:{RAY_PORT}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class NetnsCluster:
    """``workers``: the CPU count of each worker node; ``head_cpus``: the head's (0: it only runs drivers)."""

    workers: list[int]
    head_cpus: int = 0
    ray: str = field(default_factory=lambda: _ray_command())
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"ptbr{tag}"
        self.dir = Path(tempfile.mkdtemp(prefix="patrol-ray-"))
        self.bridge_ip = f"{SUBNET}.1"
        self.head = Node("head", f"pt{tag}h", f"{SUBNET}.2", self.head_cpus)
        self.worker_nodes = [Node(f"worker{i + 1}", f"pt{tag}w{i + 1}", f"{SUBNET}.{3 + i}", cpus)
                             for i, cpus in enumerate(self.workers)]
        self._made_ns: list[str] = []
        self._bridge_made = False

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.worker_nodes]

    # -- network -----------------------------------------------------------------------------------
    def _network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, node in enumerate(self.nodes):
            _ip("netns", "add", node.ns)
            self._made_ns.append(node.ns)
            node.host_veth = f"{self.bridge}v{i}"
            inner = f"{self.bridge}n{i}"
            _ip("link", "add", node.host_veth, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", node.ns)
            _ip("link", "set", node.host_veth, "master", self.bridge)
            _ip("link", "set", node.host_veth, "up")
            _ip("-n", node.ns, "addr", "add", f"{node.ip}/24", "dev", inner)
            _ip("-n", node.ns, "link", "set", inner, "up")
            _ip("-n", node.ns, "link", "set", "lo", "up")

    def _teardown_network(self) -> None:
        for ns in self._made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made_ns.clear()
        if self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self._bridge_made = False

    # -- processes ---------------------------------------------------------------------------------
    def in_ns(self, node: Node, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", node.ns, *argv]

    def run_in(self, node: Node, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node``'s namespace (the caller stops it)."""
        env = {**os.environ, **self.env, **kwargs.pop("env", {})}  # type: ignore[dict-item]
        return subprocess.Popen(self.in_ns(node, argv), env=env, **kwargs)  # type: ignore[call-overload,no-any-return]

    def _start_node(self, node: Node) -> None:
        common = ["--block", "--disable-usage-stats", f"--node-ip-address={node.ip}", f"--num-cpus={node.cpus}",
                  "--num-gpus=0", "--object-store-memory=100000000"]
        if node is self.head:
            argv = [self.ray, "start", "--head", f"--port={RAY_PORT}", "--include-dashboard=false",
                    f"--temp-dir={self.dir / 'ray'}", *common]
        else:
            argv = [self.ray, "start", f"--address={self.head.address}", *common]
        node.log = self.dir / f"{node.name}.log"
        with node.log.open("wb") as out:
            node.proc = self.run_in(node, argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def network_up(self) -> None:
        """The bridge and the namespaces (before services that listen on ``bridge_ip`` start)."""
        if not self._bridge_made:
            try:
                self._network()
            except BaseException:
                self.close()
                raise

    def start_nodes(self, timeout_s: float = 120.0) -> None:
        """``ray start --block`` in each namespace, head first, one at a time (a busy 2-core machine)."""
        self.network_up()
        try:
            for count, node in enumerate(self.nodes, start=1):
                for attempt in range(3):  # ray gives a raylet 30 s to register, fixed; retry a slow start
                    self._start_node(node)
                    try:
                        self.wait_nodes(count, timeout_s if node is self.head else 45.0)
                        break
                    except RuntimeError:
                        if attempt == 2 or node.proc is None or node.proc.poll() is None:
                            raise
        except BaseException:
            self.close()
            raise

    def start(self, timeout_s: float = 120.0) -> None:
        self.network_up()
        self.start_nodes(timeout_s)

    def wait_nodes(self, count: int, timeout_s: float, *, exactly: bool = False) -> list[str]:
        """Wait until the head counts ``count`` (or more, unless ``exactly``) nodes alive; their IPs.

        Asked by one short Ray driver inside the head's namespace (the state API needs the dashboard,
        which these nodes do not run)."""
        probe = (
            "import json, sys, time, ray\n"
            "count, exactly, deadline = int(sys.argv[1]), sys.argv[2] == '1', time.time() + float(sys.argv[3])\n"
            f"ray.init(address='{self.head.address}', logging_level='ERROR', log_to_driver=False)\n"
            "while True:\n"
            "    alive = sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])\n"
            "    if (len(alive) == count if exactly else len(alive) >= count) or time.time() > deadline:\n"
            "        print('ALIVE ' + json.dumps(alive)); break\n"
            "    time.sleep(0.5)\n")
        done = subprocess.run(self.in_ns(self.head, [sys.executable, "-c", probe, str(count), "1" if exactly else "0",
                                                     str(timeout_s)]),
                              capture_output=True, text=True, timeout=timeout_s + 60, env={**os.environ, **self.env})
        import json

        try:
            line = next(x for x in done.stdout.splitlines() if x.startswith("ALIVE "))
            alive: list[str] = json.loads(line.removeprefix("ALIVE "))
        except (ValueError, StopIteration) as exc:
            raise RuntimeError(f"ray cluster: cannot ask the head for its nodes: {done.stdout[-1000:]}"
                               f"{done.stderr[-2000:]}") from exc
        if (len(alive) != count) if exactly else (len(alive) < count):
            logs = "".join(f"\n--- {n.name} ({n.ip}) log tail:\n{n.log.read_text()[-1500:]}" for n in self.nodes
                           if n.log is not None and n.log.exists() and n.ip not in alive)
            raise RuntimeError(f"ray cluster: {len(alive)} node(s) alive after {timeout_s} s, wanted {count}: "
                               f"{alive}{logs}")
        return alive

    def stop_node(self, node: Node, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> None:
        """Stop one node by the PID of its ``ray start --block`` (its process group, so the raylet
        and the node's workers go too)."""
        if node.proc is None or node.proc.poll() is not None:
            return
        try:
            os.killpg(node.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()

    def close(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node, timeout_s=30)
        self._teardown_network()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NetnsCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
