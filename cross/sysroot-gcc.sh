#!/usr/bin/env bash
# The linker for targets whose libraries live in a private sysroot (armv7): Debian's cross
# gcc with --sysroot, so libc's linker scripts (libc.so names /lib/.../libc.so.6) resolve
# inside the sysroot, and rpath-link so libav's own dependencies (libx264, ...) do too.
# Nothing of the sysroot's path ends up in the binary, which finds its libraries on the
# box at the usual places.
set -euo pipefail
: "${CROSS_SYSROOT:?set by cross/targets.sh}" "${CROSS_GNU_TRIPLE:?set by cross/targets.sh}"
lib_dirs=("$CROSS_SYSROOT/usr/lib/$CROSS_GNU_TRIPLE" "$CROSS_SYSROOT/lib/$CROSS_GNU_TRIPLE")
flags=("--sysroot=$CROSS_SYSROOT")
for dir in "${lib_dirs[@]}"; do flags+=("-L$dir" "-Wl,-rpath-link,$dir"); done
exec "$CROSS_GNU_TRIPLE-gcc" "$@" "${flags[@]}"
