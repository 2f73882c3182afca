#!/usr/bin/env python3
"""A real RTSP server for tests and the demo: serves MP4 clips on loop at mount points.

Two roles in one file:

* run it with the system Python (GStreamer comes from Debian's python3-gi, not the venv)::

      /usr/bin/python3 scripts/rtsp_server.py --port 8554 --mount cam1=clip.mp4 [--mount cam2=other.mp4]
          [--user U --password P] [--scale 1920x1080] [--fps 25] [--gop 2.0] [--slices 2]

  Without --scale/--fps/--gop/--slices the H.264 is passed through untouched
  (``qtdemux ! h264parse ! rtph264pay``); with any of them it is decoded and re-encoded with x264enc.
  Clips loop forever with segment seeks, so RTP timestamps keep increasing across loops.
  The server prints ``READY <port>`` on stdout once it listens.

* import it from the venv (tests, demo) for :class:`RtspServerProcess`, which starts the server on
  a port, waits until it answers RTSP, kills it and restarts it. Importing needs no GStreamer.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"


# ---------------------------------------------------------------------------------------------
# Control side (imported from the venv): start / wait / kill / restart the server process.
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rtsp_options_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an RTSP server answers an OPTIONS request on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"OPTIONS rtsp://{host}:{port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            return s.recv(64).startswith(b"RTSP/1.0")
    except OSError:
        return False


class RtspServerProcess:
    """One ``rtsp_server.py`` child process on a fixed port; restartable on the same port."""

    def __init__(self, mounts: dict[str, str | Path], port: int | None = None, *,
                 user: str | None = None, password: str | None = None,
                 scale: str | None = None, fps: float | None = None, gop: float | None = None,
                 slices: int = 1, host: str = "127.0.0.1", log_path: str | Path | None = None) -> None:
        self.mounts = {name: Path(path) for name, path in mounts.items()}
        self.port = port or free_port()
        self.host = host
        self.user, self.password = user, password
        self.scale, self.fps, self.gop, self.slices = scale, fps, gop, slices
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [SYSTEM_PYTHON, str(Path(__file__).resolve()), "--host", self.host, "--port", str(self.port)]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"{name}={path}"]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""]
        if self.scale:
            cmd += ["--scale", self.scale]
        if self.fps:
            cmd += ["--fps", str(self.fps)]
        if self.gop:
            cmd += ["--gop", str(self.gop)]
        if self.slices > 1:
            cmd += ["--slices", str(self.slices)]
        return cmd

    def url(self, mount: str, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}{self.host}:{self.port}/{mount}"

    def start(self, timeout: float = 20.0) -> RtspServerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out, start_new_session=True)
        if out is not subprocess.DEVNULL:
            out.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"RTSP server on port {self.port} exited with code {code}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            if rtsp_options_ok(self.host, self.port):
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"RTSP server on port {self.port} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL, like a crashed or power-cut camera: no RTSP TEARDOWN reaches the clients."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but sends nothing (a hung camera)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def restart(self, down_s: float = 0.0, timeout: float = 20.0) -> None:
        self.kill()
        if down_s:
            time.sleep(down_s)
        self.start(timeout)

    def _signal(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGCONT)  # a paused server must be able to act on SIGTERM
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> RtspServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Server side (system Python + GStreamer).
# ---------------------------------------------------------------------------------------------

def passthrough_launch(path: Path) -> str:
    # parameter sets once per keyframe access unit (h264parse), not before every IDR slice (the
    # payloader's config-interval), which would split a multi-slice keyframe for FFmpeg's reader
    return (f'( filesrc location="{path}" ! qtdemux name=demux demux.video_0 ! queue ! h264parse '
            f'config-interval=-1 ! rtph264pay name=pay0 pt=96 )')


def reencode_launch(path: Path, scale: str | None, fps: float | None, gop: float | None,
                    slices: int = 1) -> str:
    caps = ["video/x-raw"]
    if scale:
        width, height = scale.lower().split("x")
        caps += [f"width={int(width)}", f"height={int(height)}"]
    rate = fps or 25.0  # a fixed output rate makes the keyframe interval exact in seconds
    caps.append(f"framerate={round(rate * 1000)}/1000")
    key_int = max(1, round((gop or 2.0) * rate))
    return (f'( filesrc location="{path}" ! qtdemux name=demux demux.video_0 ! queue ! h264parse '
            f'! avdec_h264 ! videoconvert ! videoscale ! videorate ! {",".join(caps)} '
            # several slices per frame (as some cameras send) come from x264's sliced threads
            f'! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} bitrate=4000 '
            f'{f"sliced-threads=true threads={slices} " if slices > 1 else "sliced-threads=false "}'
            f'! video/x-h264,profile=main ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )')


def serve(args: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    reencode = bool(args.scale or args.fps or args.gop or args.slices > 1)

    def loop_forever(media: GstRtspServer.RTSPMedia) -> None:
        """Gapless loop: a segment seek posts SEGMENT_DONE at the end instead of EOS; answer it with
        another non-flushing segment seek to 0, so running time (and RTP time) keeps increasing."""
        pipeline = media.get_element().get_parent()
        bus = pipeline.get_bus()
        bus.enable_sync_message_emission()
        flags = Gst.SeekFlags.SEGMENT

        def rewind() -> bool:
            pipeline.seek_simple(Gst.Format.TIME, flags, 0)
            return False

        def on_segment_done(_bus: Gst.Bus, _msg: Gst.Message) -> None:
            GLib.idle_add(rewind)

        looping = {"on": False}

        def on_new_state(_media: GstRtspServer.RTSPMedia, state: int) -> None:
            if state == Gst.State.PLAYING and not looping["on"]:
                looping["on"] = True
                ok, position = pipeline.query_position(Gst.Format.TIME)
                pipeline.seek(1.0, Gst.Format.TIME, Gst.SeekFlags.FLUSH | flags | Gst.SeekFlags.ACCURATE,
                              Gst.SeekType.SET, position if ok else 0, Gst.SeekType.NONE, -1)

        bus.connect("sync-message::segment-done", on_segment_done)
        media.connect("new-state", on_new_state)

    server = GstRtspServer.RTSPServer()
    # One thread per client connection: the pool's default is a single thread for all clients, which
    # serialises them; on a loaded machine some mounts then timed out ("Invalid data") for minutes.
    server.get_thread_pool().set_max_threads(-1)
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        name, _, path = spec.partition("=")
        clip = Path(path).resolve()
        if not name or not clip.is_file():
            print(f"rtsp_server: bad --mount {spec!r}: expected NAME=EXISTING_FILE", file=sys.stderr)
            return 2
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(reencode_launch(clip, args.scale, args.fps, args.gop, args.slices) if reencode
                           else passthrough_launch(clip))
        factory.set_shared(False)
        factory.set_eos_shutdown(False)
        factory.connect("media-configure", lambda _f, media: loop_forever(media))
        if args.user is not None:
            role = Gst.Structure.new_from_string(
                f"{args.user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")
            factory.add_role_from_structure(role)
        mounts.add_factory("/" + name.strip("/"), factory)

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)

    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8554)
    p.add_argument("--mount", action="append", required=True, metavar="NAME=FILE",
                   help="serve FILE (MP4 with H.264) at rtsp://HOST:PORT/NAME; repeatable")
    p.add_argument("--user", help="require RTSP basic auth with this user")
    p.add_argument("--password", help="password for --user")
    p.add_argument("--scale", help="re-encode at WIDTHxHEIGHT, e.g. 1920x1080")
    p.add_argument("--fps", type=float, help="re-encode at this frame rate (default 25 when re-encoding)")
    p.add_argument("--slices", type=int, default=1,
                   help="re-encode with this many slices per frame (x264 sliced threads), like some cameras")
    p.add_argument("--gop", type=float, help="re-encode with a keyframe every GOP seconds (default 2)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(serve(parse_args()))
