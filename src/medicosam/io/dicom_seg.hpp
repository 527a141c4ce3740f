#pragma once
// DICOM Segmentation Storage (SEG) objects through DCMTK's dcmseg: writing a
// label map as a binary SEG that references its source series, and reading
// a SEG back into a label map.
#include <string>
#include <vector>

#include "medicosam/io/dicom.hpp"
#include "medicosam/io/geometry.hpp"
#include "medicosam/io/volume.hpp"

namespace medicosam::io {

struct DicomSegOptions {
  std::string series_description = "medicosam segmentation";
  int series_number = 900;
  std::string content_label = "MEDICOSAM";  // CS: upper case, <= 16 characters
  std::string content_description = "Interactive segmentation (Segment Anything)";
  std::string content_creator;  // PN, e.g. "Doe^Jane"; empty = none
  std::string manufacturer = "medicosam";
  std::string model_name = "medicosam";
  std::string software_version = "0.1.0";
  std::string device_serial_number = "0";
  // Leave out frames of slices where a segment is empty (as dcmqi does).
  bool skip_empty_frames = true;
};

// Writes `labels` as a binary DICOM SEG to `path` (atomically). One segment
// per label; SEG segment numbers are 1..N in ascending label order, so labels
// 1..N keep their value on reading back. Segment names, colours and codes
// come from `segments` (matched by label), else from labels.segments, else
// defaults ("Segment N", a palette colour, SCT Tissue). `labels` must lie on
// the grid of `source` (the image series it was drawn on); patient, study and
// frame of reference are taken from the source, and every frame references
// its source slice (SOP Class/Instance UID).
// Throws InputError if labels and source do not match, IoError on write failure.
void write_dicom_seg(const std::string& path, const LabelMap& labels,
                     const DicomSourceSeries& source, const std::vector<SegmentInfo>& segments = {},
                     const DicomSegOptions& options = {});

// Same, with the source given as the DICOM folder (or one of its files) the
// label map's volume was read from; `series_uid` picks the series (empty =
// the only image series), e.g. Volume::series_uid of that volume.
void write_dicom_seg(const std::string& path, const LabelMap& labels,
                     const std::string& source_dicom_path, const std::string& series_uid,
                     const std::vector<SegmentInfo>& segments = {},
                     const DicomSegOptions& options = {});

// Reads a binary (or fractional, thresholded at half) DICOM SEG into a label
// map: segment number n -> label n (a later segment wins where segments
// overlap). The grid is derived from the SEG's own plane positions,
// orientation and pixel measures; segment names/colours/codes land in
// LabelMap::segments. Throws FormatError naming the file on anything invalid.
LabelMap read_dicom_seg(const std::string& path);
// Same, placing the frames on `reference` (e.g. the source CT grid, so empty
// slices the SEG leaves out are included); frames off that grid are an error.
LabelMap read_dicom_seg(const std::string& path, const Geometry& reference);

// Converts between RGB (0..255) and DICOM's scaled CIELab (0..65535).
std::array<uint16_t, 3> rgb_to_dicom_lab(const std::array<uint8_t, 3>& rgb);
std::array<uint8_t, 3> dicom_lab_to_rgb(const std::array<uint16_t, 3>& lab);

}  // namespace medicosam::io
