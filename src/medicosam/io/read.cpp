// Image reading: our own header checks first, then ITK's ImageIO classes,
// chosen explicitly per format (never ITK's factory guessing).
#include "medicosam/io/read.hpp"

#include <itkBMPImageIO.h>
#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
#include <itkTIFFImageIO.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom_internal.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/header_check.hpp"
#include "medicosam/io/itk_util.hpp"
#include "medicosam/io/raster.hpp"

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
    case FileFormat::kTiff:
      return itk::TIFFImageIO::New().GetPointer();
    case FileFormat::kBmp:
      return itk::BMPImageIO::New().GetPointer();
    default:
      return nullptr;
  }
}

// libtiff (through ITK) follows the chain of image directories to count
// pages; a damaged "next IFD" offset that points back into the chain makes it
// loop forever. Walk the chain first: every IFD inside the file, no loops.
void check_tiff_directories(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  auto read = [&](uint64_t offset, size_t n, uint8_t* out) {
    if (offset + n > size)
      throw FormatError(quote_name(path) + ": TIFF directory points past the end of the file");
    f.seekg(static_cast<std::streamoff>(offset));
    f.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n));
    if (!f) throw FormatError(quote_name(path) + ": cannot read TIFF directory");
  };
  uint8_t h[16] = {0};
  read(0, 8, h);
  const bool little = h[0] == 'I';
  auto num = [&](const uint8_t* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v |= static_cast<uint64_t>(p[little ? i : bytes - 1 - i]) << (8 * i);
    return v;
  };
  const bool big = num(h + 2, 2) == 43;
  uint64_t offset = num(h + 4, 4);
  if (big) {
    read(0, 16, h);
    offset = num(h + 8, 8);
  }
  std::vector<uint64_t> seen;
  while (offset != 0) {
    if (std::find(seen.begin(), seen.end(), offset) != seen.end()) {
      throw FormatError(quote_name(path) + ": damaged TIFF (image directories form a loop)");
    }
    if (seen.size() >= 65536)
      throw FormatError(quote_name(path) + ": TIFF with more than 65536 pages");
    seen.push_back(offset);
    uint8_t buf[8];
    read(offset, big ? 8 : 2, buf);
    const uint64_t entries = num(buf, big ? 8 : 2);
    if (entries == 0 || entries > 4096) {
      throw FormatError(quote_name(path) + ": damaged TIFF directory (" + std::to_string(entries) +
                        " entries)");
    }
    const uint64_t next_at = offset + (big ? 8 + entries * 20 : 2 + entries * 12);
    read(next_at, big ? 8 : 4, buf);
    offset = num(buf, big ? 8 : 4);
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
  if (format == FileFormat::kTiff) check_tiff_directories(path);
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
  if (format == FileFormat::kPng) return detail::read_png(path, options.max_bytes);
  if (format == FileFormat::kJpeg) return detail::read_jpeg(path, options.max_bytes);
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
  info.format = format_name(format);
  if (format == FileFormat::kPng || format == FileFormat::kJpeg) {
    // 2D raster images are small: decode them (this also validates them).
    const Volume v = read_image(path, options);
    info.geometry = v.geometry();
    info.pixel_type = v.pixel_type();
    info.components = v.components();
    info.orientation = orientation_code(info.geometry);
    return info;
  }
  OpenedImage img = open_image(path, format, options);
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
