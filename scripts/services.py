"""Throwaway mosquitto and PostgreSQL for tests and the demo: free port, temp dir, killed at the end.

    with Mosquitto() as broker: ...            # broker.port; broker.stop(); broker.start()
    with Postgres() as pg: ...                 # pg.url (postgresql+psycopg://...)

Run as root, PostgreSQL is started as the ``postgres`` user (``runuser``) in a temp dir it owns.
From a shell: ``python scripts/services.py mosquitto|postgres`` prints the URL and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType


def _pg_bin() -> Path:
    """The newest installed PostgreSQL server binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service on port {port} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class _Service:
    def __enter__(self) -> _Service:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Mosquitto(_Service):
    """A mosquitto broker with persistence (queued QoS 1 messages survive a restart).

    ``users`` maps username -> password; when given, anonymous access is off. ``acl``: the text of
    an ``acl_file`` (alerts/acl.py builds one per role); without it every account may use every topic.
    ``also_listen``: more addresses for the plain listener (a test bridge's, for network namespaces).
    """

    def __init__(self, port: int | None = None, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: bool = False, also_listen: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="patrol-mosquitto-"))
        self.users = users or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", *(f"listener {self.port} {host}" for host in also_listen),
                 "persistence true", f"persistence_location {self.dir}/",
                 "autosave_interval 1",
                 "max_queued_messages 100000", "max_inflight_messages 100",
                 f"log_dest file {self.log}", "log_type error", "log_type warning", "log_type notice",
                 "message_size_limit 1048576"]
        if self.users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            os.chmod(pw, 0o644)
            lines += ["allow_anonymous false", f"password_file {pw}"]
            if acl is not None:
                acl_path = self.dir / "acl"
                acl_path.write_text(acl)
                os.chmod(acl_path, 0o644)
                lines.append(f"acl_file {acl_path}")
        else:
            lines.append("allow_anonymous true")
        if tls:  # a second listener, TLS, with a throwaway CA (``tls_port``, ``ca_file``, ``other_ca_file``)
            self.tls_port = free_port()
            certs = write_test_certs(self.dir / "tls")
            self.ca_file, self.other_ca_file = certs["ca"], certs["other_ca"]
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {certs['ca']}",
                      f"certfile {certs['server_cert']}", f"keyfile {certs['server_key']}"]
        self.conf.write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0 and _has_user("mosquitto"):  # mosquitto drops root for this user
            shutil.chown(self.dir, "mosquitto", "mosquitto")

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def stop(self) -> None:
        """Graceful stop: mosquitto saves its persistence file (sessions and queued messages)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def write_test_certs(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate it signs for 127.0.0.1 and localhost, and an unrelated CA
    (a "wrong CA" for tests), made with openssl in ``folder``; readable by the broker's user."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("ca.key", "ca.crt", "other-ca.key", "other-ca.crt",
                                             "server.key", "server.csr", "server.crt", "san.cnf")}
    for ca in ("ca", "other-ca"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN=patrol test {ca}", "-keyout", str(files[f"{ca}.key"]),
                        "-out", str(files[f"{ca}.crt"])], check=True, capture_output=True)
    files["san.cnf"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(files["server.key"]), "-out", str(files["server.csr"])],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(files["server.csr"]), "-CA", str(files["ca.crt"]),
                    "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "2",
                    "-extfile", str(files["san.cnf"]), "-out", str(files["server.crt"])],
                   check=True, capture_output=True)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    return {"ca": files["ca.crt"], "other_ca": files["other-ca.crt"], "server_cert": files["server.crt"],
            "server_key": files["server.key"]}


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Postgres(_Service):
    """A PostgreSQL cluster in a temp dir on a free port, database ``patrol``, trust auth on localhost.

    ``also_listen``: (address, subnet) pairs it also listens on and trusts (a test bridge's, for
    network namespaces); ``url_at(address)`` is the URL from there.
    """

    def __init__(self, port: int | None = None, bin_dir: Path = PG_BIN,
                 also_listen: tuple[tuple[str, str], ...] = ()) -> None:
        self.port = port or free_port()
        self.also_listen = also_listen
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="patrol-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user = "postgres" if os.geteuid() == 0 else None
        self.user = self.as_user or os.environ.get("USER", "postgres")

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        return f"postgresql+psycopg://{self.user}@{host}:{self.port}/patrol"

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *argv] if self.as_user else list(argv)

    def start(self) -> None:
        if self.as_user:
            shutil.chown(self.dir, self.as_user)
        if not self.data.exists():
            subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                                     "--no-sync", "-E", "UTF8"), check=True, capture_output=True)
            if self.also_listen:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.writelines(f"host all all {subnet} trust\n" for _, subnet in self.also_listen)
        # fsync off: fast, and still safe against a killed server (commits reach the OS before they
        # return); never synchronous_commit=off — an immediate stop would lose acknowledged commits
        self.proc = subprocess.Popen(
            self._cmd(str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                      "-c", "listen_addresses=" + ",".join(["127.0.0.1", *(a for a, _ in self.also_listen)]),
                      "-c", f"unix_socket_directories={self.dir}",
                      "-c", "fsync=off", "-c", "full_page_writes=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 30, self.proc)
        for _ in range(100):
            done = subprocess.run(self._cmd(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                            "-U", self.user, "patrol"), capture_output=True, text=True)
            if done.returncode == 0 or "already exists" in done.stderr:
                return
            time.sleep(0.1)
        raise RuntimeError(f"createdb failed: {done.stderr.strip()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w"),
                       capture_output=True, timeout=30)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else ""
    service: _Service
    if kind == "mosquitto":
        service = Mosquitto()
    elif kind == "postgres":
        service = Postgres()
    else:
        print("usage: services.py mosquitto|postgres", file=sys.stderr)
        return 2
    with service:
        print(f"mqtt://127.0.0.1:{service.port}" if isinstance(service, Mosquitto) else service.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
