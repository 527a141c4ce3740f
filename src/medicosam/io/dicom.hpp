#pragma once
// DICOM folders: listing the series they hold, and what a DICOM SEG needs to
// reference its source series. Pixel data is read through ITK (GDCM) by
// read_image(); headers are scanned with DCMTK.
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/geometry.hpp"

namespace medicosam::io {

struct DicomSeriesInfo {
  std::string series_uid;
  int series_number = 0;
  std::string description;  // SeriesDescription
  std::string modality;     // CT, MR, SEG, ...
  std::string sop_class_uid;
  std::string study_uid;
  std::string frame_of_reference_uid;
  std::string patient_id;
  std::string patient_name;
  int64_t num_files = 0;  // files (instances) in the series
  int64_t rows = 0, columns = 0;
  int64_t frames_per_file = 1;     // NumberOfFrames of the first instance
  std::vector<std::string> files;  // in name order; read_image sorts by position

  // "1.2.3... (#2) CT 'Chest' 512x512, 120 files"
  std::string summary() const;
};

// The series under `path` (a folder, searched recursively, or one file),
// sorted by series number then UID. Non-DICOM files are skipped. Throws
// InputError if there is no DICOM file at all.
std::vector<DicomSeriesInfo> list_dicom_series(const std::string& path);

// The image series a label map was segmented on, as DICOM SEG references it.
struct DicomSourceSeries {
  DicomSeriesInfo info;
  Geometry geometry;                           // as read_image() returns it
  std::vector<std::string> files;              // one per slice, in z order
  std::vector<std::string> sop_instance_uids;  // one per slice, in z order
  std::vector<std::string> sop_class_uids;     // one per slice, in z order
};

// Scans the series at `path` (folder or one of its files) without reading
// pixels. `series_uid` picks one of several series; empty = the only one
// (InputError listing the series if there are several).
DicomSourceSeries load_dicom_source(const std::string& path, const std::string& series_uid = "");

// True if `path` is a folder (DICOM is the only folder "format") or a file
// starting with the DICOM preamble.
bool looks_like_dicom(const std::string& path);

}  // namespace medicosam::io
