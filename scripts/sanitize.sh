#!/usr/bin/env bash
# Builds the torch-free libraries (core, io, the checkpoint parsers) and their
# tests with AddressSanitizer + UndefinedBehaviorSanitizer in a separate build
# folder, and runs those tests. Any sanitizer report fails the run.
#   scripts/sanitize.sh      (SANITIZE_BUILD_DIR relocates the build; default build-sanitize)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SANITIZE_BUILD_DIR:-$root/build-sanitize}"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
tests=(core_test checkpoint_format_test io_test)

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMEDICOSAM_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
ninja -C "$build" "${tests[@]}"

# Leaks in our code are errors; quarantine kept small so that the hostile-file
# tests' memory measurements stay meaningful.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:quarantine_size_mb=16:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$root/tests/common/lsan.supp:${LSAN_OPTIONS:-}"
export MEDICOSAM_CLI="$root/build/apps/medicosam/medicosam"
status=0
for t in "${tests[@]}"; do
  exe="$(find "$build/tests" -name "$t" -type f -perm -u+x | head -1)"
  echo "== $t (ASan+UBSan)"
  (cd "$(dirname "$exe")" && "$exe") || status=1
done
exit $status
