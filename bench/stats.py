#!/usr/bin/env python3
"""What the station's statistics cost a box: `GET /api/stats` over 30 days, by store size.

The statistics are counted from the store when asked (no counters of their own), so their
cost grows with the incidents and crossings of the range. This fills a real gridwatch store
(the daemon creates and migrates it) with synthetic incidents spread over 30 days, 8
cameras, 4 zones each and 4 kinds, a third of them reviewed, and crossings at ten times the
incident count, then times the real daemon's `GET /api/stats` (the 统计 tab's two requests:
`group=day,kind` and `group=day,camera,zone,kind`) and `GET /api/stats.csv`. Prints a
table with the median of 7 requests and the ratio to the smallest store, measured in the
same run.

Usage: bench/stats.py [--sizes 1000,10000,100000]
"""

import argparse
import json
import random
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from common import BIN, cpu_model, free_port, median_spread, require_binary

DAY_US = 86_400_000_000
KINDS = ["illegal_parking", "fly_wire_charging", "crowding", "wrong_way_entry"]
TOKEN = "bench-token-0123456789"


def start_daemon(work, port):
    config = work / "config.toml"
    (work / "web.token").write_text(TOKEN + "\n")
    config.write_text(
        f'[site]\nid = "bench"\ngrid_code = "1"\n\n[storage]\ndata_dir = "data"\n\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\ntoken_file = "web.token"\n\n'
        '[[cameras]]\nid = "cam0"\nurl = "/nonexistent.mp4"\n'
    )
    process = subprocess.Popen([str(BIN), "run", "--no-cameras", "--config", str(config)],
                               stderr=subprocess.DEVNULL, cwd=work)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not start")
            time.sleep(0.2)


def fill(db_path, incidents, now_us):
    rng = random.Random(7)
    db = sqlite3.connect(db_path)
    rows, crossings = [], []
    for i in range(incidents):
        opened = now_us - rng.randrange(30 * DAY_US)
        kind = KINDS[i % len(KINDS)]
        camera, zone = f"cam{i % 8}", f"zone{(i // 8) % 4}"
        event = {"kind": kind, "peak_count": rng.randrange(1, 20)}
        verdict = rng.choice([None, None, "confirmed", "dismissed"])
        reviewed = None
        if verdict:
            t = (opened + rng.randrange(3_600_000_000)) / 1e6
            reviewed = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))
        rows.append((str(uuid.uuid4()), camera, zone, kind, "closed", "confirmed", "",
                     opened, i, json.dumps(event), verdict, reviewed))
    db.executemany(
        "INSERT INTO incidents (incident_id, camera_id, zone_id, kind, state, status, opened_at,"
        " opened_at_us, last_seq, last_event, review_verdict, reviewed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    for i in range(incidents * 10):
        crossings.append((f"cam{i % 8}", f"line{i % 2}", rng.choice(["in", "out"]),
                          rng.choice(["person", "bicycle", "car"]), i,
                          now_us - rng.randrange(30 * DAY_US)))
    db.executemany(
        "INSERT INTO crossings (camera_id, line_id, direction, label, track_id, at_us)"
        " VALUES (?, ?, ?, ?, ?, ?)", crossings)
    db.commit()
    db.close()


def timed_get(url, runs=7):
    times = []
    for _ in range(runs):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return median_spread(times)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    require_binary()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            port = free_port()
            daemon = start_daemon(work, port)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
            fill(work / "data/gridwatch.db", size, int(time.time() * 1e6))
            daemon = start_daemon(work, port)
            try:
                base = f"http://127.0.0.1:{port}/api"
                chart = timed_get(f"{base}/stats?group=day,kind")
                table = timed_get(f"{base}/stats?group=day,camera,zone,kind")
                csv = timed_get(f"{base}/stats.csv?group=day,camera,zone,kind")
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=20)
            results.append((size, chart, table, csv))
    print(f"# statistics over 30 days, {cpu_model()}, {BIN}")
    print("| incidents | crossings | day,kind ms | day,camera,zone,kind ms | CSV ms | ratio (table) |")
    print("|---|---|---|---|---|---|")
    baseline = results[0][2]
    for size, chart, table, csv in results:
        print(f"| {size} | {size * 10} | {chart:.1f} | {table:.1f} | {csv:.1f} | "
              f"{table / baseline:.1f}x |")


if __name__ == "__main__":
    main()
