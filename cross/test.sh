#!/usr/bin/env bash
# Tests a cross build under qemu-user on this host:
#   1. the agent's unit tests, compiled for the target and run under qemu (cargo's runner);
#   2. the target's gridwatch against the native build (tests/tests/e2e/cross_target.rs): the
#      same detections on dog.jpg, and the same incidents on scenario replays.
#   cross/test.sh aarch64 | armv7
# Environment: GRIDWATCH_CROSS_SCENARIOS (comma-separated, or `all`; default camera_offline)
# and GRIDWATCH_CROSS_DETECT_FPS (default 0.5): emulated inference takes seconds, so CI
# replays one scenario; cross/README.md gives the full-suite run and its result.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
name=${1:?usage: cross/test.sh aarch64|armv7}
"$root/cross/setup-target.sh" "$name"
. "$root/scripts/env.sh"
. "$root/cross/targets.sh"
cross_target "$name"

# The binary and the unit tests in one cargo run, so both resolve features alike (the
# tests' dev-dependencies included): built apart, the binary recompiled the crates whose
# features the dev-dependencies change (9 crates, 1m44s of CI).
cross_say "building the $RUST_TARGET binary and unit tests"
CARGO_TARGET_DIR="$CROSS_TARGET_DIR" cargo build --locked --target "$RUST_TARGET" \
  -p gridwatch --bins --tests "${FEATURE_ARGS[@]}"
cross_say "unit tests of the $RUST_TARGET build, under $QEMU"
CARGO_TARGET_DIR="$CROSS_TARGET_DIR" cargo test --locked --target "$RUST_TARGET" \
  -p gridwatch --lib "${FEATURE_ARGS[@]}"

# Built as `cargo test --workspace` builds it (scripts/test.sh, just before): the same
# features (dev-dependencies included), so after that nothing is rebuilt. `cargo build`
# resolves features without the dev-dependencies and rebuilt gridwatch (minutes of CI).
cross_say "the native build to compare with (the workspace's, with both inference backends)"
cargo test --locked --workspace --no-run
cross_say "the $RUST_TARGET build against the native one, under $QEMU"
GRIDWATCH_CROSS_TARGET="$CROSS_NAME" \
GRIDWATCH_CROSS_BIN="$CROSS_TARGET_DIR/$RUST_TARGET/debug/gridwatch" \
  cargo test --locked --workspace --test e2e cross_target:: -- --ignored --nocapture --test-threads 1
cross_say "passed"
