#pragma once
// Reading images and label maps of any supported format, and describing them
// for `medicosam info`.
//
// Formats: NIfTI (.nii, .nii.gz, .hdr/.img), NRRD (.nrrd, .nhdr), MetaImage
// (.mha, .mhd), DICOM (a folder, searched recursively, or one file), and 2D
// PNG/JPEG/TIFF/BMP (8/16-bit, gray or RGB). Headers are validated before
// ITK sees a file; every error names the file.
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/dicom.hpp"
#include "medicosam/io/geometry.hpp"
#include "medicosam/io/pixel_type.hpp"
#include "medicosam/io/volume.hpp"

namespace medicosam::io {

struct ReadOptions {
  // DICOM folder with several series: the SeriesInstanceUID to read. Empty =
  // the folder must hold exactly one image series (else InputError listing them).
  std::string series_uid;
  // Refuse images whose voxel buffer would exceed this many bytes, before
  // allocating anything.
  uint64_t max_bytes = uint64_t{8} << 30;
};

// Reads an image as a Volume with its geometry (LPS). DICOM: slices are sorted
// by position along the slice normal, rescale slope/intercept are applied (CT
// in HU). 2D raster images get spacing 1, origin 0, identity direction.
// Alpha channels are dropped; gray+alpha becomes gray.
Volume read_image(const std::string& path_or_dicom_dir, const ReadOptions& options = {});

// Reads a label map: any integer image read_image() accepts (values 0..65535)
// or a DICOM SEG file (see read_dicom_seg).
LabelMap read_label_map(const std::string& path, const ReadOptions& options = {});

// What `medicosam info` shows, read from headers only (no voxel data).
struct ImageInfo {
  std::string path;
  std::string format;                        // "NIfTI", "NRRD", "MetaImage", "DICOM", "PNG", ...
  Geometry geometry;                         // of the selected series for DICOM folders
  PixelType pixel_type = PixelType::kUInt8;  // after DICOM rescale
  int components = 1;
  std::string orientation;              // e.g. "LPS", "RAS" (see orientation_code)
  std::string modality;                 // DICOM only
  std::vector<DicomSeriesInfo> series;  // DICOM: every series found
  std::string selected_series;  // DICOM: the series the geometry describes ("" if ambiguous)
};
ImageInfo probe_image(const std::string& path_or_dicom_dir, const ReadOptions& options = {});
// Multi-line human-readable description of `info`.
std::string describe(const ImageInfo& info);

}  // namespace medicosam::io
