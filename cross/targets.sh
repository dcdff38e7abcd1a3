# Sourced by the cross scripts: every per-target setting in one place. Cross.toml and the
# Dockerfiles under cross/docker/ run cross/setup-target.sh, so they follow this file too.
#
#   cross_target NAME     sets, for NAME = aarch64 | armv7 | x86_64:
#     RUST_TARGET   the Rust target triple
#     GNU_TRIPLE    Debian's multiarch triple (library and include directories)
#     DEB_ARCH      Debian's architecture name (packages)
#     GCC_PACKAGE   the Debian cross compiler package ("" when native)
#     LIBC_PACKAGE  the cross C library headers and startup files for GCC_PACKAGE (only a
#                   Recommends of it, so installed by name; "" when native)
#     QEMU          the qemu-user emulator that runs the target's programs here ("" native)
#     FEATURES      cargo features of gridwatch for the target
#     BACKEND       detector.backend its package's default config names
#     ORT_PLATFORM  the PyPI platform tag of its onnxruntime wheel ("" when none exists)
#     SYSROOT       where the target's libraries come from: "/" (Debian multiarch, packages
#                   installed beside the native ones) or a private debootstrap folder
#   and exports the cargo/pkg-config variables that make `cargo build --target` work.

# The libav -dev packages ffmpeg-next binds (its features: codec, format, software-scaling).
CROSS_LIBAV_DEV_PACKAGES=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev)

# A progress line on stderr, named for the target: `cross/aarch64: ...`.
cross_say() { printf '\033[1mcross/%s:\033[0m %s\n' "$CROSS_NAME" "$*" >&2; }

cross_target() {
  local root
  # CROSS_ROOT: where the checkout is inside a cross-rs image (cross/docker/*.Dockerfile).
  root=${CROSS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
  case "$1" in
    aarch64 | arm64 | aarch64-unknown-linux-gnu)
      CROSS_NAME=aarch64
      RUST_TARGET=aarch64-unknown-linux-gnu
      GNU_TRIPLE=aarch64-linux-gnu
      DEB_ARCH=arm64
      GCC_PACKAGE=gcc-aarch64-linux-gnu
      LIBC_PACKAGE=libc6-dev-arm64-cross
      QEMU=qemu-aarch64
      FEATURES=""
      BACKEND=ort
      ORT_PLATFORM=manylinux_2_28_aarch64
      SYSROOT=/
      ;;
    armv7 | armhf | armv7-unknown-linux-gnueabihf)
      CROSS_NAME=armv7
      RUST_TARGET=armv7-unknown-linux-gnueabihf
      GNU_TRIPLE=arm-linux-gnueabihf
      DEB_ARCH=armhf
      GCC_PACKAGE=gcc-arm-linux-gnueabihf
      LIBC_PACKAGE=libc6-dev-armhf-cross
      QEMU=qemu-arm
      # No ONNX Runtime wheel exists for armv7: the pure-Rust backend does the inference.
      FEATURES=tract
      BACKEND=tract
      ORT_PLATFORM=""
      # Not multiarch: adding the armhf architecture to this host's dpkg made `apt-get
      # update` fail for every architecture (a bookworm-security armhf index of the wrong
      # size), so armhf libraries live in a private sysroot that debootstrap fills from
      # bookworm's main archive. See cross/README.md.
      SYSROOT="$root/.local/cross/sysroot-armhf"
      ;;
    x86_64 | amd64 | native | x86_64-unknown-linux-gnu)
      CROSS_NAME=x86_64
      RUST_TARGET=x86_64-unknown-linux-gnu
      GNU_TRIPLE=x86_64-linux-gnu
      DEB_ARCH=amd64
      GCC_PACKAGE=""
      LIBC_PACKAGE=""
      QEMU=""
      FEATURES=""
      BACKEND=ort
      ORT_PLATFORM=manylinux_2_27_x86_64
      SYSROOT=/
      ;;
    *)
      echo "unknown target '$1': use aarch64, armv7 or x86_64" >&2
      return 2
      ;;
  esac
  # cargo's --features arguments for the target (an array: empty when there are none).
  FEATURE_ARGS=()
  [ -n "$FEATURES" ] && FEATURE_ARGS=(--features "$FEATURES")
  # One target directory per target, reused between runs (CI caches nothing else).
  CROSS_TARGET_DIR="$root/target/cross-$CROSS_NAME"
  local upper=${RUST_TARGET//-/_}
  upper=${upper^^}
  [ -z "$GCC_PACKAGE" ] && return 0

  export PKG_CONFIG_ALLOW_CROSS=1
  export "CARGO_TARGET_${upper}_RUNNER=$root/cross/run-target.sh $CROSS_NAME"
  # cc-rs (SQLite, ring) finds the cross compiler by this name without help.
  if [ "$SYSROOT" = / ]; then
    export "CARGO_TARGET_${upper}_LINKER=$GNU_TRIPLE-gcc"
    # With multiarch the sysroot is `/`: pkg-config must read the target's .pc files and
    # must not prefix paths (PKG_CONFIG_SYSROOT_DIR stays unset).
    export "PKG_CONFIG_LIBDIR_${RUST_TARGET//-/_}=/usr/lib/$GNU_TRIPLE/pkgconfig:/usr/share/pkgconfig"
  else
    export "CARGO_TARGET_${upper}_LINKER=$root/cross/sysroot-gcc.sh"
    export "PKG_CONFIG_LIBDIR_${RUST_TARGET//-/_}=$SYSROOT/usr/lib/$GNU_TRIPLE/pkgconfig:$SYSROOT/usr/share/pkgconfig"
    export "PKG_CONFIG_SYSROOT_DIR_${RUST_TARGET//-/_}=$SYSROOT"
    # bindgen's clang reads the sysroot's libc and libav headers.
    # The second flag: ffmpeg-sys-next's Vulkan stub asserts the 64-bit size of a struct
    # with a pointer in it, which fails on 32-bit ARM; bindgen lays the struct out for the
    # target either way.
    export "BINDGEN_EXTRA_CLANG_ARGS_${RUST_TARGET//-/_}=--sysroot=$SYSROOT -D_Static_assert(c,m)= -I$SYSROOT/usr/include/$GNU_TRIPLE"
    export CROSS_SYSROOT="$SYSROOT" CROSS_GNU_TRIPLE="$GNU_TRIPLE"
  fi
}
