#!/usr/bin/env bash
# Builds the tests with a sanitizer and runs them: scripts/sanitize.sh thread|address [meson test args]
#   thread:  ThreadSanitizer
#   address: AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included)
# Any report fails the run (halt_on_error / exitcode). Default: the 'unit' suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
kind=${1:?usage: scripts/sanitize.sh thread|address [meson test args]}
shift
case "$kind" in
  # -O1 with line tables: reports keep their file:line stacks, and the build takes half the CPU of
  # -O2 -g (test_connection.cpp: 71 s against 142 s).
  thread) sanitize=thread options=(-Doptimization=1 -Ddebug=false -Dcpp_args=-g1) ;;
  # -O0: with ASan and UBSan, g++ -O2 takes about 8 times the CPU to build the tests (test_connection.cpp
  # alone: 324 s against 39 s); the suite still runs in under a minute, and no check is lost.
  address) sanitize=address,undefined options=(-Dbuildtype=debug) ;;
  *) echo "unknown sanitizer: $kind" >&2; exit 2 ;;
esac
build=${BUILD_DIR:-build-$kind}
[ -f "$build/build.ninja" ] ||
  meson setup "$build" -Db_sanitize="$sanitize" -Db_lundef=false -Dbenchmarks=false "${options[@]}" >/dev/null
if [ $# -eq 0 ]; then
  # Only the unit suite's programs (and the example its script drives): the stress suite is not run here, and each
  # sanitized translation unit costs minutes of CPU.
  mapfile -t targets < <(meson introspect "$build" --tests | python3 -c '
import json, os, sys
build = os.path.realpath(sys.argv[1])
for t in json.load(sys.stdin):
    if any(s.split(":")[-1] == "unit" for s in t["suite"]):
        # The programs a test runs that the build makes: the test program itself, or for a
        # script (test_chat_server.py, run by python3) the example it drives.
        for arg in t["cmd"]:
            path = os.path.realpath(arg)
            if path.startswith(build + os.sep):
                print(os.path.relpath(path, build))' "$build" | sort -u)
  ninja -C "$build" "${targets[@]}"
  set -- --suite unit --no-rebuild
else
  meson compile -C "$build"
fi
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 suppressions=$PWD/scripts/ubsan.supp ${UBSAN_OPTIONS:-}"
meson test -C "$build" --print-errorlogs --num-processes 1 --timeout-multiplier 4 "$@"
