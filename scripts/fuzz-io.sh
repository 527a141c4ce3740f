#!/usr/bin/env bash
# The io fuzzers only (kept for habit): see scripts/fuzz.sh.
#   scripts/fuzz-io.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh" "${1:-60}" io_header_fuzzer io_raster_fuzzer
