// DICOM voxel data through ITK's GDCMImageIO, one file (slice) at a time, in
// the order and geometry decided by layout_series().
#include <itkGDCMImageIO.h>

#include <cstring>
#include <vector>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom_internal.hpp"
#include "medicosam/io/itk_util.hpp"
#include "medicosam/io/saturate.hpp"

namespace medicosam::io::detail {

Volume read_dicom_pixels(const DicomSeriesLayout& layout, const ReadOptions& options) {
  const Geometry& g = layout.geometry;
  const uint64_t bytes = static_cast<uint64_t>(g.num_voxels()) * layout.components *
                         pixel_type_size(layout.pixel_type);
  if (bytes > options.max_bytes) {
    throw FormatError("DICOM series " + layout.info.series_uid + " needs " + std::to_string(bytes) +
                      " bytes, more than the limit of " + std::to_string(options.max_bytes) +
                      "; refusing to allocate");
  }
  Volume vol(layout.pixel_type, g, layout.components);
  vol.format = "DICOM";
  vol.modality = layout.info.modality;
  vol.series_uid = layout.info.series_uid;
  const int64_t slice_values = g.size[0] * g.size[1] * layout.components;
  std::vector<uint8_t> buffer;
  for (size_t z = 0; z < layout.slices.size(); ++z) {
    const std::string& file = layout.slices[z].file;
    verify_pixel_data(layout.slices[z]);
    try {
      auto io = itk::GDCMImageIO::New();
      io->SetFileName(file);
      io->ReadImageInformation();
      const ItkImageInfo info = itk_image_info(*io, file);
      if (info.size[0] != g.size[0] || info.size[1] != g.size[1] || info.size[2] != 1) {
        throw FormatError("'" + file + "': pixel data is " + std::to_string(info.size[0]) + "x" +
                          std::to_string(info.size[1]) + "x" + std::to_string(info.size[2]) +
                          ", the header says " + std::to_string(g.size[0]) + "x" +
                          std::to_string(g.size[1]));
      }
      if (info.components != layout.components) {
        throw FormatError("'" + file + "': " + std::to_string(info.components) +
                          " samples per pixel, expected " + std::to_string(layout.components));
      }
      buffer.resize(static_cast<size_t>(slice_values) * info.component_bytes);
      read_itk_region(*io, info, buffer.data());
      // GDCM has applied the rescale (slope/intercept); convert to the
      // series' pixel type without loss.
      visit_pixel_type(info.pixel_type, [&](auto s) {
        using S = decltype(s);
        const S* src = reinterpret_cast<const S*>(buffer.data());
        visit_pixel_type(layout.pixel_type, [&](auto d) {
          using D = decltype(d);
          D* dst = vol.data_as<D>() + z * slice_values;
          for (int64_t i = 0; i < slice_values; ++i)
            dst[i] = saturate_cast<D>(static_cast<double>(src[i]));
        });
      });
    } catch (const itk::ExceptionObject& e) {
      throw FormatError("'" + file + "': cannot read DICOM pixel data: " + itk_message(e));
    }
  }
  // Integer rescale (e.g. CT intercept -1024) widens int16 storage to int32
  // on paper; CT values almost always fit int16 (HU), so narrow when they do.
  if (vol.pixel_type() == PixelType::kInt32 || vol.pixel_type() == PixelType::kUInt32) {
    const auto mm = vol.min_max();
    if (mm[0] >= -32768 && mm[1] <= 32767) return vol.cast(PixelType::kInt16);
  }
  return vol;
}

}  // namespace medicosam::io::detail
