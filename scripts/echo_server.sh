#!/usr/bin/env bash
# Sets up, builds and runs the echo server: scripts/echo_server.sh [--port P] [--backend B] ...
# (default 127.0.0.1:50000). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
meson compile -C "$build" echo_server >/dev/null
exec "$build/example/echo_server" "$@"
