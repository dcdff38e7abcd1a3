#!/usr/bin/env bash
# One idempotent setup used by README's two commands and by CI:
#   1. Debian packages (FFmpeg dev libraries for ffmpeg-next, clang for bindgen, the ffmpeg
#      CLI that tests use to derive clips, Python for the reference implementation);
#   2. ONNX Runtime's shared library from the PyPI wheel, into a project-local venv;
#   3. a release build of gridwatch;
#   4. the model and the sample media, found locally or downloaded, always sha256-verified.
# Running it again only checks what is already there. After each install step the toolchain
# it gave is proved (scripts/preflight.sh): a missing package fails here, in one line that
# names it, not deep inside a crate's build script.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
. "$root/scripts/env.sh"
# shellcheck source=scripts/preflight.sh
. "$root/scripts/preflight.sh"

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
# Every package by name: setup installs with --no-install-recommends, so nothing may come
# only as a Recommends (gcc recommends libc6-dev; a cross gcc its libc headers). README's
# list of what setup installs is kept in step with these arrays.
apt_packages=(
  # the C toolchain for -sys crates (ring, SQLite) and bindgen's libclang
  gcc libc6-dev pkg-config clang libclang-dev
  # FFmpeg: the libraries ffmpeg-next binds, and the CLI tests derive clips with
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
  ffmpeg
  # MQTT tests (their own broker, password files, TLS certificates)
  mosquitto openssl
  # the review page test: Debian's Chromium, a CJK font for the zh-CN page
  chromium fonts-wqy-microhei fontconfig
  # GStreamer's RTSP server for the RTSP tests (matroskademux: good, h26xparse: bad)
  python3-gi gir1.2-glib-2.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  # Python for the venv (ONNX Runtime's wheel, the parity reference)
  python3 python3-venv python3-pip
  ca-certificates
  # the package test: systemd-analyze verify, dpkg-deb, file
  systemd procps file xz-utils
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
# Prove what those packages should have given, before anything long runs.
preflight_c native "${CC:-cc}" "gcc libc6-dev" env
preflight_commands pkg-config=pkg-config clang=clang ffmpeg=ffmpeg ffprobe=ffmpeg \
  mosquitto=mosquitto mosquitto_passwd=mosquitto openssl=openssl chromium=chromium \
  systemd-analyze=systemd dpkg-deb=dpkg file=file fc-list=fontconfig
compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null ||
  preflight_fail "bindgen finds no libclang.so under /usr/lib/llvm-*: install libclang-dev"
preflight_pkg_config libavcodec=libavcodec-dev libavformat=libavformat-dev \
  libavutil=libavutil-dev libswscale=libswscale-dev libavfilter=libavfilter-dev \
  libavdevice=libavdevice-dev
preflight_files /usr/share/fonts/truetype/wqy/wqy-microhei.ttc=fonts-wqy-microhei
gst='import gi; gi.require_version("Gst", "1.0"); from gi.repository import Gst; Gst.init(None)'
preflight_python /usr/bin/python3 \
  'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer=gir1.2-gst-rtsp-server-1.0' \
  "$gst; assert Gst.ElementFactory.find('matroskademux'), 'no matroskademux'=gstreamer1.0-plugins-good" \
  "$gst; assert Gst.ElementFactory.find('rtph265pay'), 'no rtph265pay'=gstreamer1.0-plugins-good" \
  "$gst; assert Gst.ElementFactory.find('h265parse'), 'no h265parse'=gstreamer1.0-plugins-bad" \
  "$gst; assert Gst.ElementFactory.find('filesrc'), 'no filesrc'=libgstreamer1.0-0"
preflight_python python3 'import venv, ensurepip=python3-venv'

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
preflight_python "$venv/bin/python" \
  "import onnxruntime, numpy, cv2=the venv's wheels (remove $venv and rerun setup)"
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
preflight_commands node=nodejs npm=npm
# The review page's chart library, embedded in the binary by agent/build.rs.
if [ ! -f agent/web/node_modules/uplot/dist/uPlot.iife.min.js ]; then
  say "installing the review page's chart library (npm ci in agent/web)"
  (cd agent/web && npm ci --no-audit --no-fund --loglevel=error)
fi
preflight_files "$root/agent/web/node_modules/uplot/dist/uPlot.iife.min.js=uplot (npm, agent/web: run npm ci there)"
(cd tests/browser && node -e 'require("playwright-core")' 2>/dev/null) ||
  preflight_fail "node cannot load playwright-core from tests/browser/node_modules: run (cd tests/browser && npm ci)"

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
# GRIDWATCH_FEATURES adds gridwatch's cargo features (the test command builds `tract`, the
# second inference backend, which its parity tests cover).
features=()
[ -n "${GRIDWATCH_FEATURES:-}" ] && features=(--features "gridwatch/${GRIDWATCH_FEATURES//,/,gridwatch/}")
say "building gridwatch ($profile profile${GRIDWATCH_FEATURES:+, features $GRIDWATCH_FEATURES})"
if [ "$profile" = dev ]; then
  # The test command's build: the binaries and every test of the workspace in one cargo
  # run, so dependencies get the features `cargo test --workspace` resolves (dev-dependencies
  # included) and the tests compile nothing again. `cargo build -p gridwatch` resolved them
  # without the dev-dependencies, and `cargo test` then rebuilt 61 crates, tract among them:
  # 10 minutes of CI on 2 cores.
  cargo build --profile dev --locked --workspace --bins --tests "${features[@]}"
else
  cargo build --profile "$profile" --locked -p gridwatch "${features[@]}"
fi
bin="$root/target/$profile_dir/gridwatch"

# --- 4. model and sample media -------------------------------------------------------------
"$bin" models fetch --all
"$bin" media fetch
say "ready: $bin"
