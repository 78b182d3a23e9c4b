#!/usr/bin/env bash
# Builds everything (as scripts/test.sh does) and runs the unit suite on a busy machine: two
# CPU-bound processes (shell busy loops) run beside it for the whole run, so the tests' threads and
# the server's I/O threads wait for a core as they do on a loaded CI runner. A test that holds only
# on a quiet machine (an order of events taken for granted, a deadline of a few milliseconds) fails
# here. Extra arguments go to `meson test` (e.g. a program name, or --repeat 3). Ends with one line
# "N passed, N failed".
#
# The log is meson-logs/testlog-under-load.json in the build directory (the plain testlog.json of
# scripts/test.sh stays as it was), also copied to <build>/under-load/meson-logs/testlog.json so that
# scripts/summarize_tests.py can count it as a build directory of its own: <build>/under-load.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
summary_dir="$build/under-load"
rm -rf "$summary_dir" # a failed build must not leave an earlier run's results to be counted
[ -f "$build/build.ninja" ] || meson setup "$build" -Ddebug=false -Dcpp_args=-g1
meson compile -C "$build"

# The load: one busy loop per core of a 2-core runner, at the tests' own priority.
load_pids=()
stop_load() {
  local pid
  for pid in "${load_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${load_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  load_pids=()
}
trap stop_load EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in 1 2; do
  sh -c 'while :; do :; done' &
  load_pids+=($!)
done
echo "test-under-load: busy loops running as PIDs ${load_pids[*]}"

status=0
meson test -C "$build" --suite unit --num-processes 1 --print-errorlogs --logbase testlog-under-load "$@" ||
  status=$?
stop_load

mkdir -p "$summary_dir/meson-logs"
if [ -f "$build/meson-logs/testlog-under-load.json" ]; then
  cp "$build/meson-logs/testlog-under-load.json" "$summary_dir/meson-logs/testlog.json"
fi
python3 scripts/summarize_tests.py "unit tests under load" "$summary_dir"
exit $status
