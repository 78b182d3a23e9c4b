#!/usr/bin/env bash
# Installs what building and testing need on Debian 12 (root, or sudo), only what is missing.
set -euo pipefail
packages=(g++ meson ninja-build pkg-config python3 libboost-test-dev "$@")
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
((${#need[@]})) || exit 0
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
