#include "medicosam/io/pixel_type.hpp"

namespace medicosam::io {

size_t pixel_type_size(PixelType t) {
  return visit_pixel_type(t, [](auto v) { return sizeof(v); });
}

const char* pixel_type_name(PixelType t) {
  switch (t) {
    case PixelType::kUInt8:
      return "uint8";
    case PixelType::kInt8:
      return "int8";
    case PixelType::kUInt16:
      return "uint16";
    case PixelType::kInt16:
      return "int16";
    case PixelType::kUInt32:
      return "uint32";
    case PixelType::kInt32:
      return "int32";
    case PixelType::kFloat32:
      return "float32";
    case PixelType::kFloat64:
      return "float64";
  }
  return "unknown";
}

bool is_integer(PixelType t) {
  return t != PixelType::kFloat32 && t != PixelType::kFloat64;
}

}  // namespace medicosam::io
