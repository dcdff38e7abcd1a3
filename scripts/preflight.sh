#!/usr/bin/env bash
# Toolchain checks that setup runs right after installing, so a machine that lacks a
# package fails at once with one line naming it, not half an hour later inside a crate's
# build script (issue: the aarch64 cross gcc without its C library headers).
#
# Sourced by scripts/setup.sh and cross/setup-target.sh, or run as a command (the tests do):
#   scripts/preflight.sh c NAME CC PACKAGE [RUNNER...]   compile, link (and run) a C program
#   scripts/preflight.sh pkg-config MODULE=PACKAGE...     pkg-config modules
#   scripts/preflight.sh python PYTHON 'CODE=PACKAGE'...  Python statements (imports)
#   scripts/preflight.sh commands COMMAND=PACKAGE...      programs on PATH
#   scripts/preflight.sh files PATH=PACKAGE...            files a package installs
# Each exits 1 with `setup: ... install PACKAGE` on the first thing missing.

preflight_fail() {
  echo "setup: $*" >&2
  exit 1
}

# The first line of a compiler's complaint, trimmed: what the one-line error quotes.
preflight_first_error() {
  grep -m1 -E 'error|cannot find|No such file' "$1" | sed -E 's/^[^ ]*: //' | cut -c1-160
}

# preflight_c NAME CC PACKAGE [RUNNER...]: CC (a command, may hold flags) must compile a C
# file that includes <stdint.h> and <stdio.h> (what ring's and SQLite's C code need first)
# and link it against the C library; with RUNNER (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`)
# the program must also run and print its greeting.
preflight_c() {
  local name=$1 cc=$2 package=$3
  shift 3
  local dir
  dir=$(mktemp -d)
  cat >"$dir/probe.c" <<'C'
#include <stdint.h>
#include <stdio.h>
int main(void) {
  uint64_t x = UINT64_C(0x1234567890abcdef);
  printf("gridwatch-probe %d\n", (int)(x >> 60));
  return 0;
}
C
  # shellcheck disable=SC2086 # CC may carry flags (a wrapper or --sysroot).
  if ! $cc -o "$dir/probe" "$dir/probe.c" >"$dir/log" 2>&1; then
    local why
    why=$(preflight_first_error "$dir/log")
    rm -rf "$dir"
    preflight_fail "the $name C compiler ($cc) cannot build a program that includes <stdint.h>${why:+ ($why)}: install $package (apt-get install $package)"
  fi
  if (($#)); then
    local out
    out=$("$@" "$dir/probe" 2>"$dir/log" || true)
    if [ "$out" != "gridwatch-probe 1" ]; then
      local why
      why=$(head -n1 "$dir/log" | cut -c1-160)
      rm -rf "$dir"
      preflight_fail "a $name program built by $cc does not run under $*${why:+ ($why)}: install $package"
    fi
  fi
  rm -rf "$dir"
}

# preflight_pkg_config MODULE=PACKAGE...: each pkg-config module must be found (with the
# PKG_CONFIG_* environment the caller set, so a cross target's .pc files are checked too).
preflight_pkg_config() {
  local spec
  for spec in "$@"; do
    pkg-config --exists "${spec%%=*}" 2>/dev/null ||
      preflight_fail "pkg-config finds no ${spec%%=*}${PKG_CONFIG_LIBDIR:+ in $PKG_CONFIG_LIBDIR}: install ${spec#*=}"
  done
}

# preflight_python PYTHON 'CODE=PACKAGE'...: each Python statement must run (CODE is split
# at the last `=`, so it may itself hold `=`).
preflight_python() {
  local python=$1 spec
  shift
  for spec in "$@"; do
    local code=${spec%=*} package=${spec##*=}
    local why
    if ! why=$("$python" -c "$code" 2>&1 >/dev/null); then
      why=$(printf '%s\n' "$why" | tail -n1 | cut -c1-160)
      preflight_fail "$python cannot run \`$code\`${why:+ ($why)}: install $package"
    fi
  done
}

# preflight_commands COMMAND=PACKAGE...: each program must be on PATH.
preflight_commands() {
  local spec
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null 2>&1 ||
      preflight_fail "${spec%%=*} is not on PATH: install ${spec#*=}"
  done
}

# preflight_files PATH=PACKAGE...: each file (a font, a plugin) must exist.
preflight_files() {
  local spec
  for spec in "$@"; do
    [ -e "${spec%%=*}" ] || preflight_fail "${spec%%=*} is missing: install ${spec#*=}"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  what=${1:?usage: scripts/preflight.sh c|pkg-config|python|commands|files ARGS...}
  shift
  case "$what" in
    c) preflight_c "$@" ;;
    pkg-config) preflight_pkg_config "$@" ;;
    python) preflight_python "$@" ;;
    commands) preflight_commands "$@" ;;
    files) preflight_files "$@" ;;
    *) preflight_fail "unknown check $what" ;;
  esac
fi
