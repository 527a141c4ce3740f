#pragma once
// NumPy .npy (format 1.0/2.0/3.0) reading and writing, torch-free.
// Used for embeddings, low-res logits and the reference fixtures.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace medicosam {

enum class NpyType { kBool, kUInt8, kInt8, kInt16, kUInt16, kInt32, kInt64, kFloat16, kFloat32, kFloat64 };

size_t npy_item_size(NpyType t);
const char* npy_type_name(NpyType t);

struct NpyArray {
  NpyType type = NpyType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order, little endian

  int64_t numel() const;
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data.data()); }
  // Converts any numeric type to float32 values (bool -> 0/1).
  std::vector<float> to_float() const;
  std::string shape_string() const;
};

// Reads a .npy file; throws FormatError naming the file on anything malformed
// (bad magic, truncated data, Fortran order, unsupported dtype, big-endian).
NpyArray read_npy(const std::string& path);
// Parses .npy bytes; `name` is used in error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& name);
// Serialises to .npy (format 1.0) bytes.
std::string serialize_npy(const NpyArray& a);
// Writes atomically.
void write_npy(const std::string& path, const NpyArray& a);

template <typename T>
NpyArray make_npy(NpyType type, std::vector<int64_t> shape, const T* values) {
  NpyArray a;
  a.type = type;
  a.shape = std::move(shape);
  a.data.resize(static_cast<size_t>(a.numel()) * npy_item_size(type));
  if (!a.data.empty()) std::memcpy(a.data.data(), values, a.data.size());
  return a;
}

}  // namespace medicosam
