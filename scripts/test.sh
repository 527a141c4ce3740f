#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: installs the Debian packages,
# builds everything, runs the unit / integration / end-to-end suite (CTest),
# checks that torch reaches BLAS speed (the reference-BLAS trap), fuzzes every
# parser for a bounded time, and runs the torch-free libraries' tests under
# ASan+UBSan.
#   scripts/test.sh              everything (what CI runs, through .ci/run)
#   scripts/test.sh --sanitize   only the sanitizer build and its tests
# Environment: FUZZ_SECONDS=N per fuzz target (default 30); SANITIZE=0 skips
# the sanitizer stage; MEDICOSAM_FAIL_ON_SKIP (default 1 here) makes a skipped
# GoogleTest a failure, so a test that silently cannot run fails CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${MEDICOSAM_BUILD_DIR:-$root/build}"
export MEDICOSAM_FAIL_ON_SKIP="${MEDICOSAM_FAIL_ON_SKIP:-1}"

if [ "${1:-}" = "--sanitize" ]; then
  exec scripts/sanitize.sh
fi

echo "== every GTEST_SKIP says why"
if grep -rnE 'GTEST_SKIP\(\)[[:space:]]*;' tests; then
  echo "these GTEST_SKIP() give no reason: write GTEST_SKIP() << \"why\"" >&2
  exit 1
fi

scripts/install-deps.sh
scripts/build.sh
echo "== tests (a skipped test fails: MEDICOSAM_FAIL_ON_SKIP=$MEDICOSAM_FAIL_ON_SKIP)"
ctest_log="$build/ctest-last.log"
ctest --test-dir "$build" --output-on-failure -j 2 --timeout 1800 | tee "$ctest_log"
# CTest counts a skipped GoogleTest as passed; here it is a failure.
if [ "$MEDICOSAM_FAIL_ON_SKIP" != "0" ] && grep -q '(Skipped)' "$ctest_log"; then
  echo "these tests were skipped, which fails the run (their reasons are in the output above;" >&2
  echo "install what they need, or set MEDICOSAM_FAIL_ON_SKIP=0 outside CI):" >&2
  grep '(Skipped)' "$ctest_log" >&2
  exit 1
fi
echo "== BLAS speed (4096x768x3072 matmul must exceed 50 GFLOP/s on 2 threads)"
"$build/bench/medicosam_bench" --blas-only --threads 2
echo "== fuzzing every parser (fuzz/CMakeLists.txt registers the targets)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
if [ "${SANITIZE:-1}" != "0" ]; then
  echo "== ASan+UBSan build of the torch-free libraries and their tests"
  scripts/sanitize.sh
fi
echo "== all tests passed"
