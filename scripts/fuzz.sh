#!/usr/bin/env bash
# Runs the hostile-input property tests (command payloads, config loader, event round trip)
# with many more cases than CI does, each for a bounded time. A failure proptest finds is
# shrunk to a minimal case and saved under agent/proptest-regressions/; commit that file and
# every later test run replays it (a regression test), then fix the bug.
#
#   scripts/fuzz.sh [CASES] [SECONDS_PER_TARGET]     (defaults: 200000 cases, 120 s)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cases="${1:-200000}"
seconds="${2:-120}"
targets=(
  command_parser_never_panics_and_errors_are_one_line
  command_parser_on_json_like_payloads
  config_loader_never_panics_on_arbitrary_text
  config_loader_on_damaged_real_configs
  events_survive_a_serialisation_round_trip
)
cargo test -p gridwatch --lib --no-run -q
status=0
for target in "${targets[@]}"; do
  echo "== $target: up to $cases cases or $seconds s"
  if ! PROPTEST_CASES="$cases" timeout --preserve-status "$seconds" \
      cargo test -q -p gridwatch --lib "hostile_input_tests::$target" -- --exact; then
    rc=$?
    # 143 = stopped by the time limit with no failure found.
    if [ "$rc" -ne 143 ]; then status=1; echo "!! $target failed; see agent/proptest-regressions/"; fi
  fi
done
exit $status
