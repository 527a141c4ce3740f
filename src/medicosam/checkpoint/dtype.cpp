#include "medicosam/checkpoint/dtype.hpp"

#include <array>

namespace medicosam::checkpoint {
namespace {

struct DTypeInfo {
  DType dtype;
  std::size_t size;
  std::string_view name;
  std::string_view storage_class;
  std::string_view safetensors_code;
};

constexpr std::array<DTypeInfo, 10> kDTypes = {{
    {DType::Float32, 4, "float32", "FloatStorage", "F32"},
    {DType::Float16, 2, "float16", "HalfStorage", "F16"},
    {DType::BFloat16, 2, "bfloat16", "BFloat16Storage", "BF16"},
    {DType::Float64, 8, "float64", "DoubleStorage", "F64"},
    {DType::Int64, 8, "int64", "LongStorage", "I64"},
    {DType::Int32, 4, "int32", "IntStorage", "I32"},
    {DType::Int16, 2, "int16", "ShortStorage", "I16"},
    {DType::Int8, 1, "int8", "CharStorage", "I8"},
    {DType::UInt8, 1, "uint8", "ByteStorage", "U8"},
    {DType::Bool, 1, "bool", "BoolStorage", "BOOL"},
}};

const DTypeInfo& info(DType dtype) {
  return kDTypes[static_cast<std::size_t>(dtype)];
}

template <typename Field>
std::optional<DType> find(std::string_view wanted, Field field) {
  for (const auto& d : kDTypes) {
    if (d.*field == wanted) return d.dtype;
  }
  return std::nullopt;
}

}  // namespace

std::size_t dtype_size(DType dtype) {
  return info(dtype).size;
}
std::string_view dtype_name(DType dtype) {
  return info(dtype).name;
}
std::string_view dtype_storage_class(DType dtype) {
  return info(dtype).storage_class;
}
std::string_view dtype_safetensors_code(DType dtype) {
  return info(dtype).safetensors_code;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  // torch also knows these dtypes by their legacy aliases.
  if (name == "float" || name == "float32") return DType::Float32;
  if (name == "half") return DType::Float16;
  if (name == "double") return DType::Float64;
  if (name == "long") return DType::Int64;
  if (name == "int") return DType::Int32;
  if (name == "short") return DType::Int16;
  return find(name, &DTypeInfo::name);
}

std::optional<DType> dtype_from_storage_class(std::string_view name) {
  return find(name, &DTypeInfo::storage_class);
}

std::optional<DType> dtype_from_safetensors_code(std::string_view code) {
  return find(code, &DTypeInfo::safetensors_code);
}

}  // namespace medicosam::checkpoint
