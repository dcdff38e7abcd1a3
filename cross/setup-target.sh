#!/usr/bin/env bash
# Installs what building for and running a target needs, idempotently (a second run only
# checks): the gcc cross toolchain, qemu-user, the Rust target, the target's libav
# libraries (Debian multiarch, or a private sysroot for armv7) and, where a wheel exists,
# the target's ONNX Runtime library from PyPI.
#   cross/setup-target.sh aarch64 | armv7 | x86_64
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. "$root/scripts/env.sh"
. "$root/cross/targets.sh"
# shellcheck source=scripts/preflight.sh
. "$root/scripts/preflight.sh"
cross_target "${1:?usage: cross/setup-target.sh aarch64|armv7|x86_64}"

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# `apt-get update` fails as a whole when one index of one architecture is bad (seen: the
# bookworm-security armhf index). Retry, then go on with what was fetched: the install
# below says clearly if a package really is missing.
apt_update() {
  for attempt in 1 2 3; do
    "${sudo_cmd[@]}" apt-get update -qq && return 0
    cross_say "apt-get update failed (attempt $attempt of 3)"
    sleep $((attempt * 5))
  done
  cross_say "warning: apt-get update kept failing; installing from the indexes that were fetched"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  cross_say "installing Debian packages: ${missing[*]}"
  if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt_update
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# --- toolchain and emulator ---------------------------------------------------------------
# Every package by name (installs are --no-install-recommends): the cross gcc's C library
# headers are only a Recommends of it, and without them the first C file of a crate's build
# script (ring's) fails half an hour in.
host_packages=(pkg-config clang libclang-dev file python3-pip)
[ -n "$GCC_PACKAGE" ] && host_packages+=("$GCC_PACKAGE" "$LIBC_PACKAGE" qemu-user)
apt_install "${host_packages[@]}"
if [ -n "$GCC_PACKAGE" ]; then
  # The cross compiler must build and link a C program against its C library, and the
  # program must run under qemu, before any long build starts.
  preflight_commands "$GNU_TRIPLE-gcc=$GCC_PACKAGE" "$QEMU=qemu-user"
  preflight_c "$CROSS_NAME" "$GNU_TRIPLE-gcc" "$LIBC_PACKAGE" "$QEMU" -L "/usr/$GNU_TRIPLE"
fi

# In a cross-rs image (GRIDWATCH_CROSS_IMAGE) cross mounts the host's Rust toolchain and
# the package step runs outside, so only the C side is set up there.
image=${GRIDWATCH_CROSS_IMAGE:-}
if [ -z "$image" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
  cross_say "adding the Rust target $RUST_TARGET"
  rustup target add "$RUST_TARGET"
fi

# --- the target's libav libraries ---------------------------------------------------------
if [ "$DEB_ARCH" != amd64 ]; then
  if [ "$SYSROOT" = / ]; then
    if ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
      cross_say "adding the Debian architecture $DEB_ARCH (multiarch)"
      "${sudo_cmd[@]}" dpkg --add-architecture "$DEB_ARCH"
      apt_update
    fi
    apt_install "${CROSS_LIBAV_DEV_PACKAGES[@]/%/:$DEB_ARCH}"
  else
    stamp="$SYSROOT/.gridwatch-sysroot"
    want="${CROSS_LIBAV_DEV_PACKAGES[*]} libc6-dev"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      cross_say "filling the $DEB_ARCH sysroot $SYSROOT from Debian bookworm (apt, private state)"
      apt_dir="$root/.local/cross/apt-$DEB_ARCH"
      rm -rf "$SYSROOT" "$apt_dir"
      mkdir -p "$apt_dir"/{state/lists/partial,cache/archives/partial,etc/preferences.d,etc/apt.conf.d} "$SYSROOT"
      : >"$apt_dir/status"
      echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
        >"$apt_dir/etc/sources.list"
      apt_opts=(
        -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures=$DEB_ARCH"
        -o "Dir::Etc=$apt_dir/etc" -o "Dir::Etc::SourceParts=$apt_dir/etc/none"
        -o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/status"
        -o "Dir::Cache=$apt_dir/cache" -o "Debug::NoLocking=1"
        -o "APT::Install-Recommends=0"
      )
      for attempt in 1 2 3; do
        apt-get "${apt_opts[@]}" update -qq && break
        [ "$attempt" = 3 ] && { echo "cross/$CROSS_NAME: cannot fetch the $DEB_ARCH package index" >&2; exit 1; }
        sleep $((attempt * 5))
      done
      # Nothing counts as installed in the private status, so this downloads the whole
      # closure of the -dev packages, libc included, all from one consistent archive.
      apt-get "${apt_opts[@]}" install -y -qq --download-only $want >/dev/null
      for deb in "$apt_dir"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
      # Debian's .so symlinks are absolute (/lib/...); inside a sysroot they must point
      # into it, or the linker follows them to the host's libraries.
      find "$SYSROOT" -type l -lname '/*' | while read -r link; do
        ln -sfn "$SYSROOT$(readlink "$link")" "$link"
      done
      rm -rf "$apt_dir/cache/archives"/*.deb
      echo "$want" >"$stamp"
    else
      cross_say "sysroot present ($SYSROOT)"
    fi
    # ffmpeg-sys-next compiles and runs a version check with the *host* compiler and the
    # target's include paths. The multiarch include directory also holds the target's libc
    # headers, which the host compiler must not see (on armhf they want stubs-hard.h
    # without the ARM ABI defines), so the .pc files point at a directory with only libav.
    libav_include="$SYSROOT/usr/include/gridwatch-libav"
    mkdir -p "$libav_include"
    for dir in "$SYSROOT/usr/include/$GNU_TRIPLE"/lib{av,sw}*; do
      ln -sfn "../$GNU_TRIPLE/$(basename "$dir")" "$libav_include/$(basename "$dir")"
    done
    sed -i "s|^includedir=\(.*\)/include/$GNU_TRIPLE\$|includedir=\1/include/gridwatch-libav|" \
      "$SYSROOT/usr/lib/$GNU_TRIPLE/pkgconfig"/lib{av,sw}*.pc
  fi
fi

# The target's libav must be what pkg-config finds for it (the variables cross_target set).
if [ "$DEB_ARCH" != amd64 ]; then
  libdir_var="PKG_CONFIG_LIBDIR_${RUST_TARGET//-/_}"
  sysroot_var="PKG_CONFIG_SYSROOT_DIR_${RUST_TARGET//-/_}"
  libav_checks=()
  for pkg in "${CROSS_LIBAV_DEV_PACKAGES[@]}"; do
    libav_checks+=("${pkg%-dev}=$pkg:$DEB_ARCH")
  done
  pc_env=("PKG_CONFIG_LIBDIR=${!libdir_var}")
  [ -n "${!sysroot_var:-}" ] && pc_env+=("PKG_CONFIG_SYSROOT_DIR=${!sysroot_var}")
  env "${pc_env[@]}" "$root/scripts/preflight.sh" pkg-config "${libav_checks[@]}"
  if [ "$SYSROOT" != / ]; then
    # The linker cargo uses for a private sysroot, against the sysroot's own libc.
    preflight_c "$CROSS_NAME (sysroot $SYSROOT)" "$root/cross/sysroot-gcc.sh" \
      "libc6-dev:$DEB_ARCH in the sysroot (rm -rf $SYSROOT and rerun)" "$QEMU" -L "$SYSROOT"
  fi
fi

# --- ONNX Runtime for the target ----------------------------------------------------------
if [ -z "$image" ] && [ -n "$ORT_PLATFORM" ] && [ "$DEB_ARCH" != amd64 ]; then
  ort_dir="$root/.local/cross/onnxruntime-$CROSS_NAME"
  if ! ls "$ort_dir"/libonnxruntime.so.* >/dev/null 2>&1; then
    cross_say "fetching the onnxruntime $ORT_WHEEL_VERSION wheel for $ORT_PLATFORM from PyPI"
    wheels="$root/.local/cross/wheels"
    mkdir -p "$wheels" "$ort_dir"
    # manylinux_2_28 exactly: manylinux2014 silently picks an old wheel without the library.
    python3 -m pip download -q --no-deps --only-binary=:all: --platform "$ORT_PLATFORM" \
      "onnxruntime==$ORT_WHEEL_VERSION" -d "$wheels"
    wheel=$(ls "$wheels"/onnxruntime-"$ORT_WHEEL_VERSION"-*"${ORT_PLATFORM#manylinux_2_28_}".whl | head -n1)
    python3 - "$wheel" "$ort_dir" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/capi/libonnxruntime.so" in n]
    if not names:
        sys.exit(f"{wheel} holds no libonnxruntime.so")
    for n in names:
        with z.open(n) as src, open(os.path.join(dest, os.path.basename(n)), "wb") as dst:
            dst.write(src.read())
PY
  fi
  lib=$(ls "$ort_dir"/libonnxruntime.so.* | head -n1)
  ln -sfn "$(basename "$lib")" "$ort_dir/libonnxruntime.so"
  cross_say "ONNX Runtime for $CROSS_NAME: $lib"
fi
cross_say "ready to build $RUST_TARGET"
