# cross-rs image for armv7 (cross/Cross.toml), for installers who build with Docker elsewhere.
# Same recipe as cross/build.sh without Docker: cross/setup-target.sh does the installing and
# cross/targets.sh holds the settings below; tests/tests/package.rs checks that these ENV
# lines match what targets.sh exports (with the checkout at /opt/gridwatch).
FROM debian:bookworm
COPY scripts/env.sh /opt/gridwatch/scripts/env.sh
COPY cross /opt/gridwatch/cross
ENV GRIDWATCH_CROSS_IMAGE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 \
 && /opt/gridwatch/cross/setup-target.sh armv7 \
 && rm -rf /var/lib/apt/lists/*
ENV PKG_CONFIG_ALLOW_CROSS="1" \
    BINDGEN_EXTRA_CLANG_ARGS_armv7_unknown_linux_gnueabihf="--sysroot=/opt/gridwatch/.local/cross/sysroot-armhf -I/opt/gridwatch/.local/cross/sysroot-armhf/usr/include/arm-linux-gnueabihf" \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="/opt/gridwatch/cross/run-target.sh armv7" \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER="/opt/gridwatch/cross/sysroot-gcc.sh" \
    PKG_CONFIG_SYSROOT_DIR_armv7_unknown_linux_gnueabihf="/opt/gridwatch/.local/cross/sysroot-armhf" \
    PKG_CONFIG_LIBDIR_armv7_unknown_linux_gnueabihf="/opt/gridwatch/.local/cross/sysroot-armhf/usr/lib/arm-linux-gnueabihf/pkgconfig:/opt/gridwatch/.local/cross/sysroot-armhf/usr/share/pkgconfig" \
    CROSS_GNU_TRIPLE="arm-linux-gnueabihf" \
    CROSS_SYSROOT="/opt/gridwatch/.local/cross/sysroot-armhf"
