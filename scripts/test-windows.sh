#!/usr/bin/env bash
# Cross-builds the Windows (IOCP) backend with mingw-w64 and runs its test suites under Wine.
# Installs what is missing (Boost headers, meson, mingw-w64 posix, wine64) with apt-get. Extra
# arguments go to `meson test`. Ends with one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# libboost-test-dev brings the Boost.Test headers the header-only runner compiles from.
bash scripts/setup.sh g++-mingw-w64-x86-64-posix wine64 wine
build=${BUILD_DIR:-build-win}
# -O1 and line tables only: under Wine the tests wait on sockets, not on code, and this halves the
# cross-build (-O2 -g took about 190 s of CPU for test_connection.cpp alone, -O1 -g1 about 100 s).
[ -f "$build/build.ninja" ] ||
  meson setup "$build" --cross-file cross/x86_64-w64-mingw32.txt -Doptimization=1 -Ddebug=false -Dcpp_args=-g1
meson compile -C "$build"

# A fresh, private Wine prefix, no display, no Mono/Gecko installers; quiet.
WINEPREFIX=$(mktemp -d "${TMPDIR:-/tmp}/iocp-wine.XXXXXX")
export WINEPREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
cleanup() {
  /usr/lib/wine/wineserver -k >/dev/null 2>&1 || wineserver -k >/dev/null 2>&1 || true
  rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
# Initialise the prefix once (about 7 s), so that the first test does not pay for it.
/usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true

status=0
meson test -C "$build" --print-errorlogs --num-processes 1 "$@" || status=$?
python3 scripts/summarize_tests.py "windows test programs" "$build"
exit $status
