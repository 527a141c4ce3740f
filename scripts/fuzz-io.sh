#!/usr/bin/env bash
# Builds the io header fuzzer (clang + libFuzzer + ASan/UBSan) standalone, i.e.
# without torch, ITK or DCMTK, and runs it for a bounded time over the seed
# corpus. Exits non-zero if the fuzzer finds a crash, leak, sanitizer report
# or timeout; the reproducer is left in the build folder.
#
#   scripts/fuzz-io.sh [SECONDS]        (default 60; FUZZ_BUILD_DIR to relocate)
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"

cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" io_header_fuzzer

# New inputs go to the first (writable) corpus folder; the committed seeds are read only.
mkdir -p "$build/corpus" "$build/artifacts"
cd "$build"
TMPDIR="$build" ./io_header_fuzzer \
  -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -dict="$root/fuzz/io_headers.dict" -artifact_prefix="$build/artifacts/" \
  -print_final_stats=1 \
  "$build/corpus" "$root/fuzz/corpus/io_headers"
