#!/usr/bin/env bash
# The armv7 part of the tests, kept out of CI's test command for time (about 10 minutes on
# 2 cores: a second cross build of every dependency, with tract): set everything up, then
# build gridwatch for armv7-unknown-linux-gnueabihf and run its unit tests and the replay
# smoke test (same detections and incidents as the native build) under qemu-arm.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GRIDWATCH_PROFILE=dev GRIDWATCH_FEATURES=tract "$root/scripts/setup.sh"
. "$root/scripts/env.sh"
"$root/cross/test.sh" armv7
echo "== armv7 tests passed"
