#pragma once
// Element types a checkpoint tensor may have, with the names each file format
// uses for them. Torch-free, so that the parsers can be built and fuzzed alone.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace medicosam::checkpoint {

enum class DType : std::uint8_t {
  Float32,
  Float16,
  BFloat16,
  Float64,
  Int64,
  Int32,
  Int16,
  Int8,
  UInt8,
  Bool,
};

// Bytes per element.
std::size_t dtype_size(DType dtype);
// Torch's name without the "torch." prefix: "float32", "bfloat16", "bool", ...
std::string_view dtype_name(DType dtype);
// Storage class torch.save names in the pickle: "FloatStorage", "BFloat16Storage", ...
std::string_view dtype_storage_class(DType dtype);
// The safetensors code: "F32", "BF16", "BOOL", ...
std::string_view dtype_safetensors_code(DType dtype);

std::optional<DType> dtype_from_name(std::string_view name);
std::optional<DType> dtype_from_storage_class(std::string_view name);
std::optional<DType> dtype_from_safetensors_code(std::string_view code);

}  // namespace medicosam::checkpoint
