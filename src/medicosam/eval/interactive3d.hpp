#pragma once
// MedicoSAM's 3D interactive evaluation (REFERENCE.md section 1.6, micro_sam
// `segment_slices_from_ground_truth` / `run_multi_dimensional_segmentation_
// grid_search`), over any ImageSegmenter:
//
//   per object (each label value of the ground truth): its middle slice
//   floor((z_min + z_max) / 2) along the slice axis; objects with fewer than
//   `min_size` px there are skipped (and left out of the truth); the middle
//   slice is prompted with one random positive + one random negative point
//   (negatives from the box ring grown by 10 px, micro_sam's
//   PointAndBoxPromptGenerator) or the tight box, single mask output; then
//   segment_mask_in_volume (segment/propagation.hpp) carries it through the
//   volume with a projection mode, IoU threshold and box extension; later
//   objects overwrite earlier ones; per class Dice / NSD / HD95 on the voxel
//   grid with its spacing, averaged over the classes = the volume's score.
//
// Two settings are reported: a fixed one (default: the annotator's defaults,
// what a user gets) and, optionally, the paper's per-volume grid search over
// iou_threshold x projection x box_extension, whose best Dice per volume is
// kept. That grid number is an oracle (it looks at the truth to choose the
// parameters) and is labelled as such in reports.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/eval/interactive2d.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/segment/propagation.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

// One volume and its label map.
struct VolumeEntry {
  std::string name;
  std::string image_path;
  std::string label_path;
};

// 3D datasets: image/label pairs found in DIR and its sub-folders (one level):
// `<case>_label.<ext>` or `<case>_seg.<ext>` pairs with `<case>_image.<ext>` or
// `<case>.<ext>`; in a folder with a single image, every label map pairs with
// it (case = label name). Formats: NIfTI, NRRD, MetaImage. The same case in
// two folders (e.g. nrrd/ and nifti/ copies) is taken once, from the first
// folder in sorted order. split.json as in 2D (without it: all cases).
class Dataset3D {
 public:
  static Dataset3D open(const std::string& dir, const std::string& split = "test",
                        int64_t limit = 0);
  static Dataset3D from_entries(std::string name, std::vector<VolumeEntry> entries);
  const std::string& name() const { return name_; }
  const std::string& split_description() const { return split_description_; }
  size_t size() const { return entries_.size(); }
  const VolumeEntry& entry(size_t i) const { return entries_.at(i); }

 private:
  std::string name_, split_description_;
  std::vector<VolumeEntry> entries_;
};

// One propagation setting.
struct PropagationSetting {
  segment::Projection projection = segment::Projection::kSinglePoint;
  double iou_threshold = 0.5;
  double box_extension = 0.05;
  std::string to_string() const;  // "single_point, iou 0.5, ext 0.05"
};

enum class GridSearch { kNone, kSmall, kFull };
// "none" | "small" | "full"; InputError otherwise.
GridSearch parse_grid_search(const std::string& s);
// The settings of a grid: full = micro_sam's default grid, iou {0.5..0.9 step
// 0.1} x 5 projections x box_extension {0..0.25 step 0.025} (275); small =
// iou {0.5, 0.7, 0.9} x 5 projections x {0, 0.1, 0.25} (45); none = {}.
std::vector<PropagationSetting> grid_settings(GridSearch g);

struct Interactive3DOptions {
  std::vector<StartPrompt> starts{StartPrompt::kPoint, StartPrompt::kBox};
  io::Axis axis = io::Axis::kAxial;
  // micro_sam evaluates raw volumes converted to uint8 once (min-max over the volume).
  io::Normalization normalization = io::Normalization::minmax(io::NormalizationScope::kVolume);
  int min_size = 10;         // px of an object in its middle slice
  int point_dilation = 10;   // ring for the negative start point
  PropagationSetting fixed;  // the annotator defaults
  GridSearch grid = GridSearch::kNone;
  uint64_t seed = 0;
  double nsd_tolerance_mm = 2.0;
  bool progress = true;
};

struct ClassResult3D {
  std::string name;  // "label_<v>"
  Metrics metrics;
};

// One volume x start prompt.
struct VolumeResult {
  std::string dataset, volume;
  StartPrompt start = StartPrompt::kBox;
  int n_objects = 0;                   // label values in the truth
  int n_skipped = 0;                   // below min_size in their middle slice
  std::vector<ClassResult3D> classes;  // fixed setting
  Metrics fixed;                       // mean over classes
  // Grid search (oracle): best setting by mean Dice and its metrics.
  std::optional<PropagationSetting> best_setting;
  Metrics best;
  int grid_size = 0;
  int decoded_slices = 0;  // decoder calls, all settings
  double seconds = 0.0;
};

struct Interactive3DResult {
  std::string method, dataset, split;
  Interactive3DOptions options;
  std::vector<VolumeResult> volumes;
  double encode_seconds = 0.0;
  double wall_seconds = 0.0;
};

// One volume (all start prompts). `labels` must be on `volume`'s grid.
// `on_result` (if set) sees each start prompt's result when it is done.
std::vector<VolumeResult> run_interactive3d_volume(
    segment::ImageSegmenter& segmenter, const io::Volume& volume, const io::LabelMap& labels,
    const std::string& dataset, const std::string& name, const Interactive3DOptions& options,
    double* encode_seconds = nullptr,
    const std::function<void(const VolumeResult&)>& on_result = {});

Interactive3DResult run_interactive3d(segment::ImageSegmenter& segmenter, const Dataset3D& dataset,
                                      const Interactive3DOptions& options);

// Means over volumes per start prompt (volumes whose objects were all skipped
// are left out).
struct Interactive3DSummary {
  StartPrompt start = StartPrompt::kBox;
  int n_volumes = 0;
  double dice = 0, nsd = 0, hd95 = 0;  // fixed setting
  int hd95_undefined = 0;
  std::optional<double> grid_dice;  // grid-search oracle
};
std::vector<Interactive3DSummary> summarize(const Interactive3DResult& result);

}  // namespace medicosam::eval
