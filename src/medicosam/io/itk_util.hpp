#pragma once
// Internal: reading through a raw itk::ImageIOBase (no templated pipeline),
// so one code path serves every pixel type and we allocate the buffer
// ourselves, after our own size checks.
#include <itkImageIOBase.h>

#include <array>
#include <string>
#include <vector>

#include "medicosam/io/geometry.hpp"
#include "medicosam/io/pixel_type.hpp"

namespace medicosam::io::detail {

struct ItkImageInfo {
  std::vector<int64_t> dims;  // every axis ITK reports
  std::array<int64_t, 3> size{1, 1, 1};
  int components = 1;  // in the file (before dropping alpha)
  int component_bytes = 1;
  PixelType pixel_type = PixelType::kUInt8;
  Geometry geometry;
};

// After io.ReadImageInformation(): sizes, types and geometry. Throws
// FormatError naming `name` for unsupported layouts (more than 3 non-trivial
// axes, 64-bit integers, complex, more than 4 components).
ItkImageInfo itk_image_info(itk::ImageIOBase& io, const std::string& name);
// Reads the whole image into `buffer` (product of dims x components x bytes).
void read_itk_region(itk::ImageIOBase& io, const ItkImageInfo& info, void* buffer);
// The description of an ITK exception without its file/line noise.
std::string itk_message(const itk::ExceptionObject& e);

}  // namespace medicosam::io::detail
