#pragma once
// 2D evaluation datasets on disk: a folder with images/ and ground truth, and
// optionally split.json {"train": [...], "val": [...], "test": [...]} listing
// image stems. Ground truth per image, first match wins:
//   masks/<stem>.<ext>       label map: 0 background; a binary mask (only 255
//                            or only 1) is one class "foreground", other
//                            values v are classes "class_<v>"
//   instances/<stem>.<ext>   instance map: every instance > 0 is class "foreground"
//                            (with Dataset2DOptions::instance_classes: read first,
//                            each id a class "class_<id>")
//   masks/<stem>_<class>_<k>.<ext>
//                            one file per instance (SAM-Med2D layout): the
//                            files of one <class> together are that class
// Images without any ground truth are left out (counted in skipped()).
//
// A sample is what the protocols consume: the image as 8-bit RGB (io's
// normalisation, default min-max as micro_sam/MedicoSAM evaluate) and one
// binary mask per class on the same grid.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::eval {

struct ClassMask {
  std::string name;
  segment::BinaryMask mask;
};

struct Sample2D {
  std::string name;  // image stem
  io::RGB8Image rgb;
  std::vector<ClassMask> classes;  // non-empty masks only, sorted by name
  std::array<double, 2> spacing{
      1.0, 1.0};  // mm per pixel (x, y); 1 for raster images (no physical size)
};

// Where one image and its ground truth live.
struct ImageEntry {
  std::string name;
  std::string image_path;
  enum class Truth { kLabelMap, kInstanceMap, kInstanceFiles, kClassMap } truth = Truth::kLabelMap;
  // kClassMap: every value v > 0 is class "class_<v>", also when it is the only one.
  std::string truth_path;  // kLabelMap, kInstanceMap, kClassMap
  std::vector<std::pair<std::string, std::string>> class_files;  // kInstanceFiles: (class, path)
};

struct Dataset2DOptions {
  // A key of split.json, or "all". Without split.json every image is used
  // (split_description() says so).
  std::string split = "test";
  int64_t limit = 0;                // first N images of the split (0 = all)
  io::Normalization normalization;  // default min-max (micro_sam / MedicoSAM evaluation)
  // 0: evaluate at the image's own size (the predictor does the SAM resize).
  // S > 0: resize image (bilinear) and masks (nearest) directly to S x S first,
  // as the MedicoSAM paper's preprocessing does with S = 1024.
  int resize_to = 0;
  // Read instances/<stem> first, as a label map whose values are classes
  // ("class_<v>"): for datasets whose instance ids mean the same structure in
  // every image (CHAOS organs, MS-CMRSeg cardiac structures), so each
  // structure is its own class instead of one merged "foreground" from the
  // union in masks/. Not for per-image lesion numbers (BUSI).
  bool instance_classes = false;
};

class Dataset2D {
 public:
  // Throws InputError for a missing folder, no images/, an unknown split, or
  // split entries without an image.
  static Dataset2D open(const std::string& dir, const Dataset2DOptions& options = {});
  // A dataset from explicit entries (trainer validation sets, tests).
  static Dataset2D from_entries(std::string name, std::vector<ImageEntry> entries,
                                const Dataset2DOptions& options = {});

  const std::string& name() const { return name_; }  // folder name
  const std::string& dir() const { return dir_; }
  // "test (54 of 54 images with ground truth)", "all (no split.json; 4 of 4
  // images with ground truth; 1 without)", ...
  const std::string& split_description() const { return split_description_; }
  const Dataset2DOptions& options() const { return options_; }
  size_t size() const { return entries_.size(); }
  const ImageEntry& entry(size_t i) const { return entries_.at(i); }
  // Images of the split without ground truth (left out).
  const std::vector<std::string>& skipped() const { return skipped_; }

  // Reads image i and its ground truth. Throws InputError / FormatError naming
  // the file for unreadable files or masks of another size than the image.
  Sample2D load(size_t i) const;

 private:
  std::string name_, dir_, split_description_;
  Dataset2DOptions options_;
  std::vector<ImageEntry> entries_;
  std::vector<std::string> skipped_;
};

// Builds a sample from an RGB image and class masks (checks sizes), applying
// `resize_to` like Dataset2D::load.
Sample2D make_sample(std::string name, io::RGB8Image rgb, std::vector<ClassMask> classes,
                     int resize_to = 0);

}  // namespace medicosam::eval
