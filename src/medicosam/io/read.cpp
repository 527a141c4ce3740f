// Image reading: our own header checks first, then ITK's ImageIO classes,
// chosen explicitly per format (never ITK's factory guessing).
#include "medicosam/io/read.hpp"

#include <itkBMPImageIO.h>
#include <itkJPEGImageIO.h>
#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
#include <itkPNGImageIO.h>
#include <itkTIFFImageIO.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom_internal.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/header_check.hpp"
#include "medicosam/io/itk_util.hpp"

namespace medicosam::io {
namespace fs = std::filesystem;

namespace {

std::string quote_name(const std::string& s) {
  return "'" + s + "'";
}

bool is_raster(FileFormat f) {
  return f == FileFormat::kPng || f == FileFormat::kJpeg || f == FileFormat::kTiff ||
         f == FileFormat::kBmp;
}

itk::ImageIOBase::Pointer make_io(FileFormat f) {
  switch (f) {
    case FileFormat::kNifti:
      return itk::NiftiImageIO::New().GetPointer();
    case FileFormat::kNrrd:
      return itk::NrrdImageIO::New().GetPointer();
    case FileFormat::kMetaImage:
      return itk::MetaImageIO::New().GetPointer();
    case FileFormat::kPng:
      return itk::PNGImageIO::New().GetPointer();
    case FileFormat::kJpeg:
      return itk::JPEGImageIO::New().GetPointer();
    case FileFormat::kTiff:
      return itk::TIFFImageIO::New().GetPointer();
    case FileFormat::kBmp:
      return itk::BMPImageIO::New().GetPointer();
    default:
      return nullptr;
  }
}

// libjpeg only warns about a missing end of image; PIL refuses such files,
// and so do we.
void check_jpeg_complete(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  const std::streamoff size = f.tellg();
  const std::streamoff tail = std::min<std::streamoff>(size, 4096);
  std::string buf(static_cast<size_t>(tail), '\0');
  f.seekg(size - tail);
  f.read(&buf[0], tail);
  if (buf.find("\xff\xd9") == std::string::npos) {
    throw FormatError(quote_name(path) + ": JPEG is truncated (no end-of-image marker)");
  }
}

void require_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(quote_name(path) + ": no such file or folder");
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) == 0) {
    throw FormatError(quote_name(path) + ": file is empty");
  }
}

FileFormat detect_or_throw(const std::string& path) {
  const FileFormat f = detect_format(path);
  if (f == FileFormat::kUnknown) {
    throw FormatError(quote_name(path) +
                      ": not a supported image (expected NIfTI, NRRD, MetaImage, DICOM, "
                      "PNG, JPEG, TIFF or BMP)");
  }
  return f;
}

struct OpenedImage {
  itk::ImageIOBase::Pointer io;
  detail::ItkImageInfo info;
  FileFormat format;
};

// Header checks + ITK ReadImageInformation, no voxel data.
OpenedImage open_image(const std::string& path, FileFormat format, const ReadOptions& options) {
  HeaderSummary h;
  const bool checked = format == FileFormat::kNifti || format == FileFormat::kNrrd ||
                       format == FileFormat::kMetaImage;
  if (checked) h = validate_image_file(path, format, options.max_bytes);
  if (format == FileFormat::kJpeg) check_jpeg_complete(path);
  OpenedImage img;
  img.format = format;
  img.io = make_io(format);
  try {
    img.io->SetFileName(path);
    if (!img.io->CanReadFile(path.c_str())) {
      throw FormatError(quote_name(path) + ": not a readable " + format_name(format) + " file");
    }
    img.io->ReadImageInformation();
  } catch (const itk::ExceptionObject& e) {
    throw FormatError(quote_name(path) + ": cannot read " + format_name(format) +
                      " header: " + detail::itk_message(e));
  }
  img.info = detail::itk_image_info(*img.io, path);
  if (checked && (img.info.size != h.size || img.info.components != h.components)) {
    throw FormatError(
        quote_name(path) + ": ITK reads the header as " + std::to_string(img.info.size[0]) + "x" +
        std::to_string(img.info.size[1]) + "x" + std::to_string(img.info.size[2]) + "x" +
        std::to_string(img.info.components) + ", our check as " + std::to_string(h.size[0]) + "x" +
        std::to_string(h.size[1]) + "x" + std::to_string(h.size[2]) + "x" +
        std::to_string(h.components) + "; refusing an ambiguous header");
  }
  if (is_raster(format)) {
    // Raster formats carry no patient geometry (DPI is not a voxel size).
    Geometry g;
    g.size = img.info.geometry.size;
    img.info.geometry = g;
  } else if (img.info.components != 1 && img.info.components != 3) {
    throw FormatError(quote_name(path) + ": " + std::to_string(img.info.components) +
                      " components per voxel are not supported (1 or 3)");
  }
  uint64_t bytes = static_cast<uint64_t>(img.info.components) * img.info.component_bytes;
  for (int64_t d : img.info.size) {
    if (d > 0 && bytes > options.max_bytes / static_cast<uint64_t>(d) + 1) {
      bytes = options.max_bytes + 1;
      break;
    }
    bytes *= static_cast<uint64_t>(d);
  }
  if (bytes > options.max_bytes) {
    throw FormatError(quote_name(path) + ": image of " + std::to_string(img.info.size[0]) + "x" +
                      std::to_string(img.info.size[1]) + "x" + std::to_string(img.info.size[2]) +
                      " voxels exceeds the limit of " + std::to_string(options.max_bytes) +
                      " bytes; refusing to allocate");
  }
  return img;
}

Volume read_pixels(const std::string& path, OpenedImage& img) {
  const auto& info = img.info;
  const int in_c = info.components;
  const int out_c = in_c >= 3 ? 3 : 1;  // drop alpha; gray+alpha -> gray
  Volume vol(info.pixel_type, info.geometry, out_c);
  vol.format = format_name(img.format);
  const size_t n = static_cast<size_t>(info.geometry.num_voxels());
  try {
    if (in_c == out_c) {
      detail::read_itk_region(*img.io, info, vol.data());
    } else {
      std::vector<uint8_t> buffer(n * in_c * info.component_bytes);
      detail::read_itk_region(*img.io, info, buffer.data());
      const size_t b = static_cast<size_t>(info.component_bytes);
      uint8_t* dst = static_cast<uint8_t*>(vol.data());
      for (size_t i = 0; i < n; ++i) {
        std::memcpy(dst + i * out_c * b, buffer.data() + i * in_c * b, out_c * b);
      }
    }
  } catch (const itk::ExceptionObject& e) {
    throw FormatError(quote_name(path) + ": cannot read " + format_name(img.format) +
                      " data: " + detail::itk_message(e));
  }
  return vol;
}

}  // namespace

Volume read_image(const std::string& path, const ReadOptions& options) {
  require_file(path);
  std::error_code ec;
  if (fs::is_directory(path, ec) || detect_format(path) == FileFormat::kDicom) {
    const auto headers = detail::scan_dicom(path);
    const auto layout = detail::layout_series(headers, options.series_uid, path);
    return detail::read_dicom_pixels(layout, options);
  }
  const FileFormat format = detect_or_throw(path);
  OpenedImage img = open_image(path, format, options);
  return read_pixels(path, img);
}

LabelMap read_label_map(const std::string& path, const ReadOptions& options) {
  require_file(path);
  std::error_code ec;
  if (!fs::is_directory(path, ec) && detect_format(path) == FileFormat::kDicom) {
    const auto headers = detail::scan_dicom(path);
    if (headers.size() == 1 && headers[0].modality == "SEG") return read_dicom_seg(path);
  }
  // Float label files (some NIfTI writers) are accepted if they hold whole numbers.
  return LabelMap::from_volume(read_image(path, options), quote_name(path));
}

ImageInfo probe_image(const std::string& path, const ReadOptions& options) {
  require_file(path);
  ImageInfo info;
  info.path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec) || detect_format(path) == FileFormat::kDicom) {
    info.format = "DICOM";
    const auto headers = detail::scan_dicom(path);
    info.series = detail::group_series(headers);
    try {
      const auto layout = detail::layout_series(headers, options.series_uid, path);
      info.geometry = layout.geometry;
      info.pixel_type = layout.pixel_type;
      info.components = layout.components;
      info.modality = layout.info.modality;
      info.selected_series = layout.info.series_uid;
      info.orientation = orientation_code(info.geometry);
    } catch (const InputError&) {
      // Several series and no choice: still describe what is there.
      if (!options.series_uid.empty() || info.series.size() < 2) throw;
    }
    return info;
  }
  const FileFormat format = detect_or_throw(path);
  OpenedImage img = open_image(path, format, options);
  info.format = format_name(format);
  info.geometry = img.info.geometry;
  info.pixel_type = img.info.pixel_type;
  info.components = img.info.components >= 3 ? 3 : 1;
  info.orientation = orientation_code(info.geometry);
  return info;
}

std::string describe(const ImageInfo& info) {
  std::ostringstream s;
  s.precision(6);
  const Geometry& g = info.geometry;
  s << info.path << "\n";
  s << "  format:      " << info.format << "\n";
  if (!info.modality.empty()) s << "  modality:    " << info.modality << "\n";
  if (info.format != "DICOM" || !info.selected_series.empty()) {
    s << "  size:        " << g.size[0] << " x " << g.size[1] << " x " << g.size[2] << " voxels ("
      << (g.size[2] == 1 ? "2D" : "3D") << ")\n";
    s << "  voxel type:  " << pixel_type_name(info.pixel_type)
      << (info.components == 3 ? " RGB" : "") << "\n";
    s << "  spacing:     " << g.spacing[0] << " x " << g.spacing[1] << " x " << g.spacing[2]
      << " mm\n";
    s << "  origin:      (" << g.origin[0] << ", " << g.origin[1] << ", " << g.origin[2]
      << ") mm LPS\n";
    s << "  orientation: " << info.orientation << " (direction";
    for (int i = 0; i < 9; ++i) s << (i == 0 ? " " : ",") << g.direction[i];
    s << ")\n";
  }
  if (!info.series.empty()) {
    s << "  series:      " << info.series.size() << "\n";
    for (const auto& ser : info.series) {
      s << "    " << (ser.series_uid == info.selected_series ? "* " : "  ") << ser.summary()
        << "\n";
    }
    if (info.selected_series.empty()) s << "  (several series: choose one with --series UID)\n";
  }
  return s.str();
}

}  // namespace medicosam::io
