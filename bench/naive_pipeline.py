#!/usr/bin/env python3
"""The pipeline a user would write instead of gridwatch, for the side-by-side benchmark.

OpenCV `VideoCapture` decodes the clip; frames are sampled at the same detection rate as
gridwatch (the first frame at or after each 1/fps mark of stream time); each sampled frame
goes through YOLOX's own demo code: `cv2.resize` letterbox (`preproc`), ONNX Runtime, numpy
grid decode (`demo_postprocess`) and class-aware NMS. Written the way YOLOX's demo and most
tutorials do it, with one fairness concession: frames that are not sampled are only
`grab()`bed (decoded, not converted to BGR), as a careful user would.

Threads are pinned like gridwatch's defaults: one ONNX Runtime thread, one OpenCV thread
and one FFmpeg decoder thread (OPENCV_FFMPEG_CAPTURE_OPTIONS).

Prints one JSON line: frames decoded, frames detected, detections, media seconds.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

# YOLOX's demo post-processing (grid decode, NMS), as in the parity test's reference.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/reference"))
from yolox_reference import demo_postprocess, nms  # noqa: E402

INPUT_SIZE = 416


def preproc(img):
    """YOLOX `preproc`: letterbox with cv2.resize (INTER_LINEAR), pad 114, CHW float32."""
    padded = np.ones((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8) * 114
    r = min(INPUT_SIZE / img.shape[0], INPUT_SIZE / img.shape[1])
    resized = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), r


def detect(session, img, score_thr=0.3, nms_thr=0.45):
    blob, r = preproc(img)
    output = session.run(None, {session.get_inputs()[0].name: blob[None]})[0]
    predictions = demo_postprocess(output)[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    xyxy = np.empty_like(boxes)
    xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2
    xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2
    xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2
    xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2
    xyxy /= r
    found = []
    for cls in range(scores.shape[1]):
        mask = scores[:, cls] > score_thr
        if mask.any():
            for k in nms(xyxy[mask], scores[mask, cls], nms_thr):
                found.append((cls, float(scores[mask, cls][k])))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--detect-fps", type=float, default=5.0)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    capture = cv2.VideoCapture(args.input)
    if not capture.isOpened():
        sys.exit(f"OpenCV cannot open {args.input}")
    step_ms = 1000.0 / args.detect_fps
    next_ms, decoded, detected, detections, last_ms = 0.0, 0, 0, 0, 0.0
    while capture.grab():
        decoded += 1
        last_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
        if last_ms + 1e-6 < next_ms:
            continue
        next_ms = (int(last_ms / step_ms) + 1) * step_ms
        ok, frame = capture.retrieve()
        if not ok:
            continue
        detections += len(detect(session, frame))
        detected += 1
    print(json.dumps({"frames_decoded": decoded, "frames_detected": detected,
                      "detections": detections, "media_seconds": last_ms / 1000.0}))


if __name__ == "__main__":
    main()
