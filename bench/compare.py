#!/usr/bin/env python3
"""gridwatch side by side: against the physical limits and against a naive Python pipeline.

One run, on the same clips, model, thread count (1) and detection rate (5 fps):

  limits      ffmpeg CLI decode-only (`ffmpeg -threads 1 -i CLIP -an -f null -`),
              gridwatch's decoder alone, ONNX Runtime inference alone (median, p95):
              all from `gridwatch bench --json`;
  gridwatch   `gridwatch replay` with every frame decoded, with motion gating, and with
              keyframe-only decoding;
  naive       bench/naive_pipeline.py: OpenCV VideoCapture + cv2.resize letterbox +
              onnxruntime + numpy YOLOX post-processing and NMS (the project venv);

on the shared 768x432 clip and on 1920x1080 / 640x360 versions of it made with the ffmpeg
CLI. Each row is the median of --repeat runs with the spread [min-max]. Reports CPU-seconds
per stream-minute, realtime factor, peak RSS, gridwatch / (decode-only + inference-only)
and naive / gridwatch; then the event latency (rule trigger to MQTT receipt through a real
mosquitto, p50/p95) of the live daemon.

Usage: bench/compare.py [--repeat 3] [--clips shared,main,sub] [--latency-seconds 60]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import (BIN, MEDIA, MODELS, SOURCE, VENV_PYTHON, cpu_model, derived_clips,
                    measure, median_spread, require_binary, start_broker, stop)

HERE = Path(__file__).resolve().parent
DETECT_FPS = 5.0
VARIANTS = {
    "gridwatch, every frame decoded": "",
    "gridwatch, motion gating": "motion = { enabled = true }\n",
    "gridwatch, keyframes only": 'decode = "keyframes"\n',
}


def replay_config(work, extra):
    path = work / f"replay-{abs(hash(extra))}.toml"
    path.write_text(
        '[site]\nid = "bench"\ngrid_code = "440305001001"\n\n[storage]\ndata_dir = "data"\n\n'
        f'[[cameras]]\nid = "bench"\nurl = "unused"\ndetect_fps = {DETECT_FPS}\n{extra}'
        '[[cameras.zones]]\nid = "all"\n'
        "polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n"
        '[cameras.zones.illegal_parking]\ndwell = "60s"\n'
        "[cameras.zones.crowding]\nmin_count = 5\n")
    return path


def row(name, runs, media):
    """Median and spread of (wall, cpu, rss) runs, per stream-minute."""
    cpu, cpu_min, cpu_max = median_spread([r[1] for r in runs])
    wall = median_spread([r[0] for r in runs])[0]
    rss = max(r[2] for r in runs)
    minutes = media / 60
    return {"name": name, "cpu": cpu, "cpu_per_min": cpu / minutes,
            "spread": (cpu_min / minutes, cpu_max / minutes), "realtime": media / wall,
            "rss": rss, "wall": wall}


def bench_clip(label, clip, repeat, work):
    env = dict(os.environ, GRIDWATCH_LOG="warn")
    print(f"measuring {label}: {clip.name} ...", file=sys.stderr)
    _, _, _, out, _ = measure([str(BIN), "bench", "--input", str(clip), "--repeat", str(repeat),
                               "--json"], env=env)
    limits = json.loads(out)
    media = limits["media_seconds"]
    rows = [
        {**row("ffmpeg CLI decode-only (limit)", [(s["wall"], s["cpu"], 0) for s in
                                                   limits["ffmpeg_cli_decode"]], media),
         "rss": float("nan")},
        {**row("gridwatch decode-only (limit)", [(s["wall"], s["cpu"], 0) for s in
                                                  limits["decode_only"]], media),
         "rss": float("nan")},
    ]
    inference = limits["inference"][0]
    results = {}
    for name, extra in VARIANTS.items():
        config = replay_config(work, extra)
        runs, detected = [], 0
        for _ in range(repeat):
            wall, cpu, rss, _, err = measure(
                [str(BIN), "replay", "--config", str(config), "--input", str(clip),
                 "--no-progress", "--summary-json", "--out", "/dev/null"], env=env)
            summary = json.loads(err.strip().splitlines()[-1])
            detected = summary["frames_detected"]
            runs.append((wall, cpu, rss))
        results[name] = (row(name, runs, media), detected)
        rows.append({**results[name][0], "detected": detected})
    naive_runs, naive_detected = [], 0
    for _ in range(repeat):
        wall, cpu, rss, out, _ = measure(
            [str(VENV_PYTHON), str(HERE / "naive_pipeline.py"), "--model",
             str(MODELS / "yolox_nano.onnx"), "--input", str(clip), "--detect-fps",
             str(DETECT_FPS)])
        naive_detected = json.loads(out)["frames_detected"]
        naive_runs.append((wall, cpu, rss))
    naive = row("naive Python (OpenCV + onnxruntime + numpy)", naive_runs, media)
    rows.append({**naive, "detected": naive_detected})

    full, full_detected = results["gridwatch, every frame decoded"]
    decode_cpu = median_spread([s["cpu"] for s in limits["decode_only"]])[0]
    limit = decode_cpu + full_detected * inference["cpu_ms"] / 1000
    print(f"\n#### {label}: {clip.name}, {limits['width']}x{limits['height']}, "
          f"{media:.1f} s, {limits['frames']} frames\n")
    print("| pipeline | detected frames | CPU-s / stream-min [min-max] | x realtime "
          "| peak RSS MiB | naive / this (CPU) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        pipeline = r.get("detected") is not None
        ratio = f"{naive['cpu'] / r['cpu']:.2f}x" if pipeline else "-"
        rss = f"{r['rss']:.0f}" if pipeline else "-"
        print(f"| {r['name']} | {r.get('detected', '-')} | {r['cpu_per_min']:.2f} "
              f"[{r['spread'][0]:.2f}-{r['spread'][1]:.2f}] | {r['realtime']:.1f} "
              f"| {rss} | {ratio} |")
    print(f"\ninference alone, 1 thread: median {inference['median_ms']:.2f} ms, "
          f"p95 {inference['p95_ms']:.2f} ms, {inference['cpu_ms']:.2f} CPU-ms per run")
    print(f"gridwatch (every frame) / (decode-only + {full_detected} x inference-only) = "
          f"{full['cpu']:.2f} / {limit:.2f} = **{full['cpu'] / limit:.3f}** (goal <= 1.05)")
    return {"media": media, "rows": rows, "naive": naive, "results": results}


def event_latency(seconds):
    """Live daemon, 4 paced porch cameras, real mosquitto: receipt time minus event time."""
    clip = HERE.parent / "target/bench-clips/porch-300s.mp4"
    if not clip.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "5", "-t",
                        "300", "-i", str(MEDIA / "dog.jpg"), "-c:v", "libx264", "-preset",
                        "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", str(clip)], check=True)
    with tempfile.TemporaryDirectory(prefix="gridwatch-latency-") as tmp:
        work = Path(tmp)
        port, mqtt = start_broker(work, "gridwatch/+/+/+/incident", "%U %p")
        cameras = "".join(
            f'[[cameras]]\nid = "cam{i}"\nurl = "{clip}"\ndetect_fps = 5\n'
            '[[cameras.zones]]\nid = "porch"\n'
            "polygon = [[0.2, 0.55], [0.85, 0.55], [0.85, 0.95], [0.2, 0.95]]\n"
            '[cameras.zones.fly_wire_charging]\ndwell = "5s"\n\n' for i in range(4))
        (work / "config.toml").write_text(
            '[site]\nid = "bench"\ngrid_code = "440305001001"\n\n[storage]\ndata_dir = "data"\n\n'
            '[incidents]\nupdate_every = "1s"\n\n[evidence]\nenabled = false\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbox_id = "bench"\n\n{cameras}')
        daemon = subprocess.Popen([str(BIN), "run", "--config", str(work / "config.toml")],
                                  cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, GRIDWATCH_LOG="warn"))
        time.sleep(seconds)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        time.sleep(1)
        stop(mqtt)
        latencies = []
        for line in (work / "received.txt").read_text().splitlines():
            stamp, _, payload = line.partition(" ")
            event = json.loads(payload)
            at = datetime.fromisoformat(event["event_at"]).timestamp()
            latencies.append((float(stamp) - at) * 1000)
    latencies.sort()
    if not latencies:
        print("\nno incident events arrived: check the daemon")
        return
    p50 = latencies[len(latencies) // 2]
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"\nevent latency (frame arrival -> rule -> store -> MQTT receipt), 4 live cameras, "
          f"{len(latencies)} events: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max "
          f"{latencies[-1]:.0f} ms (goal p95 < 1000 ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clips", default="shared,main,sub")
    parser.add_argument("--latency-seconds", type=float, default=60)
    args = parser.parse_args()
    require_binary()
    if not VENV_PYTHON.exists():
        raise SystemExit(f"{VENV_PYTHON} is missing: run scripts/setup.sh first")
    derived = derived_clips()
    clips = {"shared": MEDIA / SOURCE, "main": derived["main"], "sub": derived["sub"]}
    print(f"### {time.strftime('%Y-%m-%d')}, {cpu_model()} ({os.cpu_count()} cores), "
          f"{args.repeat} runs per row, 1 inference thread, {DETECT_FPS:g} detect fps")
    measured = {}
    with tempfile.TemporaryDirectory(prefix="gridwatch-compare-") as tmp:
        for label in args.clips.split(","):
            measured[label] = bench_clip(label, clips[label], args.repeat, Path(tmp))
    if "main" in measured:
        naive = measured["main"]["naive"]
        print("\n#### camera-hours per core-hour against the naive pipeline on the 1080p "
              "main stream\n")
        print("| gridwatch mode | camera-hours per core-hour | naive | ratio |")
        print("|---|---|---|---|")
        naive_rate = measured["main"]["media"] / naive["cpu"]
        for label in ("main", "sub"):
            if label not in measured:
                continue
            for name, (r, _) in measured[label]["results"].items():
                rate = measured[label]["media"] / r["cpu"]
                print(f"| {name} ({'1080p' if label == 'main' else '360p sub-stream'}) "
                      f"| {rate:.1f} | {naive_rate:.1f} | {rate / naive_rate:.1f}x |")
    if args.latency_seconds > 0:
        event_latency(args.latency_seconds)


if __name__ == "__main__":
    main()
