#include "medicosam/io/itk_util.hpp"

#include <cmath>

#include "medicosam/core/error.hpp"

namespace medicosam::io::detail {

std::string itk_message(const itk::ExceptionObject& e) {
  std::string d = e.GetDescription();
  while (!d.empty() && (d.back() == '\n' || d.back() == ' ')) d.pop_back();
  return d.empty() ? std::string(e.what()) : d;
}

ItkImageInfo itk_image_info(itk::ImageIOBase& io, const std::string& name) {
  ItkImageInfo info;
  const unsigned n = io.GetNumberOfDimensions();
  if (n < 1) throw FormatError("'" + name + "': image has no dimensions");
  for (unsigned i = 0; i < n; ++i) {
    const auto d = static_cast<int64_t>(io.GetDimensions(i));
    if (d < 1)
      throw FormatError("'" + name + "': image size along axis " + std::to_string(i) + " is 0");
    info.dims.push_back(d);
    if (i >= 3 && d != 1) {
      throw FormatError("'" + name + "': " + std::to_string(n) +
                        "D images are not supported (axis " + std::to_string(i) + " has size " +
                        std::to_string(d) + ")");
    }
  }
  using C = itk::IOComponentEnum;
  switch (io.GetComponentType()) {
    case C::UCHAR:
      info.pixel_type = PixelType::kUInt8;
      break;
    case C::CHAR:
      info.pixel_type = PixelType::kInt8;
      break;
    case C::USHORT:
      info.pixel_type = PixelType::kUInt16;
      break;
    case C::SHORT:
      info.pixel_type = PixelType::kInt16;
      break;
    case C::UINT:
      info.pixel_type = PixelType::kUInt32;
      break;
    case C::INT:
      info.pixel_type = PixelType::kInt32;
      break;
    case C::FLOAT:
      info.pixel_type = PixelType::kFloat32;
      break;
    case C::DOUBLE:
      info.pixel_type = PixelType::kFloat64;
      break;
    default:
      throw FormatError("'" + name + "': voxel component type " +
                        itk::ImageIOBase::GetComponentTypeAsString(io.GetComponentType()) +
                        " is not supported");
  }
  if (io.GetPixelType() == itk::IOPixelEnum::COMPLEX) {
    throw FormatError("'" + name + "': complex-valued images are not supported");
  }
  info.component_bytes = static_cast<int>(pixel_type_size(info.pixel_type));
  if (static_cast<int>(io.GetComponentSize()) != info.component_bytes) {
    throw FormatError("'" + name + "': unexpected component size");
  }
  info.components = static_cast<int>(io.GetNumberOfComponents());
  if (info.components < 1 || info.components > 4) {
    throw FormatError("'" + name + "': " + std::to_string(info.components) +
                      " components per voxel are not supported (1 gray, 3 RGB, 4 RGBA)");
  }
  Geometry& g = info.geometry;
  for (unsigned i = 0; i < 3; ++i) {
    g.size[i] = i < n ? info.dims[i] : 1;
    info.size[i] = g.size[i];
    if (i < n) {
      const double s = io.GetSpacing(i);
      // Missing/zero spacing (common in NIfTI pixdim) means "unknown": 1 mm.
      g.spacing[i] = std::isfinite(s) && s > 0 ? s : 1.0;
      g.origin[i] = io.GetOrigin(i);
      if (!std::isfinite(g.origin[i])) throw FormatError("'" + name + "': origin is not finite");
      const std::vector<double> d = io.GetDirection(i);
      for (unsigned r = 0; r < 3; ++r) {
        const double v = r < d.size() ? d[r] : (r == i ? 1.0 : 0.0);
        if (!std::isfinite(v)) throw FormatError("'" + name + "': direction is not finite");
        g.direction[r * 3 + i] = v;
      }
    }
  }
  if (n == 2) {  // complete a 2D direction with the normal
    g.direction[2] = g.direction[5] = g.direction[6] = g.direction[7] = 0.0;
    g.direction[8] = 1.0;
  }
  const auto& m = g.direction;
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (!(std::abs(det) > 1e-6)) throw FormatError("'" + name + "': direction matrix is singular");
  return info;
}

void read_itk_region(itk::ImageIOBase& io, const ItkImageInfo& info, void* buffer) {
  itk::ImageIORegion region(static_cast<unsigned>(info.dims.size()));
  for (unsigned i = 0; i < info.dims.size(); ++i) {
    region.SetIndex(i, 0);
    region.SetSize(i, static_cast<itk::SizeValueType>(info.dims[i]));
  }
  io.SetIORegion(region);
  io.Read(buffer);
}

}  // namespace medicosam::io::detail
