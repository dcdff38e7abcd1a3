#!/usr/bin/env bash
# README's second command, and what CI runs (.ci/run): set everything up, then run every
# test (unit, end-to-end against real FFmpeg, ONNX Runtime and the real model, the Python
# parity reference, the package), the aarch64 cross build's tests under qemu, plus the
# formatting and lint gates. The armv7 tests: scripts/test-armv7.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# Each step says when it starts, in seconds since this script did, so a slow CI run shows
# which step grew.
step() { echo "== $* (at ${SECONDS} s)"; }
step "setup"
GRIDWATCH_PROFILE=dev GRIDWATCH_FEATURES=tract "$root/scripts/setup.sh"
. "$root/scripts/env.sh"
# The aarch64 toolchain is installed and proved (a C program compiled, linked and run under
# qemu) before the long native tests, so a machine that lacks a package fails in the first
# minutes, not after them; the setup-checks tests use it too.
step "aarch64 toolchain"
"$root/cross/setup-target.sh" aarch64

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "aarch64: cross build, unit tests and comparison with x86_64 under qemu"
"$root/cross/test.sh" aarch64
step "all tests passed"
