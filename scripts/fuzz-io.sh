#!/usr/bin/env bash
# Builds the io fuzz targets (clang + libFuzzer + ASan/UBSan) standalone, i.e.
# without torch, ITK or DCMTK, and runs each for a bounded time over its seed
# corpus:
#   io_header_fuzzer  NIfTI / NRRD / MetaImage header checks, gzip/zlib inflation
#   io_raster_fuzzer  our libpng / libjpeg decoders
# Exits non-zero if a fuzzer finds a crash, leak, sanitizer report or timeout;
# the reproducer is left in $FUZZ_BUILD_DIR/artifacts/.
#
#   scripts/fuzz-io.sh [SECONDS_PER_TARGET]   (default 60; FUZZ_BUILD_DIR relocates the build)
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"

cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" io_header_fuzzer io_raster_fuzzer

run() {  # run TARGET SEED_CORPUS [extra libFuzzer flags]
  local target="$1" seeds="$2"
  shift 2
  # New inputs go to the first (writable) corpus folder; the committed seeds are read only.
  mkdir -p "$build/corpus/$target" "$build/artifacts"
  echo "== $target for ${seconds}s"
  (cd "$build" && TMPDIR="$build" "./$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 "$@" \
    "$build/corpus/$target" "$seeds")
}

run io_header_fuzzer "$root/fuzz/corpus/io_headers" -max_len=8192 -dict="$root/fuzz/io_headers.dict"
run io_raster_fuzzer "$root/fuzz/corpus/io_raster" -max_len=16384
