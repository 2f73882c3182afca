"""Task verification (step 5 of the loop): re-check a camera's zone after a ticket is disposed.

The ticket service publishes ``{prefix}/verify/request/{camera}``; :class:`VerifierService`, running
next to the pipeline with the site config, grabs a few seconds of the camera's current frames, runs
the camera's detector and the zone check, and publishes ``{prefix}/verify/result/{camera}`` with
``present`` (is the vehicle, stall or obstruction still there?) and the boxes it saw.

What counts as "still there" per zone type:

* ``no_parking`` — a detection of one of the zone's vehicle classes whose ground point (bottom
  centre) lies in the zone;
* ``no_vending`` — a detection of one of the zone's stall classes in the zone;
* ``keep_clear`` — a detection of a class outside the zone's ignore list in the zone (the
  detector knows no branches by name; this is the weakest of the three checks);
* a ``camera_offline`` ticket (no zone) — no frame arrived at all.

The problem counts as present when it is seen in at least ``present_fraction`` of the frames.
No frame at all for a zone check means it cannot be verified: reported present, with an error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.transport import Endpoint, Message, TransportFactory
from camera_config.schema import Camera, SiteConfig
from core.topics import VERIFIERS_GROUP, Topics
from core.types import Detections, Frame
from rules.checks import check_zone
from rules.registry import zone_check

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
DetectFn = Callable[[Sequence[Image]], list[Detections]]
FrameGrabber = Callable[[Camera, float], list[Frame]]

def grab_frames(camera: Camera, duration_s: float, *, fps: float = 2.0, timeout_s: float = 30.0) -> list[Frame]:
    """About ``duration_s`` seconds of the camera's current frames at ``fps`` (stream time)."""
    from pipeline.sources import Source

    frames: list[Frame] = []
    done = threading.Event()

    def on_frame(frame: Frame) -> None:
        if done.is_set():
            return
        frames.append(frame)
        if frame.pts - frames[0].pts >= duration_s:
            done.set()

    source = Source(camera.id, camera.url.get_secret_value(), on_frame, analysis_fps=fps,
                    transport=camera.transport, watchdog=camera.watchdog, realtime=False)
    if source.live:
        source.realtime = True
    source.start()
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and not source.finished and time.monotonic() < deadline:
        done.wait(0.1)
    source.stop()
    source.join(5.0)
    return list(frames)


class Verifier:
    """Answers one verification request from the site config, a detector per model and a grabber."""

    def __init__(self, site: SiteConfig, *, detector_factory: Callable[[Camera], DetectFn] | None = None,
                 grabber: FrameGrabber = grab_frames) -> None:
        self.site = site
        self.grabber = grabber
        self.detector_factory = detector_factory or _load_detect
        self._detectors: dict[str, DetectFn] = {}

    def _detect_for(self, camera: Camera) -> DetectFn:
        if camera.id not in self._detectors:
            self._detectors[camera.id] = self.detector_factory(camera)
        return self._detectors[camera.id]

    def verify(self, request: dict[str, Any]) -> dict[str, Any]:
        base = {k: request.get(k) for k in ("request_id", "ticket_id", "camera_id", "zone_id", "type")}
        duration = float(request.get("duration_s") or 4.0)
        try:
            camera = self.site.camera(str(request["camera_id"]))
        except KeyError:
            return {**base, "present": True, "frames": 0, "frames_present": 0, "boxes": [],
                    "checked_at": time.time(), "error": f"camera {request.get('camera_id')!r} not in this site"}
        frames = self.grabber(camera, duration)
        zone_id = request.get("zone_id")
        if zone_id is None:  # camera_offline: is the stream back?
            result = {"present": not frames, "frames": len(frames), "frames_present": 0, "boxes": []}
        else:
            zone = next((z for z in camera.zones if z.id == zone_id), None)
            if zone is None:
                result = {"present": True, "frames": len(frames), "frames_present": 0, "boxes": [],
                          "error": f"camera {camera.id!r} has no zone {zone_id!r}"}
            else:
                check = zone_check(zone, camera.detector.default_score)
                result = check_zone(frames, self._detect_for(camera), check)
        return {**base, **result, "checked_at": time.time()}


def _load_detect(camera: Camera) -> DetectFn:
    from models.factory import load_detector

    detector = load_detector(camera.detector.model, score_threshold=camera.detector.default_score)
    detector.warmup()
    return detector.detect


VERIFY_ACK_S = 10.0
"""How long a result waits for the broker's acknowledgement before it is logged as lost (the ticket
service asks again after ``tickets.verify_timeout_s``)."""


class VerifierService:
    """``{prefix}/verify/request/+`` in (shared group ``verifiers``), ``{prefix}/verify/result/{camera}``
    out (QoS 1), over a transport (``transports``; default: MQTT from ``site.mqtt``)."""

    def __init__(self, site: SiteConfig, *, client_id: str | None = None, verifier: Verifier | None = None,
                 transports: TransportFactory | None = None) -> None:
        self.site = site
        self.topics = Topics(site.mqtt.topic_prefix)
        self.verifier = verifier or Verifier(site)
        self.client_id = client_id or f"{site.mqtt.client_id}-verifier"
        if transports is None:
            from alerts.mqtt import mqtt_transports

            transports = mqtt_transports(site.mqtt.for_role("verifier"))
        self.transport = transports(Endpoint(self.client_id, availability=self.topics.availability(self.client_id),
                                             persistent=True))
        self.transport.subscribe(self.topics.verify_request(), self._on_message, shared_group=VERIFIERS_GROUP)
        self._work: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self.answered = 0

    def _on_message(self, msg: Message) -> None:
        try:
            request = json.loads(msg.payload)
            if not isinstance(request, dict) or "camera_id" not in request:
                raise ValueError("needs a JSON object with camera_id")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("ignored a malformed verify request", extra={"topic": msg.topic, "error": str(exc)})
            return
        with self._cv:
            self._work.append(request)
            self._cv.notify()

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; the slow re-check runs here, not on the network thread."""
        self.transport.start()
        while not stop.is_set():
            with self._cv:
                if not self._work:
                    self._cv.wait(0.5)
                    continue
                request = self._work.pop(0)
            result = self.verifier.verify(request)
            log.info("verified", extra={"ticket_id": result.get("ticket_id"), "present": result["present"],
                                        "frames": result["frames"]})
            ack = self.transport.publish(self.topics.verify_result(str(result["camera_id"])),
                                         json.dumps(result, sort_keys=True))
            if ack.wait(VERIFY_ACK_S):
                self.answered += 1
            else:
                log.error("verify result not acknowledged", extra={"ticket_id": result.get("ticket_id"),
                                                                    "camera_id": result.get("camera_id")})
        self.transport.stop()
