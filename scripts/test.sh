#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: installs the Debian packages,
# builds everything, runs the unit / integration / end-to-end suite (CTest),
# checks that torch reaches BLAS speed (the reference-BLAS trap), and fuzzes
# the image header parsers for a bounded time.
#   scripts/test.sh            (FUZZ_SECONDS=N per fuzz target, default 30)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${MEDICOSAM_BUILD_DIR:-$root/build}"

scripts/install-deps.sh
scripts/build.sh
echo "== tests"
ctest --test-dir "$build" --output-on-failure -j 2 --timeout 1800
echo "== BLAS speed (4096x768x3072 matmul must exceed 50 GFLOP/s on 2 threads)"
"$build/bench/medicosam_bench" --blas-only --threads 2
echo "== fuzzing the io header parsers"
scripts/fuzz-io.sh "${FUZZ_SECONDS:-30}"
echo "== all tests passed"
