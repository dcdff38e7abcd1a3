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


def derived_clips():
    """The shared 768x432 clip made into a 1920x1080 25 fps main stream with GOP 50 and its
    640x360 sub-stream, with the ffmpeg CLI, once."""
    CLIPS.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, size in (("main", "1920:1080"), ("sub", "640:360")):
        path = CLIPS / f"{name}-{size.replace(':', 'x')}-25fps-gop{GOP}.mp4"
        if not path.exists():
            partial = path.with_suffix(".partial.mp4")
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(MEDIA / SOURCE), "-an",
                 "-vf", f"fps={STREAM_FPS:g},scale={size}", "-c:v", "libx264",
                 "-preset", "veryfast", "-bf", "0", "-g", str(GOP), "-keyint_min", str(GOP),
                 "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(partial)],
                check=True,
            )
            partial.rename(path)
        clips[name] = path
    return clips


def require_binary():
    if not BIN.exists():
        raise SystemExit(f"{BIN} is missing: run `cargo build --release -p gridwatch` first")


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
