#pragma once
// Shared by the classical baselines (GrabCut, filled box): one mask per
// prompt as a Prediction with a predicted IoU of 1 (they have no multimask
// output and no IoU estimate).
#include <utility>
#include <vector>

#include "medicosam/predict/predictor.hpp"

namespace medicosam::eval {

template <class SegmentFn>
std::vector<predict::Prediction> single_mask_predictions(
    const std::vector<predict::Prompt>& prompts, int height, int width, SegmentFn&& segment) {
  std::vector<predict::Prediction> out;
  out.reserve(prompts.size());
  for (const auto& p : prompts) {
    predict::Prediction r;
    r.height = height;
    r.width = width;
    r.num_masks = 1;
    r.masks = segment(p);
    r.iou_predictions = {1.0f};
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace medicosam::eval
