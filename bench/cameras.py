#!/usr/bin/env python3
"""How many cameras one box sustains in real time, per decoding mode.

Runs the real daemon (`gridwatch run`) with N file cameras played at real speed (the daemon
paces files like live cameras) on a 1920x1080 25 fps H.264 clip with GOP 50 and its 640x360
sub-stream, both made from a shared clip with the ffmpeg CLI, and reads the daemon's own
/metrics. Cameras play the clip from 8 different starting points (by stream copy), so
they are busy at different moments as real cameras are. A camera is sustained when it decodes at its stream's rate and drops no frame
for inference. For each mode:

  (a) detection on the main stream, every frame decoded (the baseline);
  (b) detection on the sub-stream; the main stream is only recorded for clips;
  (c) as (b) with motion gating (the scene is mostly static);
  (d) keyframes only, on the main stream;
  (e) as (c) on a mostly static scene (a parking lot where a car arrives and stays).

Method per mode: one camera first, to measure its CPU; then N = the cameras that CPU
predicts fit in 90 % of the cores, checked live, and lowered by a fifth until sustained.
Prints a table with CPU-seconds per camera-hour, cameras sustained and the ratio to (a),
and RSS (the base process and each added camera).

Usage: bench/cameras.py [--duration 60] [--modes abcde] [--max-cameras 100]
"""

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import BIN, GOP, SOURCE, STREAM_FPS, cpu_model, derived_clips, free_port
from common import require_binary, rotated, static_clips

TICKS = os.sysconf("SC_CLK_TCK")
# Cameras play the clip from this many different starting points.
PHASES = 8
# detector.workers of the daemon under test (--workers).
WORKERS = 1
# Every camera's `regions` (--regions): "auto" (the default) plans detection regions from
# the zones, "full" is one whole-picture pass, as before detection regions.
REGIONS = "auto"
# The whole-picture zone's min_object_height (--min-object-height); None: the default.
MIN_OBJECT_HEIGHT = None

MODES = {
    "a": ("main 1080p, full decode", "main", None, ""),
    "b": ("sub 360p, full decode", "main", "sub", ""),
    "c": ("sub 360p + motion gating", "main", "sub", "motion = { enabled = true }\n"),
    "d": ("main 1080p, keyframes only", "main", None, 'decode = "keyframes"\n'),
    "e": ("as (c), mostly static scene", "static_main", "static_sub",
          "motion = { enabled = true }\n"),
}


def write_config(work, mode, cameras, clips, port):
    _, url, detect, extra = MODES[mode]
    text = (
        '[site]\nid = "bench"\ngrid_code = "440305001001"\n\n'
        f'[detector]\nworkers = {WORKERS}\n\n'
        '[storage]\ndata_dir = "data"\n\n'
        '[evidence]\npre_roll = "5s"\npost_roll = "5s"\n\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\ntoken_file = "token"\n\n'
    )
    for i in range(cameras):
        text += f'[[cameras]]\nid = "cam{i:02}"\nurl = "{rotated(clips[url], i, PHASES)}"\n'
        text += f'regions = "{REGIONS}"\n'
        if detect:
            text += f'detect_url = "{rotated(clips[detect], i, PHASES)}"\n'
        text += extra
        # Every rule family watches the whole frame, as on a busy camera.
        text += (
            '[[cameras.zones]]\nid = "all"\n'
            "polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n"
            + (f"min_object_height = {MIN_OBJECT_HEIGHT}\n" if MIN_OBJECT_HEIGHT else "")
            +
            '[cameras.zones.illegal_parking]\ndwell = "60s"\n'
            "[cameras.zones.crowding]\nmin_count = 5\n\n"
        )
    (work / "token").write_text("bench-token\n")
    path = work / "config.toml"
    path.write_text(text)
    return path


def metrics(port):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer bench-token"}
    )
    totals = {}
    with urllib.request.urlopen(request, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("#") or "{camera=" not in line:
                continue
            name_labels, value = line.rsplit(" ", 1)
            name, labels = name_labels.split("{", 1)
            camera = labels.split('"')[1]
            # Series with more labels than the camera (inferences per region) are summed.
            per_camera = totals.setdefault(camera, {})
            per_camera[name] = per_camera.get(name, 0.0) + float(value)
    return totals


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def live_run(mode, cameras, clips, duration, warmup):
    """Runs the daemon with `cameras` cameras; returns its CPU, RSS and whether it kept up."""
    with tempfile.TemporaryDirectory(prefix="gridwatch-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        config = write_config(work, mode, cameras, clips, port)
        log = open(work / "daemon.log", "w")
        env = dict(os.environ, GRIDWATCH_LOG="warn")
        daemon = subprocess.Popen([str(BIN), "run", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=work)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    metrics(port)
                    break
                except OSError:
                    if daemon.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(
                            f"the daemon did not come up:\n{(work / 'daemon.log').read_text()}")
                    time.sleep(0.2)
            time.sleep(warmup)
            cpu0, m0, t0 = cpu_seconds(daemon.pid), metrics(port), time.monotonic()
            time.sleep(duration)
            cpu1, m1, t1 = cpu_seconds(daemon.pid), metrics(port), time.monotonic()
            rss = rss_mib(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
        elapsed = t1 - t0
        expected = STREAM_FPS / GOP if MODES[mode][3].startswith("decode") else STREAM_FPS
        worst = min(
            (m1[c].get("gridwatch_frames_decoded_total", 0)
             - m0.get(c, {}).get("gridwatch_frames_decoded_total", 0)) / elapsed / expected
            for c in m1
        )
        dropped = sum(m1[c].get("gridwatch_frames_dropped_total", 0)
                      - m0.get(c, {}).get("gridwatch_frames_dropped_total", 0) for c in m1)
        inferred = sum(m1[c].get("gridwatch_frames_inferred_total", 0)
                       - m0.get(c, {}).get("gridwatch_frames_inferred_total", 0) for c in m1)
        region_inferences = sum(
            m1[c].get("gridwatch_region_inferences_total", 0)
            - m0.get(c, {}).get("gridwatch_region_inferences_total", 0) for c in m1)
        return {
            "cameras": cameras,
            "cpu_per_camera_hour": (cpu1 - cpu0) / elapsed / cameras * 3600,
            "cores": (cpu1 - cpu0) / elapsed,
            "rss": rss,
            "keeps_up": worst >= 0.95 and dropped == 0 and len(m1) == cameras,
            "worst_rate": worst,
            "dropped": dropped,
            "detect_fps": inferred / elapsed / cameras,
            "inferences_per_s": region_inferences / elapsed / cameras,
        }


def measure_mode(mode, clips, args):
    cores = os.cpu_count() or 1
    one = live_run(mode, 1, clips, args.duration, args.warmup)
    print(f"  ({mode}) 1 camera: {one['cores']:.3f} cores, keeps up: {one['keeps_up']}",
          file=sys.stderr)
    guess = max(1, min(args.max_cameras, math.floor(0.9 * cores / max(one["cores"], 1e-3))))
    best, n = (one if one["keeps_up"] else None), guess
    while n > 1:
        run = live_run(mode, n, clips, args.duration, args.warmup)
        print(f"  ({mode}) {n} cameras: {run['cores']:.2f} cores, worst decode rate "
              f"{run['worst_rate']:.2f}, dropped {run['dropped']:.0f}, keeps up: "
              f"{run['keeps_up']}", file=sys.stderr)
        if run["keeps_up"]:
            best = run
            break
        n = math.floor(n * 0.8)
    per_camera_rss = ((best["rss"] - one["rss"]) / (best["cameras"] - 1)
                      if best and best["cameras"] > 1 else float("nan"))
    return one, best, per_camera_rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--modes", default="abcde")
    parser.add_argument("--max-cameras", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="detector.workers")
    parser.add_argument("--regions", default="auto", choices=["auto", "full"],
                        help="every camera's detection regions")
    parser.add_argument("--min-object-height", type=float, default=None,
                        help="the zones' min_object_height (default: gridwatch's)")
    args = parser.parse_args()
    global WORKERS, REGIONS, MIN_OBJECT_HEIGHT
    WORKERS = args.workers
    REGIONS = args.regions
    MIN_OBJECT_HEIGHT = args.min_object_height
    require_binary()
    clips = {**derived_clips(), **static_clips()}
    results = {}
    for mode in args.modes:
        print(f"measuring ({mode}) {MODES[mode][0]} ...", file=sys.stderr)
        results[mode] = measure_mode(mode, clips, args)

    print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_model()} ({os.cpu_count()} cores), "
          f"{args.duration:g} s per run; clip: {SOURCE} at 1920x1080 / 640x360, 25 fps, "
          f"GOP {GOP}, detector.workers = {WORKERS}, regions = \"{REGIONS}\", "
          f"zone min_object_height = {MIN_OBJECT_HEIGHT or 'default'}\n")
    print("| mode | detect fps / camera | inferences/s / camera | CPU-s per camera-hour "
          "| cameras sustained | vs (a) | RSS, 1 camera (MiB) | RSS per added camera (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    base = results.get("a", (None, None, None))[1]
    for mode, (one, best, per_camera_rss) in results.items():
        sustained = best["cameras"] if best else 0
        capped = "≥ " if sustained >= args.max_cameras else ""
        cpu = (best or one)["cpu_per_camera_hour"]
        ratio = f"{sustained / base['cameras']:.1f}x" if base and sustained else "-"
        print(f"| ({mode}) {MODES[mode][0]} | {(best or one)['detect_fps']:.2f} "
              f"| {(best or one)['inferences_per_s']:.2f} | {cpu:.0f} "
              f"| {capped}{sustained} | {ratio} | {one['rss']:.0f} | {per_camera_rss:.1f} |")


if __name__ == "__main__":
    main()
