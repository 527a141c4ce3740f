#!/usr/bin/env bash
# Configures and builds medicosam (Release, Ninja, ccache) into ./build.
#   scripts/build.sh [TARGET...]      (default: everything)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MEDICOSAM_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$build" "$@"
