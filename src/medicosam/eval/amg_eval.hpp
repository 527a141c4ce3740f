#pragma once
// Evaluation of automatic mask generation (SAM's AMG) on a 2D dataset:
// does some automatic mask find each ground-truth object?
//
//   objects: per image, the connected components (8-connectivity) of at
//   least `min_object_size` px of each instance id of instances/<stem>.<ext>
//   when the dataset folder has one (organs, lesions, cardiac structures as
//   separate objects), else of each class mask of the sample (Dataset2D);
//   an object is matched when an automatic mask has IoU >= `match_iou` with it;
//   per dataset and setting: images, mean masks per image, object match rate
//   (matched / all objects), image match rate (images whose largest object is
//   matched, over images with an object), mean best IoU of the largest object.
//
// The AMG runs once per image with the loosest thresholds of all settings
// (segment::generate_candidates) and every setting (predicted-IoU threshold,
// stability threshold) is then applied to the same candidates exactly as SAM
// does it (segment::select_candidates: thresholds, then box NMS, then NMS
// across crops), so a sweep over a grid costs one AMG run per image.
// min_mask_region_area is not supported here (it needs every mask kept).
//
// Report folder (write_amg_report): summary.md, summary.json, per_image.csv
// (setting in effect), sweep.csv (dataset x setting).
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/eval/dataset.hpp"
#include "medicosam/eval/report.hpp"
#include "medicosam/segment/amg.hpp"

namespace medicosam::eval {

struct AmgSetting {
  double pred_iou_thresh = 0.88;
  double stability_score_thresh = 0.95;
};

struct AmgEvalOptions {
  segment::AmgOptions amg;          // the setting in effect (its thresholds are settings()[0])
  std::vector<AmgSetting> sweep;    // further settings evaluated from the same candidates
  int min_object_size = 20;         // px, as the interactive protocol
  double match_iou = 0.5;           // an object is matched by a mask with IoU >= this
  bool use_instances = true;        // instances/<stem> when the dataset folder has it
  bool progress = true;
  // The setting in effect first, then the sweep (duplicates of it dropped).
  std::vector<AmgSetting> settings() const;
};

// Candidates of one image: runs the AMG's first stage with `options` and calls
// `visit` per candidate (segment::generate_candidates). Returns the crop boxes.
using AmgCandidateSource = std::function<std::vector<std::array<int, 4>>(
    const io::RGB8Image& image, const segment::AmgOptions& options, const segment::AmgCandidateVisitor& visit)>;
// The SAM predictor as a candidate source (the predictor's image is replaced).
AmgCandidateSource sam_candidate_source(predict::SamPredictor& predictor);

// The objects of image i of `dataset` (see above), given its loaded sample.
std::vector<segment::BinaryMask> amg_objects(const Dataset2D& dataset, size_t i, const Sample2D& sample,
                                             int min_object_size, bool use_instances = true);

struct AmgImageResult {
  std::string image;
  int n_objects = 0;
  int64_t largest_object_px = 0;
  int candidates = 0;                   // masks after the loosest thresholds, before NMS
  std::vector<int> masks;               // per setting: masks kept
  std::vector<int> matched;             // per setting: objects matched
  std::vector<char> largest_matched;    // per setting
  std::vector<double> largest_best_iou; // per setting: best IoU of a kept mask with the largest object
  double seconds = 0;
};

struct AmgSettingSummary {
  AmgSetting setting;
  int images = 0, images_with_objects = 0, objects = 0;
  double mean_masks = 0, object_match_rate = 0, image_match_rate = 0, mean_largest_best_iou = 0;
};

struct AmgEvalResult {
  std::string method, dataset, split;
  std::vector<AmgSetting> settings;  // [0] = in effect
  std::vector<AmgImageResult> images;
  double seconds = 0;
  std::vector<AmgSettingSummary> summarize() const;  // one per setting
};

AmgEvalResult run_amg_eval(const AmgCandidateSource& source, const std::string& method, const Dataset2D& dataset,
                           const AmgEvalOptions& options);

// The selection rule for the thresholds (on val splits only): among the
// settings whose mean masks per image is <= `max_mean_masks` on every dataset,
// the one with the highest object match rate averaged over the datasets; ties
// (within 1e-9) go to the higher image match rate, then to fewer masks.
// nullopt when no setting fits the cap. Index into the settings.
struct AmgSelection {
  size_t index = 0;
  AmgSetting setting;
  double object_match_rate = 0, image_match_rate = 0, mean_masks = 0;  // averaged over datasets
  double min_image_match_rate = 0;                                    // worst dataset
};
std::optional<AmgSelection> select_amg_setting(const std::vector<AmgEvalResult>& results,
                                               double max_mean_masks);
// "maximise the object match rate (mean over datasets) with mean masks/image <= N on every dataset; ..."
std::string amg_selection_rule(double max_mean_masks);

struct AmgReportOptions {
  ReportOptions report;
  double max_mean_masks = 50;  // the selection rule's cap (sweeps)
  std::string thresholds_note; // where the thresholds in effect came from
};

// Writes summary.md, summary.json, per_image.csv and (with several settings)
// sweep.csv atomically into `out_dir`; `results` are per (model, dataset).
void write_amg_report(const std::string& out_dir, const std::vector<AmgEvalResult>& results,
                      const AmgEvalOptions& options, const AmgReportOptions& report);

// "0,0.5,0.7" -> numbers in [0, 1]; InputError naming `option` otherwise.
std::vector<double> parse_threshold_list(const std::string& s, const std::string& option);

}  // namespace medicosam::eval
