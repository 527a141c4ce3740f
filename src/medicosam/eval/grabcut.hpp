#pragma once
// Classical baseline: OpenCV GrabCut (Rother et al. 2004, iterated graph cuts
// on colour GMMs) behind the ImageSegmenter interface, so it runs through the
// same protocols, with the same prompts, as the models.
//
// How prompts become GrabCut's trimap (per object, one cv::grabCut call on a
// region of interest, ROI, around the prompt):
//  - box: inside = probably foreground, outside = background (GrabCut's own
//    rectangle initialisation);
//  - points without a box: GrabCut needs an extent a point does not give, so
//    a prior square of side `point_prior` x the shorter image side around the
//    positive points is "probably foreground" and the rest of the ROI
//    "probably background". This start is weak by construction: it shows
//    what clicks alone give a colour model, not a fair point-prompt method;
//  - clicks: positive points mark discs of `point_radius` px as sure
//    foreground, negative points as sure background;
//  - the ROI is the box grown by `roi_margin` of its size (the prior square
//    by at least its own size), at least 10 px, on each side; outside it is
//    background. It is
//    downscaled so its longer side is at most `max_side` px (speed); the
//    result is upscaled back (bilinear on the 0/1 mask, threshold 0.5).
// GrabCut is stateless here: every call starts from the prompt (micro_sam's
// protocol re-sends all clicks each round), and its k-means seeding is fixed,
// so a prompt always gives the same mask. Previous masks (mask_input) are ignored; low_res_size()
// is 0.
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

// The state of OpenCV's RNG set before every cv::grabCut call (its k-means
// initialisation draws from it), so results do not depend on what ran before.
constexpr uint64_t kGrabCutRngState = 0x9e3779b97f4a7c15ULL;

struct GrabCutOptions {
  int iterations = 3;        // cv::grabCut iterations per call
  int max_side = 256;        // ROI longer side for the graph cut (0 = full resolution)
  double roi_margin = 0.25;  // ROI = prompt region grown by this fraction of its size
  int point_radius = 3;      // px (image scale) of the sure-fg/bg discs around clicks
  double point_prior = 0.2;  // points only: prior square side / shorter image side
};

class GrabCutSegmenter : public segment::ImageSegmenter {
 public:
  explicit GrabCutSegmenter(GrabCutOptions options = {}, std::string name = "grabcut");
  void set_image(const uint8_t* rgb, int height, int width) override;
  // One mask per prompt (also with multimask_output), iou_predictions {1}.
  // Throws InputError for prompts outside the image or without points/box.
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool multimask_output) override;
  int low_res_size() const override { return 0; }
  std::string name() const override { return name_; }
  const GrabCutOptions& options() const { return options_; }

  // The mask for one prompt (H x W, 0/1).
  std::vector<uint8_t> segment(const predict::Prompt& prompt) const;

 private:
  GrabCutOptions options_;
  std::string name_;
  int height_ = 0, width_ = 0;
  std::vector<uint8_t> image_;  // BGR, as OpenCV wants it
};

}  // namespace medicosam::eval
