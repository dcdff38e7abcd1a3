# Sourced by the scripts: where project-local things live and which versions are pinned.
# Every path can be overridden from the environment.
gridwatch_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Project-local installs (venv with ONNX Runtime, library symlink). Ignored by git.
export GRIDWATCH_LOCAL="${GRIDWATCH_LOCAL:-$gridwatch_root/.local}"
# Shared data beside the checkout; the agent falls back to these defaults too.
export GRIDWATCH_MODEL_DIR="${GRIDWATCH_MODEL_DIR:-$gridwatch_root/../shared/models}"
export GRIDWATCH_MEDIA_DIR="${GRIDWATCH_MEDIA_DIR:-$gridwatch_root/../shared/media}"
# Where `models fetch` / `media fetch` put downloads when nothing local has the file.
export GRIDWATCH_CACHE_DIR="${GRIDWATCH_CACHE_DIR:-$GRIDWATCH_LOCAL/cache}"

# The ort crate (Cargo.toml pins =2.0.0-rc.15) loads this ONNX Runtime version at run time.
ORT_WHEEL_VERSION=1.32.0
NUMPY_VERSION=2.2.6
OPENCV_VERSION=4.12.0.88
