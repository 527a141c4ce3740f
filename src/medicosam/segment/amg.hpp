#pragma once
// Automatic mask generation (Segment Anything's SamAutomaticMaskGenerator;
// micro_sam's AutomaticMaskGenerator with the same defaults): a grid of
// single-point prompts decoded in batches with 3 masks each, filtered by
// predicted IoU and stability score, box non-maximum suppression, optional
// crop layers (each crop encoded separately, NMS across crops preferring
// smaller crops), optional removal of small holes and islands, and an
// instance label map (larger masks painted first, smaller ones on top).
#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::segment {

struct AmgOptions {
  int points_per_side = 32;
  int points_per_batch = 64;
  double pred_iou_thresh = 0.88;         // keep predicted IoU > this (0 disables)
  double stability_score_thresh = 0.95;  // keep stability >= this (0 disables)
  double stability_score_offset = 1.0;
  double box_nms_thresh = 0.7;
  int crop_n_layers = 0;
  double crop_nms_thresh = 0.7;
  double crop_overlap_ratio = 512.0 / 1500.0;
  int crop_n_points_downscale_factor = 1;
  int min_mask_region_area = 0;  // > 0: remove smaller holes and islands, then NMS again
  double mask_threshold = 0.0;
};

struct AmgMask {
  BinaryMask mask;            // full image
  std::array<int, 4> bbox{};  // XYWH, inclusive max (w = x_max - x_min), as SAM reports it
  int64_t area = 0;
  double predicted_iou = 0;
  double stability_score = 0;
  predict::Point point;           // the prompt, image pixels
  std::array<int, 4> crop_box{};  // XYXY of the crop it came from
};

// SAM's build_point_grid: n x n points ((i + 0.5) / n), x fastest, in [0, 1].
std::vector<std::array<double, 2>> point_grid(int n_per_side);
// SAM's generate_crop_boxes: the full image, then 2^l x 2^l overlapping crops per layer l.
std::vector<std::array<int, 4>> crop_boxes(int height, int width, int n_layers,
                                           double overlap_ratio,
                                           std::vector<int>* layer_of_box = nullptr);

// Greedy NMS as torchvision's batched_nms with one category: boxes XYXY
// (float), stable order by descending score, suppress IoU > threshold.
// Returns kept indices in keep order.
std::vector<size_t> box_nms(const std::vector<std::array<float, 4>>& boxes,
                            const std::vector<float>& scores, double iou_threshold);

// One decoded mask before SAM's post-processing (the two stages below are
// what generate_masks runs; the AMG evaluation sweeps thresholds over one
// set of candidates with them).
struct AmgCandidate {
  double predicted_iou = 0;
  double stability_score = 0;
  std::array<int, 4> box{};  // XYXY image pixels, inclusive max
  int crop = 0;              // index into the crop boxes
  predict::Point point;      // the prompt, image pixels
};
// Called for each candidate with its mask in crop coordinates (0/1, crop
// height x crop width, row-major) and the crop box (XYXY).
using AmgCandidateVisitor =
    std::function<void(const AmgCandidate&, const uint8_t* crop_mask, const std::array<int, 4>& crop_box)>;

// Stage 1: decodes the point grid of every crop and passes each mask whose
// predicted IoU and stability pass `options`' thresholds (0 disables a
// threshold) and that does not touch an inner crop edge to `visit`, in SAM's
// order (crop, batch, point, mask). Returns the crop boxes.
std::vector<std::array<int, 4>> generate_candidates(predict::SamPredictor& predictor, const uint8_t* rgb,
                                                    int height, int width, const AmgOptions& options,
                                                    const AmgCandidateVisitor& visit, bool progress = false);

// Stage 2: the candidates SAM keeps under `options`: the predicted-IoU and
// stability thresholds, box NMS within each crop (by predicted IoU), then NMS
// across crops preferring smaller crops. Indices into `candidates` in SAM's
// output order. (min_mask_region_area needs the masks: generate_masks.)
std::vector<size_t> select_candidates(const std::vector<AmgCandidate>& candidates,
                                      const std::vector<std::array<int, 4>>& crop_boxes,
                                      const AmgOptions& options);

// Runs the generator on an 8-bit RGB image (HxWx3). `predictor`'s current
// image is replaced. Masks come in SAM's output order.
std::vector<AmgMask> generate_masks(predict::SamPredictor& predictor, const uint8_t* rgb,
                                    int height, int width, const AmgOptions& options = {},
                                    bool progress = false);

// Instance label map (H*W): masks sorted by area descending, painted in that
// order (smaller masks overwrite larger ones), masks smaller than
// `min_object_size` skipped, ids 1..N consecutive in painting order among the
// masks that keep at least one pixel.
std::vector<uint16_t> masks_to_label_map(const std::vector<AmgMask>& masks, int height, int width,
                                         int64_t min_object_size = 0);

// Model-specific AMG defaults. A checkpoint may carry them in its safetensors
// metadata under kAmgMetadataKey, as a JSON object string:
//   {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.8,
//    "calibrated_on": "...", ...any further fields (kept, shown by info)}
// Commands use them when the user does not pass the thresholds; explicit
// options always win; without the key SAM's defaults (0.88 / 0.95) apply.
inline constexpr const char* kAmgMetadataKey = "medicosam.amg";

struct AmgDefaults {
  double pred_iou_thresh = 0.88;
  double stability_score_thresh = 0.95;
  bool from_checkpoint = false;
  nlohmann::json record;  // the parsed metadata object (null without the key)
  // "checkpoint metadata medicosam.amg (calibrated on ...)" or "SAM's defaults".
  std::string describe() const;
};

// From checkpoint metadata (a JSON object of strings, as safetensors
// __metadata__ / LoadedSam::metadata). Missing key: SAM's defaults. A value
// that is not such an object, or thresholds outside [0, 1]: CheckpointError
// naming `source`.
AmgDefaults amg_defaults_from_metadata(const nlohmann::json& metadata, const std::string& source = "checkpoint");
// Reads only the header of a .safetensors checkpoint; other formats carry no
// AMG defaults (SAM's). Errors as amg_defaults_from_metadata; IoError if the
// file cannot be read.
AmgDefaults read_amg_defaults(const std::string& checkpoint_path);
// The metadata value for the thresholds plus `extra` fields (an object).
// InputError for thresholds outside [0, 1].
std::string amg_metadata_value(double pred_iou_thresh, double stability_score_thresh,
                               const nlohmann::json& extra = nlohmann::json::object());

}  // namespace medicosam::segment
