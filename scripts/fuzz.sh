#!/usr/bin/env bash
# Builds the libFuzzer targets (clang + libFuzzer + ASan/UBSan) standalone,
# i.e. without torch, ITK or DCMTK, and runs each for a bounded time over its
# seed corpus. The targets are the ones fuzz/CMakeLists.txt registers with
# medicosam_add_fuzzer (listed in $FUZZ_BUILD_DIR/fuzz_targets.tsv):
#   io_header_fuzzer          NIfTI / NRRD / MetaImage header checks, gzip/zlib inflation
#   io_raster_fuzzer          our libpng / libjpeg decoders
#   checkpoint_zip_fuzzer     torch.save archives: zip reader, unpickler, tensor view checks
#   checkpoint_pickle_fuzzer  the restricted unpickler on raw pickles
#   safetensors_fuzzer        the safetensors header parser
#   npy_fuzzer                the .npy reader
#   server_requests_fuzzer    the annotation server's request parsers (params, bodies, ids, sizes)
#   server_dicomweb_fuzzer    the DICOMweb datastore's PACS-reply parsers (multipart/related, DICOM JSON)
# Exits non-zero if a fuzzer finds a crash, leak, sanitizer report, timeout or
# an allocation over -malloc_limit_mb; the reproducer is left in
# $FUZZ_BUILD_DIR/artifacts/ (turn it into a regression test).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#     (default 60 s, every registered target; FUZZ_BUILD_DIR relocates the build)
set -euo pipefail
seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"

cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
registry="$build/fuzz_targets.tsv"
wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
  mapfile -t wanted < <(cut -f1 "$registry")
fi
for t in "${wanted[@]}"; do
  grep -q "^$t	" "$registry" || { echo "fuzz.sh: unknown fuzz target '$t' (see $registry)" >&2; exit 2; }
done
ninja -C "$build" "${wanted[@]}"

mkdir -p "$build/artifacts"
for t in "${wanted[@]}"; do
  IFS=$'\t' read -r _ seeds flags < <(grep "^$t	" "$registry")
  # New inputs go to the first (writable) corpus folder; the committed seeds are read only.
  mkdir -p "$build/corpus/$t"
  echo "== $t for ${seconds}s"
  # shellcheck disable=SC2086  # $flags holds several libFuzzer options
  (cd "$build" && TMPDIR="$build" "./$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 $flags \
    "$build/corpus/$t" "$seeds")
done
