# cross-rs image for aarch64 (cross/Cross.toml), for installers who build with Docker elsewhere.
# Same recipe as cross/build.sh without Docker: cross/setup-target.sh does the installing and
# cross/targets.sh holds the settings below; tests/tests/package.rs checks that these ENV
# lines match what targets.sh exports (with the checkout at /opt/gridwatch).
FROM debian:bookworm
COPY scripts/env.sh /opt/gridwatch/scripts/env.sh
COPY cross /opt/gridwatch/cross
ENV GRIDWATCH_CROSS_IMAGE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 \
 && /opt/gridwatch/cross/setup-target.sh aarch64 \
 && rm -rf /var/lib/apt/lists/*
ENV PKG_CONFIG_ALLOW_CROSS="1" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="aarch64-linux-gnu-gcc" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="/opt/gridwatch/cross/run-target.sh aarch64" \
    PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
