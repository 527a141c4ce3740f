#pragma once
// Writing label maps and volumes with their geometry. The format follows the
// extension: .nii, .nii.gz, .nrrd, .mha (and .png for 2D label maps). Every
// write goes to a temporary file in the destination folder that is renamed
// into place only when complete: a failure never leaves a half-written file.
//
// Geometry: NRRD and MetaImage store spacing/origin/direction as decimal
// doubles (round trip exact to 1e-6). NIfTI-1 stores them as float32
// (sform/qform), so a round trip is exact for geometry that came from a
// NIfTI file and within float32 precision (~1e-7 relative) otherwise.
#include <string>

#include "medicosam/io/pixel_type.hpp"
#include "medicosam/io/volume.hpp"

namespace medicosam::io {

struct LabelWriteOptions {
  // kUInt8 / kUInt16; anything else = the smallest type that holds the labels.
  enum class Type { kAuto, kUInt8, kUInt16 } type = Type::kAuto;
  bool compress = true;  // gzip for .nrrd/.mha (.nii.gz is always compressed, .nii never)
};

// Throws InputError for an unsupported extension (.mhd/.nhdr write two
// files and are refused), IoError if writing fails.
void write_label_map(const std::string& path, const LabelMap& labels,
                     const LabelWriteOptions& options = {});

// What a segmentation output path asks for, from its extension (case-insensitive):
// .png (2D), .nii/.nii.gz/.nrrd/.mha (label map), .dcm (DICOM SEG). InputError
// naming the path otherwise.
enum class SegmentationFormat { kPng, kLabelMap, kDicomSeg };
SegmentationFormat segmentation_format(const std::string& path);

struct SegmentationWriteOptions {
  // PNG: a mask image (0 / 255 for any label) instead of the label values.
  bool png_mask = false;
  LabelWriteOptions labels;
};

// The one writer every command and the server use for their results: `labels`,
// drawn on `source` (the volume as read from `source_path`, same grid), in the
// format the extension of `path` names. A DICOM SEG references the source
// series, so it needs a DICOM source (InputError otherwise). Atomic.
void write_segmentation(const std::string& path, const LabelMap& labels, const Volume& source,
                        const std::string& source_path, const SegmentationWriteOptions& options = {});

// Writes any Volume (scalar or RGB) as NIfTI/NRRD/MetaImage, atomically.
void write_image(const std::string& path, const Volume& volume, bool compress = true);

}  // namespace medicosam::io
