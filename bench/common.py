"""What the benchmark scripts share: paths, the derived clips, measuring child processes."""

import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEDIA = Path(os.environ.get("GRIDWATCH_MEDIA_DIR", ROOT / "../shared/media"))
MODELS = Path(os.environ.get("GRIDWATCH_MODEL_DIR", ROOT / "../shared/models"))
BIN = Path(os.environ.get("GRIDWATCH_BIN", ROOT / "target/release/gridwatch"))
VENV_PYTHON = Path(os.environ.get("GRIDWATCH_LOCAL", ROOT / ".local")) / "venv/bin/python"
CLIPS = ROOT / "target/bench-clips"
SOURCE = "one-by-one-person-detection.mp4"
STREAM_FPS = 25.0
GOP = 50


def _main_and_sub(prefix, source, filters):
    """`source` through `filters(size)` at 1920x1080 and 640x360, 25 fps, GOP 50, no
    B-frames (as cameras send), made once each with the ffmpeg CLI."""
    CLIPS.mkdir(parents=True, exist_ok=True)
    clips = {}
    for role, size in (("main", "1920:1080"), ("sub", "640:360")):
        name = f"{prefix}{role}"
        path = CLIPS / f"{name}-{size.replace(':', 'x')}-25fps-gop{GOP}.mp4"
        if not path.exists():
            partial = path.with_suffix(".partial.mp4")
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex",
                 f"{filters(size)}[v]", "-map", "[v]", "-c:v", "libx264", "-preset",
                 "veryfast", "-bf", "0", "-g", str(GOP), "-keyint_min", str(GOP),
                 "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(partial)],
                check=True,
            )
            partial.rename(path)
        clips[name] = path
    return clips


def derived_clips():
    """The shared 768x432 clip as a 1920x1080 main stream and its 640x360 sub-stream."""
    return _main_and_sub("", MEDIA / SOURCE, lambda size: f"[0]fps={STREAM_FPS:g},scale={size}")


def static_clips():
    """A mostly static scene: the shared parking-lot GIF (a car drives into the aisle and
    stops) held for 4 minutes with sensor noise, as the scenario suite's parking clip."""
    return _main_and_sub(
        "static_", MEDIA / "person-bicycle-car-detection.gif",
        lambda size: f"[0]fps={STREAM_FPS:g},scale={size},format=yuv420p,"
                     "tpad=stop_mode=clone:stop_duration=240,noise=alls=4:allf=t")


def require_binary():
    """The release binary, built when missing (a clean checkout after scripts/setup.sh)."""
    if not BIN.exists():
        print(f"{BIN} is missing: building it (cargo build --release -p gridwatch)",
              flush=True)
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "gridwatch"],
                       cwd=ROOT, check=True)
    if not BIN.exists():
        raise SystemExit(f"{BIN} is still missing after the build: set GRIDWATCH_BIN")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def measure(args, env=None, cwd=None):
    """Runs a command to completion; returns (wall s, CPU s, peak RSS MiB, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=cwd)
        # wait4 gives this child's own rusage, so runs do not blur into each other.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr


def median_spread(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]



def rotated(clip, index, count):
    """`clip` started `index/count` of the way through and wrapped around, by stream copy
    (cut at keyframes): cameras playing the same scene out of step, as real cameras are,
    instead of all moving at the same instant."""
    if index % count == 0:
        return clip
    path = clip.with_name(f"{clip.stem}-rot{index % count}of{count}{clip.suffix}")
    if not path.exists():
        duration = float(subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
             str(clip)], capture_output=True, text=True, check=True).stdout.strip())
        at = duration * (index % count) / count
        listing = path.with_suffix(".txt")
        listing.write_text(f"file '{clip}'\ninpoint {at:.3f}\nfile '{clip}'\noutpoint {at:.3f}\n")
        partial = path.with_suffix(".partial" + clip.suffix)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                        str(listing), "-c", "copy", str(partial)], check=True)
        partial.rename(path)
        listing.unlink()
    return path


def start_broker(work, topic, line_format):
    """A mosquitto on a free loopback port and a mosquitto_sub writing what arrives on
    `topic` to work/received.txt, one `line_format` line each. Returns (port, [processes])
    for `stop` later."""
    port = free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    with open(work / "received.txt", "w") as received:
        subscriber = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
             "-F", line_format], stdout=received)
    return port, [subscriber, broker]


def stop(processes):
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
