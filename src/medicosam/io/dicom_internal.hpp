#pragma once
// Internal: DICOM header scanning (DCMTK, dicom.cpp) shared with the pixel
// reader (ITK/GDCM, dicom_pixels.cpp) and the SEG writer. Plain structs only,
// so neither toolkit's headers leak into the other's translation units.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/dicom.hpp"
#include "medicosam/io/pixel_type.hpp"
#include "medicosam/io/read.hpp"

namespace medicosam::io::detail {

struct DicomFileHeader {
  std::string file;
  std::string sop_class_uid, sop_instance_uid, series_uid, study_uid, frame_of_reference_uid;
  std::string modality, series_description, patient_id, patient_name, photometric;
  int series_number = 0;
  int instance_number = 0;
  bool has_position = false, has_orientation = false, has_spacing = false;
  std::array<double, 3> position{0, 0, 0};
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
  std::array<double, 2> pixel_spacing{1, 1};  // row spacing, column spacing
  int64_t rows = 0, columns = 0, frames = 1;
  int samples_per_pixel = 1, bits_allocated = 16, pixel_representation = 0;
  double slope = 1.0, intercept = 0.0;
  double slice_thickness = 0.0;  // 0 = unknown
  bool is_image = false;         // has Rows/Columns and is not SEG/RTSTRUCT/SR/...
};

// Headers of every DICOM file under `path` (folder, recursive; or one file).
std::vector<DicomFileHeader> scan_dicom(const std::string& path);
std::vector<DicomSeriesInfo> group_series(const std::vector<DicomFileHeader>& headers);

// One image series, sorted by position along the slice normal, with its
// geometry and the pixel type after rescale.
struct DicomSeriesLayout {
  DicomSeriesInfo info;
  std::vector<DicomFileHeader> slices;  // z order
  Geometry geometry;
  PixelType pixel_type = PixelType::kInt16;
  int components = 1;
};
// Picks the series (`series_uid`, or the only image series) and lays it out;
// throws InputError/FormatError naming `path` on ambiguity, mixed
// orientations, duplicate positions, gaps, tilt, multi-frame.
DicomSeriesLayout layout_series(const std::vector<DicomFileHeader>& headers,
                                const std::string& series_uid, const std::string& path);

// Checks that the file's pixel data is complete (GDCM only warns about
// truncated pixel data and reads garbage); throws FormatError naming it.
void verify_pixel_data(const DicomFileHeader& h);

// Reads the voxels of a laid-out series through ITK's GDCMImageIO.
Volume read_dicom_pixels(const DicomSeriesLayout& layout, const ReadOptions& options);

}  // namespace medicosam::io::detail
