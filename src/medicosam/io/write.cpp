#include "medicosam/io/write.hpp"

#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
#include <itkPNGImageIO.h>

#include <cctype>
#include <filesystem>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/itk_util.hpp"

namespace medicosam::io {
namespace {

enum class OutFormat { kNifti, kNrrd, kMeta, kPng };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

OutFormat out_format(const std::string& path, bool allow_png) {
  std::string l = std::filesystem::path(path).filename().string();
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ends_with(l, ".nii") || ends_with(l, ".nii.gz")) return OutFormat::kNifti;
  if (ends_with(l, ".nrrd")) return OutFormat::kNrrd;
  if (ends_with(l, ".mha")) return OutFormat::kMeta;
  if (allow_png && ends_with(l, ".png")) return OutFormat::kPng;
  if (ends_with(l, ".mhd") || ends_with(l, ".nhdr")) {
    throw InputError(
        "'" + path +
        "': .mhd/.nhdr write two files and cannot be written atomically; use .mha or .nrrd");
  }
  if (ends_with(l, ".dcm")) {
    throw InputError("'" + path + "': DICOM output is a DICOM SEG; use write_dicom_seg");
  }
  throw InputError("'" + path +
                   "': unsupported output extension (use .nii, .nii.gz, .nrrd or .mha" +
                   std::string(allow_png ? " or .png for 2D" : "") + ")");
}

itk::IOComponentEnum itk_component(PixelType t) {
  using C = itk::IOComponentEnum;
  switch (t) {
    case PixelType::kUInt8:
      return C::UCHAR;
    case PixelType::kInt8:
      return C::CHAR;
    case PixelType::kUInt16:
      return C::USHORT;
    case PixelType::kInt16:
      return C::SHORT;
    case PixelType::kUInt32:
      return C::UINT;
    case PixelType::kInt32:
      return C::INT;
    case PixelType::kFloat32:
      return C::FLOAT;
    case PixelType::kFloat64:
      return C::DOUBLE;
  }
  return C::UCHAR;
}

void write_volume(const std::string& path, const Volume& v, OutFormat f, bool compress) {
  if (v.empty()) throw InputError("'" + path + "': nothing to write (empty image)");
  itk::ImageIOBase::Pointer io;
  switch (f) {
    case OutFormat::kNifti:
      io = itk::NiftiImageIO::New().GetPointer();
      break;
    case OutFormat::kNrrd:
      io = itk::NrrdImageIO::New().GetPointer();
      break;
    case OutFormat::kMeta:
      io = itk::MetaImageIO::New().GetPointer();
      break;
    case OutFormat::kPng:
      io = itk::PNGImageIO::New().GetPointer();
      break;
  }
  const Geometry& g = v.geometry();
  const unsigned dims = f == OutFormat::kPng ? 2 : 3;
  if (f == OutFormat::kPng) {
    if (!v.is_2d())
      throw InputError("'" + path + "': PNG holds 2D images only; use .nii.gz/.nrrd/.mha");
    if (v.pixel_type() != PixelType::kUInt8 && v.pixel_type() != PixelType::kUInt16) {
      throw InputError("'" + path + "': PNG holds uint8/uint16 only");
    }
  }
  io->SetNumberOfDimensions(dims);
  itk::ImageIORegion region(dims);
  for (unsigned i = 0; i < dims; ++i) {
    io->SetDimensions(i, static_cast<itk::SizeValueType>(g.size[i]));
    io->SetSpacing(i, g.spacing[i]);
    io->SetOrigin(i, g.origin[i]);
    std::vector<double> d(dims);
    for (unsigned r = 0; r < dims; ++r) d[r] = g.direction[r * 3 + i];
    io->SetDirection(i, d);
    region.SetIndex(i, 0);
    region.SetSize(i, static_cast<itk::SizeValueType>(g.size[i]));
  }
  io->SetComponentType(itk_component(v.pixel_type()));
  io->SetNumberOfComponents(static_cast<unsigned>(v.components()));
  io->SetPixelType(v.components() == 3 ? itk::IOPixelEnum::RGB : itk::IOPixelEnum::SCALAR);
  io->SetUseCompression(compress);
  io->SetIORegion(region);
  write_via_temp_file(path, [&](const std::string& tmp) {
    try {
      io->SetFileName(tmp);
      io->WriteImageInformation();
      io->Write(v.data());
    } catch (const itk::ExceptionObject& e) {
      throw IoError("cannot write '" + path + "': " + detail::itk_message(e));
    }
    std::error_code ec;
    if (!std::filesystem::exists(tmp, ec))
      throw IoError("cannot write '" + path + "': ITK wrote nothing");
  });
}

}  // namespace

void write_label_map(const std::string& path, const LabelMap& labels,
                     const LabelWriteOptions& options) {
  if (labels.empty()) throw InputError("'" + path + "': nothing to write (empty label map)");
  const OutFormat f = out_format(path, true);
  PixelType t = PixelType::kUInt16;
  switch (options.type) {
    case LabelWriteOptions::Type::kUInt8:
      t = PixelType::kUInt8;
      break;
    case LabelWriteOptions::Type::kUInt16:
      t = PixelType::kUInt16;
      break;
    case LabelWriteOptions::Type::kAuto:
      t = labels.max_label() <= 255 ? PixelType::kUInt8 : PixelType::kUInt16;
      break;
  }
  write_volume(path, labels.to_volume(t), f, options.compress);
}

SegmentationFormat segmentation_format(const std::string& path) {
  std::string l = std::filesystem::path(path).filename().string();
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ends_with(l, ".dcm")) return SegmentationFormat::kDicomSeg;
  if (ends_with(l, ".png")) return SegmentationFormat::kPng;
  for (const char* ext : {".nii", ".nii.gz", ".nrrd", ".mha"})
    if (ends_with(l, ext)) return SegmentationFormat::kLabelMap;
  throw InputError("'" + path +
                   "': unsupported extension (use .png, .nii.gz, .nii, .nrrd, .mha or .dcm)");
}

void write_segmentation(const std::string& path, const LabelMap& labels, const Volume& source,
                        const std::string& source_path, const SegmentationWriteOptions& options) {
  if (labels.size() != source.size()) {
    throw InputError("'" + path + "': the segmentation's grid does not match its source image '" +
                     source_path + "'");
  }
  switch (segmentation_format(path)) {
    case SegmentationFormat::kDicomSeg:
      if (source.format != "DICOM") {
        throw InputError("'" + path + "': a DICOM SEG needs a DICOM series as input, '" +
                         source_path + "' is " + source.format);
      }
      write_dicom_seg(path, labels, source_path, source.series_uid);
      return;
    case SegmentationFormat::kPng:
      if (options.png_mask) {
        if (labels.size()[2] != 1)
          throw InputError("'" + path + "': PNG holds 2D images only; use .nii.gz/.nrrd/.mha");
        Volume mask(PixelType::kUInt8, labels.geometry());
        auto* m = mask.data_as<uint8_t>();
        for (int64_t i = 0; i < labels.num_voxels(); ++i) m[i] = labels.data()[i] ? 255 : 0;
        write_volume(path, mask, OutFormat::kPng, true);
        return;
      }
      [[fallthrough]];
    case SegmentationFormat::kLabelMap:
      write_label_map(path, labels, options.labels);
      return;
  }
}

void write_image(const std::string& path, const Volume& volume, bool compress) {
  write_volume(path, volume, out_format(path, true), compress);
}

}  // namespace medicosam::io
