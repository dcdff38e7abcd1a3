#!/usr/bin/env bash
# One command per target: set up the toolchain (idempotent), build gridwatch, and package it
# as a .deb and a plain tarball under dist/.
#   cross/build.sh aarch64 | armv7 | x86_64  [--profile release|dev] [--no-package | --package-only]
# --package-only packages the binary already built (the package test uses the test build).
# Without Docker: Debian's gcc cross toolchains, multiarch -dev packages (aarch64) or a
# private sysroot (armv7), and qemu-user to run the result (cross/test.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

usage() { echo "usage: cross/build.sh aarch64|armv7|x86_64 [--profile release|dev] [--no-package|--package-only]" >&2; exit 2; }
[ $# -ge 1 ] || usage
name=$1; shift
profile=release package=yes build=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?}; shift 2 ;;
    --no-package) package=no; shift ;;
    --package-only) build=no; shift ;;
    *) usage ;;
  esac
done
case "$profile" in release) profile_dir=release ;; dev) profile_dir=debug ;; *) usage ;; esac

[ "$build" = yes ] && "$root/cross/setup-target.sh" "$name"
. "$root/scripts/env.sh"
. "$root/cross/targets.sh"
cross_target "$name"

if [ -n "$GCC_PACKAGE" ]; then
  export CARGO_TARGET_DIR="$CROSS_TARGET_DIR"
  target_args=(--target "$RUST_TARGET")
  bin="$CARGO_TARGET_DIR/$RUST_TARGET/$profile_dir/gridwatch"
else
  # Native: the workspace's own target directory, shared with scripts/setup.sh.
  target_args=()
  bin="$root/target/$profile_dir/gridwatch"
fi
if [ "$build" = yes ]; then
  cross_say "building gridwatch for $RUST_TARGET ($profile${FEATURES:+, features $FEATURES})"
  cargo build --locked -p gridwatch --profile "$profile" "${target_args[@]}" "${FEATURE_ARGS[@]}"
fi
[ -x "$bin" ] || { echo "cross/$CROSS_NAME: $bin is not built" >&2; exit 1; }
cross_say "built $bin: $(file -b "$bin" | cut -d, -f1-2)"
[ "$package" = yes ] || exit 0

# --- stage what the package carries beside the binary -------------------------------------
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
stage="$root/target/package-stage"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib" "$stage/models"
# Stripped: release builds keep line tables for backtraces on this side, not on the box.
install -m 755 "$bin" "$stage/bin/gridwatch"
strip_tool=strip
[ -n "$GCC_PACKAGE" ] && strip_tool="$GNU_TRIPLE-strip"
"$strip_tool" "$stage/bin/gridwatch"
if [ "$BACKEND" = ort ]; then
  if [ "$CROSS_NAME" = x86_64 ]; then
    ort_lib=$(readlink -f "$GRIDWATCH_LOCAL/lib/libonnxruntime.so" 2>/dev/null || true)
    [ -f "$ort_lib" ] || { echo "cross/x86_64: no ONNX Runtime library: run scripts/setup.sh first" >&2; exit 1; }
  else
    ort_lib=$(ls "$GRIDWATCH_LOCAL/cross/onnxruntime-$CROSS_NAME"/libonnxruntime.so.* | head -n1)
  fi
  # Under the plain name the daemon looks for beside its binary (<prefix>/lib/gridwatch).
  cp "$ort_lib" "$stage/lib/libonnxruntime.so"
fi
cp "$root"/models/*.toml "$stage/models/"
# The model file is bundled when it is on this machine (verified); otherwise the service
# fetches and verifies it at first start (ExecStartPre in gridwatch.service).
model_file=$(sed -n 's/^file = "\(.*\)"/\1/p' "$root/models/yolox_nano.toml" | head -n1)
model="$GRIDWATCH_MODEL_DIR/$model_file"
if [ -f "$model" ] && grep -q "$(sha256sum "$model" | cut -d' ' -f1)" "$root/models/yolox_nano.toml"; then
  cp "$model" "$stage/models/"
  cross_say "bundling the verified model $model"
else
  cross_say "no verified local model file: the package fetches it at first start"
fi
sed "s/@BACKEND@/$BACKEND/" "$root/cross/package/config.toml" >"$stage/config.toml"

dist="${GRIDWATCH_DIST:-$root/dist}"
mkdir -p "$dist"
variant=()
[ "$BACKEND" = tract ] && variant=(--variant tract)
cross_say "packaging the .deb"
cargo deb -p gridwatch --no-build --no-strip --profile "$profile" "${target_args[@]}" "${variant[@]}" \
  --output "$dist/" --quiet
deb=$(ls -t "$dist"/gridwatch*_"$DEB_ARCH".deb | head -n1)

cross_say "packaging the tarball"
tar_root="gridwatch-$version-$CROSS_NAME"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$tar_root"/{bin,lib/gridwatch,share/gridwatch/models,share/doc/gridwatch,etc}
install -m 755 "$stage/bin/gridwatch" "$tmp/$tar_root/bin/"
cp "$stage"/lib/* "$tmp/$tar_root/lib/gridwatch/" 2>/dev/null || true
cp "$stage"/models/* "$tmp/$tar_root/share/gridwatch/models/"
cp "$stage/config.toml" "$tmp/$tar_root/etc/"
cp "$root/cross/package/gridwatch.service" "$tmp/$tar_root/share/doc/gridwatch/"
cp "$root/README.md" "$root/docs/deploy.md" "$tmp/$tar_root/share/doc/gridwatch/"
tarball="$dist/$tar_root.tar.gz"
tar -C "$tmp" -czf "$tarball" "$tar_root"
cross_say "done: $deb"
cross_say "      $tarball"
