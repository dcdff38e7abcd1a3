#!/usr/bin/env python3
"""Soak test, run by hand: does the daemon stay flat over hours of cameras that drop?

4 porch cameras over RTSP (GStreamer's RTSP server, tests/rtsp/server.py) watched by
`gridwatch run` for --duration seconds (default 1 hour), publishing to a real mosquitto.
Every --restart-every seconds (default 10 minutes) the RTSP server is killed, left down for
--down seconds (longer than the cameras' offline_after, so each drop is a camera_offline
incident) and started again. Every --sample-every seconds (default 1 minute) the daemon's
RSS, open file descriptors and threads are sampled.

At the end it prints the samples, the growth of each from the first sample after warm-up
to the last (goal: < 5 %), and checks that no incident event was lost: every event the
daemon stored (SQLite `events`) arrived over MQTT, and each restart raised one
camera_offline per camera. Exit status 1 when a goal is missed.

Usage: bench/soak.py [--duration 3600] [--restart-every 600] [--down 20]
       bench/soak.py --wrap "heaptrack -o target/soak.heaptrack"   # heap profile of the run
"""

import argparse
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, MEDIA, ROOT, free_port, require_binary, start_broker, stop

CAMERAS = 4


def porch_clip(seconds):
    """dog.jpg as a still porch camera (a bicycle that stands still), 5 fps, GOP 5 s."""
    out = ROOT / f"target/rtsp-clips/soak-porch-{seconds}s.mkv"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.mkv")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "5", "-t", str(seconds),
             "-i", str(MEDIA / "dog.jpg"), "-an", "-c:v", "libx264", "-preset", "ultrafast",
             "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", str(partial)],
            check=True,
        )
        partial.rename(out)
    return out


def start_rtsp(port, clip):
    args = ["/usr/bin/python3", str(ROOT / "tests/rtsp/server.py"),
            "--port", str(port)]
    for i in range(CAMERAS):
        args += ["--mount", f"cam{i}={clip}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def daemon_pid(root_pid):
    """The gridwatch process itself, which a --wrap tool (heaptrack) runs as a descendant."""
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(BIN):
                return pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pending += [int(child) for child in children]
    return None


def sample(pid):
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {line.split(":")[0]: line.split(":")[1].split() for line in status}
    return {
        "rss_mib": int(field["VmRSS"][0]) / 1024,
        # Anonymous memory is the heap; file-backed is code and mapped files. Split so a
        # growth can be told apart from pages of the libraries being touched late.
        "anon_mib": int(field["RssAnon"][0]) / 1024,
        "file_mib": int(field["RssFile"][0]) / 1024,
        "threads": int(field["Threads"][0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def growth(first, last):
    return (last - first) / first * 100 if first else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600)
    parser.add_argument("--restart-every", type=float, default=600)
    parser.add_argument("--down", type=float, default=20)
    parser.add_argument("--sample-every", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=120,
                        help="seconds before the baseline sample (model, rings filling)")
    parser.add_argument("--wrap", default="",
                        help="command line to run the daemon under, e.g. a heap profiler")
    args = parser.parse_args()
    require_binary()
    clip = porch_clip(int(args.duration) + 600)

    with tempfile.TemporaryDirectory(prefix="gridwatch-soak-") as tmp:
        work = Path(tmp)
        rtsp_port = free_port()
        mqtt_port, mqtt = start_broker(work, "gridwatch/#", "%t %p")
        rtsp = start_rtsp(rtsp_port, clip)
        cameras = "".join(
            f'[[cameras]]\nid = "cam{i}"\nurl = "rtsp://127.0.0.1:{rtsp_port}/cam{i}"\n'
            'detect_fps = 2\noffline_after = "8s"\nio_timeout = "3s"\n'
            '[[cameras.zones]]\nid = "porch"\n'
            "polygon = [[0.2, 0.55], [0.85, 0.55], [0.85, 0.95], [0.2, 0.95]]\n"
            '[cameras.zones.fly_wire_charging]\ndwell = "15s"\n\n'
            for i in range(CAMERAS))
        (work / "config.toml").write_text(
            '[site]\nid = "soak"\ngrid_code = "440305001001"\n\n'
            '[storage]\ndata_dir = "data"\n\n'
            '[evidence]\npre_roll = "5s"\npost_roll = "5s"\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nbox_id = "soak"\n\n{cameras}')
        log = open(work / "daemon.log", "w")
        wrapper = subprocess.Popen(
            shlex.split(args.wrap) + [str(BIN), "run", "--config", str(work / "config.toml")],
            cwd=work, stdout=subprocess.DEVNULL, stderr=log,
            env=dict(os.environ, GRIDWATCH_LOG="info"))
        pid = None
        while pid is None and wrapper.poll() is None:
            time.sleep(0.1)
            pid = daemon_pid(wrapper.pid)
        samples, restarts = [], 0
        started = time.monotonic()
        next_sample, next_restart = started + args.warmup, started + args.restart_every
        try:
            while time.monotonic() - started < args.duration:
                now = time.monotonic()
                if wrapper.poll() is not None:
                    raise SystemExit(f"the daemon exited: {(work / 'daemon.log').read_text()}")
                if now >= next_restart:
                    rtsp.kill()
                    rtsp.wait()
                    time.sleep(args.down)
                    rtsp = start_rtsp(rtsp_port, clip)
                    restarts += 1
                    next_restart += args.restart_every
                if now >= next_sample:
                    s = sample(pid)
                    s["minute"] = round((now - started) / 60, 1)
                    samples.append(s)
                    print(f"{s['minute']:6.1f} min  RSS {s['rss_mib']:7.1f} MiB "
                          f"(anon {s['anon_mib']:7.1f}, file {s['file_mib']:6.1f})  "
                          f"fds {s['fds']:4}  threads {s['threads']:4}", flush=True)
                    next_sample += args.sample_every
                time.sleep(1)
            # Let the last offline incidents close and the outbox drain.
            time.sleep(30)
        finally:
            if pid is not None and wrapper.poll() is None:
                os.kill(pid, signal.SIGTERM)
            # A profiler wrapping the daemon writes its report after the daemon exits.
            wrapper.wait(timeout=20 if not args.wrap else 600)
            rtsp.kill()
            stop(mqtt)

        stored = sqlite3.connect(work / "data/gridwatch.db").execute(
            "SELECT event_id, payload FROM events").fetchall()
        delivered = set()
        for line in (work / "received.txt").read_text().splitlines():
            topic, _, payload = line.partition(" ")
            if topic.endswith("/incident"):
                try:
                    delivered.add(json.loads(payload)["event_id"])
                except (ValueError, KeyError):
                    pass
        lost = [event_id for event_id, _ in stored if event_id not in delivered]
        offline = sum(1 for _, p in stored
                      if json.loads(p).get("kind") == "camera_offline"
                      and json.loads(p).get("state") == "opened")

    failed = False
    print(f"\n{len(samples)} samples, {restarts} RTSP server restarts, "
          f"{len(stored)} incident events stored, {len(lost)} not delivered over MQTT, "
          f"{offline} camera_offline incidents (expected {restarts * CAMERAS})")
    # The goals are on RSS, fds and threads; anon and file are the two parts of RSS, shown
    # to say where a growth is.
    for key in ("rss_mib", "anon_mib", "file_mib", "fds", "threads"):
        if len(samples) >= 2:
            g = growth(samples[0][key], samples[-1][key])
            goal = key not in ("anon_mib", "file_mib")
            verdict = ("ok" if g < 5 else "GROWS") if goal else "(part of RSS)"
            failed |= goal and g >= 5
            print(f"{key:8} first {samples[0][key]:8.1f}  last {samples[-1][key]:8.1f}  "
                  f"growth {g:+.1f} %  {verdict}")
    failed |= bool(lost) or offline < restarts * CAMERAS
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
