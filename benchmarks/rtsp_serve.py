"""Serve pre-encoded H.264 MP4 files over RTSP without re-encoding (GStreamer, system python).

Run with ``/usr/bin/python3`` (python3-gi lives there, not in the venv)::

    /usr/bin/python3 benchmarks/rtsp_serve.py --port 8554 --mount cam1080=var/bench/media/x.mp4

Each client gets its own pipeline (``shared=False``) that plays the file from its start at real
time (the sink is clock-synchronised), so N clients look like N live cameras. The pipeline only
demuxes and packetises (qtdemux ! h264parse ! rtph264pay): the server costs little CPU, which is
the point when the machine under test is the same machine. SPS/PPS go in-band with every IDR
(``config-interval=-1``) so a client that decodes keyframes only can start on any of them.

Prints ``READY <port>`` on stdout once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def parse_mount(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--mount expects NAME=PATH, got {text!r}")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"--mount {name}: no such file {path!r}")
    return name, os.path.abspath(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", type=parse_mount, action="append", required=True,
                        help="NAME=PATH of an H.264 MP4; served at rtsp://127.0.0.1:PORT/NAME")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, path in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        location = path.replace("\\", "\\\\").replace('"', '\\"')
        factory.set_launch(
            f'( filesrc location="{location}" ! qtdemux ! h264parse '
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(False)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
