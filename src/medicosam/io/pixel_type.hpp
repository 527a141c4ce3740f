#pragma once
// Voxel component types a Volume can hold.
#include <cstddef>
#include <cstdint>
#include <string>

namespace medicosam::io {

enum class PixelType { kUInt8, kInt8, kUInt16, kInt16, kUInt32, kInt32, kFloat32, kFloat64 };

// Bytes per component.
size_t pixel_type_size(PixelType t);
// "uint8", "int16", "float32", ...
const char* pixel_type_name(PixelType t);
bool is_integer(PixelType t);

// The PixelType of a C++ component type.
template <typename T>
struct PixelTypeOf;
template <>
struct PixelTypeOf<uint8_t> {
  static constexpr PixelType value = PixelType::kUInt8;
};
template <>
struct PixelTypeOf<int8_t> {
  static constexpr PixelType value = PixelType::kInt8;
};
template <>
struct PixelTypeOf<uint16_t> {
  static constexpr PixelType value = PixelType::kUInt16;
};
template <>
struct PixelTypeOf<int16_t> {
  static constexpr PixelType value = PixelType::kInt16;
};
template <>
struct PixelTypeOf<uint32_t> {
  static constexpr PixelType value = PixelType::kUInt32;
};
template <>
struct PixelTypeOf<int32_t> {
  static constexpr PixelType value = PixelType::kInt32;
};
template <>
struct PixelTypeOf<float> {
  static constexpr PixelType value = PixelType::kFloat32;
};
template <>
struct PixelTypeOf<double> {
  static constexpr PixelType value = PixelType::kFloat64;
};

// Calls f(T{}) with the component type T of `t`.
template <typename F>
decltype(auto) visit_pixel_type(PixelType t, F&& f) {
  switch (t) {
    case PixelType::kUInt8:
      return f(uint8_t{});
    case PixelType::kInt8:
      return f(int8_t{});
    case PixelType::kUInt16:
      return f(uint16_t{});
    case PixelType::kInt16:
      return f(int16_t{});
    case PixelType::kUInt32:
      return f(uint32_t{});
    case PixelType::kInt32:
      return f(int32_t{});
    case PixelType::kFloat32:
      return f(float{});
    case PixelType::kFloat64:
      break;
  }
  return f(double{});
}

}  // namespace medicosam::io
