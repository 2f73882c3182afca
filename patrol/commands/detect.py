"""``patrol detect --model NAME IMAGE...``: run a detector on images, one JSON line per detection."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.coco import COCO80
from core.errors import PatrolError
from models.factory import load_detector


def register(sub: Any) -> None:
    p = sub.add_parser("detect", help="detect objects in images; prints JSON lines {class, score, xyxy}")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", default="yolox_nano_416",
                   help="registered model name (patrol models list) or an Ultralytics-format .onnx path")
    p.add_argument("--score", type=float, default=0.3, help="minimum score (default 0.3)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default 2)")
    p.add_argument("--provider", action="append", default=None, metavar="NAME",
                   help="onnxruntime execution provider to try first, e.g. CUDAExecutionProvider "
                        "(repeatable; skipped when this build lacks it; CPU is always the fallback)")
    p.set_defaults(func=detect)


def detect(args: argparse.Namespace) -> int:
    detector = load_detector(args.model, score_threshold=args.score, iou_threshold=args.iou,
                             class_agnostic=args.agnostic, threads=args.threads, providers=args.provider)
    images = []
    for path in args.images:
        if not Path(path).is_file():
            raise PatrolError(f"{path}: no such image file")
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise PatrolError(f"{path}: cannot decode image (not a picture format OpenCV reads)")
        images.append(np.asarray(image, dtype=np.uint8))
    many = len(args.images) > 1
    for path, dets in zip(args.images, detector.detect(images), strict=True):
        for box, score, cls in zip(dets.xyxy, dets.score, dets.class_id, strict=True):
            name = COCO80[cls] if 0 <= cls < len(COCO80) else str(int(cls))
            row: dict[str, Any] = {"class": name, "score": round(float(score), 4),
                                   "xyxy": [round(float(v), 1) for v in box]}
            if many:
                row = {"image": path, **row}
            print(json.dumps(row))
    return 0
