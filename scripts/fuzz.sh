#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz) with clang, ASan and UBSan, and fuzzes each for a bounded
# time: scripts/fuzz.sh [seconds-per-target] (default 45). Any crash, sanitizer report or failed
# check fails the run; the input that caused it is left in BUILD_DIR/test/fuzz/artifacts. Ends with
# each target's runs and runs per second, and one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-45}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/fuzz.sh [seconds-per-target]" >&2; exit 2; }
# libclang-rt-dev holds libFuzzer and the sanitizer runtimes (only recommended by clang).
bash scripts/setup.sh clang libclang-rt-dev
build=${BUILD_DIR:-build-fuzz}
[ -f "$build/build.ninja" ] ||
  CXX=clang++ meson setup "$build" -Dfuzz=true -Dtests=false -Dbenchmarks=false >/dev/null
meson compile -C "$build"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 ${UBSAN_OPTIONS:-}"
status=0
# One target per core at a time: each is single-threaded (fuzz_event_loop's two threads take turns).
meson test -C "$build" --suite fuzz --print-errorlogs --num-processes "$(nproc)" \
  --test-args="-max_total_time=$seconds" || status=$?
# libFuzzer's closing statistics, from each target's output in the test log.
python3 - "$build/meson-logs/testlog.json" <<'EOF'
import json, re, sys
for line in open(sys.argv[1]):
    test = json.loads(line)
    out = test.get("stdout", "") + test.get("stderr", "")
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", out)
    print(f"{test['name']}: {test['result']}, {runs.group(1) if runs else '?'} runs, "
          f"{rate.group(1) if rate else '?'} runs/s")
EOF
python3 scripts/summarize_tests.py "fuzz targets" "$build"
exit $status
