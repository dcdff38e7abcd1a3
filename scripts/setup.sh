#!/usr/bin/env bash
# One idempotent setup used by README's two commands and by CI:
#   1. Debian packages (FFmpeg dev libraries for ffmpeg-next, clang for bindgen, the ffmpeg
#      CLI that tests use to derive clips, Python for the reference implementation);
#   2. ONNX Runtime's shared library from the PyPI wheel, into a project-local venv;
#   3. a release build of gridwatch;
#   4. the model and the sample media, found locally or downloaded, always sha256-verified.
# Running it again only checks what is already there.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
. "$root/scripts/env.sh"

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

# --- 0. Rust ------------------------------------------------------------------------------
# Debian's own rustc is too old for this workspace (edition 2024), and rustup's servers are
# not a package registry, so the toolchain is a prerequisite rather than something to fetch.
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust 1.92+ with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 92 ]; then
  echo "setup: $(rustc --version) is too old: gridwatch needs Rust 1.92+ (rustup update)" >&2
  exit 1
fi

# --- 1. Debian packages -------------------------------------------------------------------
apt_packages=(
  pkg-config clang
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
  ffmpeg
  mosquitto openssl
  chromium fonts-wqy-microhei
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  python3 python3-venv python3-pip
  ca-certificates
  systemd procps file
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# --- 2. ONNX Runtime from the PyPI wheel ---------------------------------------------------
# The ort crate is built with `load-dynamic`; its version and this wheel's version are a pair
# (README lists it). The venv also carries numpy and OpenCV for the Python reference detector
# that the parity test compares against.
venv="$GRIDWATCH_LOCAL/venv"
want="onnxruntime==$ORT_WHEEL_VERSION numpy==$NUMPY_VERSION opencv-python-headless==$OPENCV_VERSION"
stamp="$venv/.gridwatch-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating Python venv with $want"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade $want
  echo "$want" >"$stamp"
else
  say "Python venv present ($want)"
fi
ort_lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
[ -n "$ort_lib" ] || { echo "setup: the onnxruntime wheel holds no libonnxruntime.so" >&2; exit 1; }
mkdir -p "$GRIDWATCH_LOCAL/lib"
ln -sfn "$ort_lib" "$GRIDWATCH_LOCAL/lib/libonnxruntime.so"
say "ONNX Runtime library: $GRIDWATCH_LOCAL/lib/libonnxruntime.so -> ${ort_lib#"$root"/}"

# --- 2b. the browser test's driver (playwright-core from npm; Debian's Chromium) ---------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Node.js for the browser test"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  say "installing playwright-core (npm ci) for the browser test"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- 2c. cargo-deb, for the package and its test (cross/build.sh) -------------------------
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
  say "installing cargo-deb $cargo_deb_version (crates.io)"
  cargo install --locked --quiet cargo-deb --version "$cargo_deb_version"
fi

# --- 3. build ------------------------------------------------------------------------------
# GRIDWATCH_PROFILE=dev (the test command) builds the dev profile the tests use; the demo
# builds release.
profile="${GRIDWATCH_PROFILE:-release}"
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "setup: GRIDWATCH_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
# GRIDWATCH_FEATURES adds cargo features (the test command builds `tract`, the second
# inference backend, which its parity tests cover).
features=()
[ -n "${GRIDWATCH_FEATURES:-}" ] && features=(--features "$GRIDWATCH_FEATURES")
say "building gridwatch ($profile profile${GRIDWATCH_FEATURES:+, features $GRIDWATCH_FEATURES})"
cargo build --profile "$profile" --locked -p gridwatch "${features[@]}"
bin="$root/target/$profile_dir/gridwatch"

# --- 4. model and sample media -------------------------------------------------------------
"$bin" models fetch --all
"$bin" media fetch
say "ready: $bin"
