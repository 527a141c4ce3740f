#pragma once
// A minimal zarr v2 store (directory layout) for the embedding cache: groups,
// attributes (.zattrs), arrays (.zarray) of little-endian float32/float16,
// C order, one file per chunk named "i.j.k..." (or "i/j/k" with
// dimension_separator "/"). Chunks are stored uncompressed or with zlib/gzip,
// and read with null, zlib, gzip or blosc (when built with libblosc) so caches
// written by zarr-python / z5py (micro_sam) can be read. Every file is written
// atomically (temporary file + rename): a chunk is either complete or absent.
// Zarr v3 stores (zarr.json; what micro_sam >= 1.8 writes through z5py) are
// read too: bytes codec (little endian) plus an optional blosc or gzip codec,
// regular chunk grid, default or v2 chunk key encoding; attributes written
// back into a v3 store go into its zarr.json.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace medicosam::segment::zarr {

struct ArrayMeta {
  std::vector<int64_t> shape;
  std::vector<int64_t> chunks;
  std::string dtype = "<f4";  // "<f4" or "<f2"
  nlohmann::json compressor;  // null or {"id": "zlib"|"gzip"|"blosc", ...}
  std::string separator = ".";
  std::string key_prefix;  // v3 default chunk keys: "c/" (or "c.")
  int zarr_format = 2;
  size_t item_size() const { return dtype == "<f2" ? 2 : 4; }
  int64_t chunk_elements() const;
};

bool is_group(const std::string& dir);
bool is_array(const std::string& dir);
// Creates `dir` (and parents) with a .zgroup if it is not a group yet.
void create_group(const std::string& dir);
nlohmann::json read_attrs(const std::string& dir);  // {} when there is no .zattrs
void write_attrs(const std::string& dir, const nlohmann::json& attrs);

// Reads .zarray; FormatError for anything this store cannot read (order F,
// filters, other dtypes, unknown compressors).
ArrayMeta read_array_meta(const std::string& dir);
void create_array(const std::string& dir, const ArrayMeta& meta);

std::string chunk_path(const std::string& dir, const ArrayMeta& meta,
                       const std::vector<int64_t>& index);
bool has_chunk(const std::string& dir, const ArrayMeta& meta, const std::vector<int64_t>& index);
// Decoded chunk bytes (chunk_elements * item_size), or nullopt if absent.
std::optional<std::vector<uint8_t>> read_chunk(const std::string& dir, const ArrayMeta& meta,
                                               const std::vector<int64_t>& index);
void write_chunk(const std::string& dir, const ArrayMeta& meta, const std::vector<int64_t>& index,
                 const std::vector<uint8_t>& bytes);

// Whether this build can read blosc-compressed chunks.
bool have_blosc();

}  // namespace medicosam::segment::zarr
