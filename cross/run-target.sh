#!/usr/bin/env bash
# Runs a target's program on this x86_64 host under qemu-user; cargo uses it as the
# target's runner (`cargo test --target ...`), and the end-to-end tests use it through
# GRIDWATCH_BIN (cross/test.sh).
#   cross/run-target.sh aarch64|armv7 PROGRAM [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/targets.sh"
cross_target "${1:?usage: cross/run-target.sh TARGET PROGRAM [ARGS...]}" >/dev/null
shift
# The target's own ONNX Runtime (from its wheel, cross/setup-target.sh), unless one is set.
ort_dir="$(cd "$here/.." && pwd)/.local/cross/onnxruntime-$CROSS_NAME"
if [ -z "${ORT_DYLIB_PATH:-}" ] && [ -e "$ort_dir/libonnxruntime.so" ]; then
  export ORT_DYLIB_PATH="$ort_dir/libonnxruntime.so"
fi
case "$CROSS_NAME" in
  aarch64)
    # Multiarch: the target's loader and libraries are at their usual paths, so no -L (with
    # -L the cross toolchain's loader mixes with the multiarch libc and threads hang).
    # ONNX Runtime reads /proc/cpuinfo at start and crashes on the host's x86 one, so the
    # program sees an ARM one, bind-mounted in a private mount namespace.
    unshare_opts=(-m)
    [ "$(id -u)" -ne 0 ] && unshare_opts=(-r -m)
    exec unshare "${unshare_opts[@]}" sh -c \
      'mount --bind "$0" /proc/cpuinfo && exec "$@"' \
      "$here/cpuinfo-aarch64.txt" "$QEMU" "$@"
    ;;
  armv7)
    # The private sysroot has the target's own loader and libc, consistent with its libav.
    exec "$QEMU" -L "$SYSROOT" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
