#pragma once
// safetensors format, torch-free: an 8-byte little-endian header length N, N
// bytes of JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {str: str}}` (padded with spaces), then the raw little-endian
// tensor data; offsets are relative to the start of the data.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "medicosam/checkpoint/dtype.hpp"

namespace medicosam::checkpoint {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // absolute offsets into the file
  std::uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data order (by offset)
  std::map<std::string, std::string> metadata;
};

// True if `bytes` starts like a safetensors file (a plausible header length
// followed by '{').
bool looks_like_safetensors(std::string_view bytes);

// Parses and validates the header of the file held in `bytes`: sizes, dtypes,
// shapes, offsets within the file, no overlapping tensors. `path` labels errors.
SafetensorsHeader parse_safetensors(std::string_view bytes, const std::string& path);

// One tensor to write: raw little-endian contiguous data.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

// The header bytes (length prefix + padded JSON) for `tensors` stored back to
// back in the given order. Throws InputError on duplicate names or size
// mismatches; `path` labels errors.
std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               const std::string& path);

// Writes a complete safetensors file atomically.
void write_safetensors_file(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                            const std::map<std::string, std::string>& metadata);

}  // namespace medicosam::checkpoint
