#pragma once
// Internal: PNG and JPEG decoding with libpng/libjpeg (see raster.cpp for why
// not through ITK). Results are 2D Volumes (uint8/uint16, 1 or 3 components,
// alpha dropped) with unit geometry.
#include <cstdint>
#include <string>

#include "medicosam/io/volume.hpp"

namespace medicosam::io::detail {

Volume read_png(const std::string& path, uint64_t max_bytes);
Volume read_jpeg(const std::string& path, uint64_t max_bytes);

}  // namespace medicosam::io::detail
