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

}  // namespace medicosam::segment
