#!/usr/bin/env python3
"""Reference YOLOX detector for the parity tests: onnxruntime + numpy, with the pre- and
post-processing of YOLOX's own demo code (yolox/data/data_augment.py `preproc`,
yolox/utils/demo_utils.py `demo_postprocess`, `nms`, `multiclass_nms_class_aware`).

Two ways to get the resized picture:

* ``--resize swscale`` (the parity mode): FFmpeg's CLI decodes and scales with the same
  swscale filter gridwatch uses (``--scaler-flags``), giving planar GBR bytes; this script
  then letterboxes them (pad 114, top-left), transposes to BGR CHW float32 and runs YOLOX's
  post-processing. Any difference to gridwatch is then in gridwatch's own code.
* ``--resize cv2`` (YOLOX's demo exactly): ``cv2.imread`` + ``cv2.resize(INTER_LINEAR)``. It
  differs from swscale's filter by a few grey levels, so scores differ slightly; the tests
  use it to check the same objects are found.

``--crop X:Y:W:H`` (swscale mode) runs the model on that rectangle of the picture only, as
gridwatch's detection regions do: FFmpeg's ``crop`` filter before the same scale, boxes
clipped to the rectangle and shifted back into whole-picture pixels.

Prints JSON: ``[{"frame": i, "width": w, "height": h, "detections": [{"class_id", "score",
"box": [x1, y1, x2, y2]}]}]`` with boxes in source pixels, clipped to the image.
"""

import argparse
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort

INPUT_SIZE = 416
PAD_VALUE = 114


def probe_size(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True).stdout.strip()
    width, height = out.split(",")[:2]
    return int(width), int(height)


def swscale_frames(path, flags, max_frames, crop=None):
    """Yields BGR HWC uint8 images of the letterbox's image area, scaled by FFmpeg (of the
    `crop` rectangle (x, y, w, h) only, when given)."""
    width, height = probe_size(path)
    if crop:
        width, height = crop[2], crop[3]
    r = min(INPUT_SIZE / height, INPUT_SIZE / width)
    sw, sh = int(width * r), int(height * r)
    cmd = ["ffmpeg", "-v", "error", "-i", path, "-an", "-fps_mode", "passthrough"]
    if max_frames:
        cmd += ["-frames:v", str(max_frames)]
    crop_filter = f"crop={crop[2]}:{crop[3]}:{crop[0]}:{crop[1]}," if crop else ""
    cmd += ["-vf", f"{crop_filter}scale={sw}:{sh}:flags={flags}", "-pix_fmt", "gbrp",
            "-f", "rawvideo", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    planes = np.frombuffer(raw, np.uint8).reshape(-1, 3, sh, sw)
    for g, b, r_ in planes:
        yield np.stack([b, g, r_], axis=-1), r, width, height


def cv2_frames(path):
    import cv2
    img = cv2.imread(path)
    if img is None:
        sys.exit(f"cv2 cannot read {path}")
    height, width = img.shape[:2]
    r = min(INPUT_SIZE / height, INPUT_SIZE / width)
    resized = cv2.resize(img, (int(width * r), int(height * r)), interpolation=cv2.INTER_LINEAR)
    yield resized.astype(np.uint8), r, width, height


def preproc(resized):
    """YOLOX `preproc`: pad to 416x416 with 114 at the top-left, HWC -> CHW, float32."""
    padded = np.ones((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8) * PAD_VALUE
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)[None]


def demo_postprocess(outputs, strides=(8, 16, 32)):
    grids, expanded = [], []
    for stride in strides:
        size = INPUT_SIZE // stride
        xv, yv = np.meshgrid(np.arange(size), np.arange(size))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        expanded.append(np.full((*grid.shape[:2], 1), stride))
    grids = np.concatenate(grids, 1)
    expanded = np.concatenate(expanded, 1)
    outputs[..., :2] = (outputs[..., :2] + grids) * expanded
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * expanded
    return outputs


def nms(boxes, scores, nms_thr):
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= nms_thr)[0] + 1]
    return keep


def multiclass_nms_class_aware(boxes, scores, nms_thr, score_thr):
    final = []
    for cls in range(scores.shape[1]):
        cls_scores = scores[:, cls]
        mask = cls_scores > score_thr
        if mask.sum() == 0:
            continue
        valid_scores = cls_scores[mask]
        valid_boxes = boxes[mask]
        for k in nms(valid_boxes, valid_scores, nms_thr):
            final.append((cls, float(valid_scores[k]), valid_boxes[k]))
    return final


def detect(session, resized, r, width, height, score_thr, nms_thr):
    output = session.run(None, {session.get_inputs()[0].name: preproc(resized)})[0]
    predictions = demo_postprocess(output.copy())[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    boxes_xyxy = np.ones_like(boxes)
    boxes_xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
    boxes_xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
    boxes_xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
    boxes_xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
    boxes_xyxy /= r
    detections = []
    for cls, score, box in multiclass_nms_class_aware(boxes_xyxy, scores, nms_thr, score_thr):
        # The only step beyond YOLOX's demo: clip to the image, as gridwatch reports.
        x1, y1 = min(max(box[0], 0), width), min(max(box[1], 0), height)
        x2, y2 = min(max(box[2], 0), width), min(max(box[3], 0), height)
        if (x2 - x1) * (y2 - y1) <= 0:
            continue
        detections.append({"class_id": cls, "score": score,
                           "box": [float(x1), float(y1), float(x2), float(y2)]})
    return detections


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="image or video")
    parser.add_argument("--resize", choices=["swscale", "cv2"], default="swscale")
    parser.add_argument("--scaler-flags", default="bilinear")
    parser.add_argument("--max-frames", type=int, default=0)
    parser.add_argument("--score-thr", type=float, default=0.3)
    parser.add_argument("--nms-thr", type=float, default=0.45)
    parser.add_argument("--crop", help="X:Y:W:H, source pixels (swscale mode)")
    args = parser.parse_args()
    crop = tuple(int(v) for v in args.crop.split(":")) if args.crop else None

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    frames = (cv2_frames(args.input) if args.resize == "cv2"
              else swscale_frames(args.input, args.scaler_flags, args.max_frames, crop))
    results = []
    for index, (resized, r, width, height) in enumerate(frames):
        detections = detect(session, resized, r, width, height, args.score_thr, args.nms_thr)
        if crop:
            for d in detections:
                d["box"] = [d["box"][0] + crop[0], d["box"][1] + crop[1],
                            d["box"][2] + crop[0], d["box"][3] + crop[1]]
            width, height = probe_size(args.input)
        results.append({"frame": index, "width": width, "height": height,
                        "detections": detections})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
