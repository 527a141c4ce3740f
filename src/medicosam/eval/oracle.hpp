#pragma once
// Test doubles that know the truth: they return the true object under a
// prompt, so the protocols can be checked independently of model quality
// (an exact oracle must reach Dice 1.0; an eroding oracle must improve with
// corrective clicks).
#include <string>
#include <vector>

#include "medicosam/eval/interactive2d.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

struct OracleOptions {
  // The returned object is eroded by (erosion - number of negative points)
  // pixels, never negative: an imperfect answer that every correction round
  // (one positive + one negative click) improves by one pixel.
  int erosion = 0;
  // > 0: return low-res logits of this side (and accept them as mask input),
  // so the logit feedback path is exercised.
  int low_res_size = 0;
};

// Answers with a connected component (8-connectivity) of the current ground
// truth: for a box, the component whose bounding box has the highest IoU
// with it; else the component holding the most positive points (none: an
// empty mask). With multimask output three masks come back: an empty one, the
// answer (highest predicted IoU) and the whole image, so callers that do not
// pick the best mask are caught.
class OracleSegmenter : public segment::ImageSegmenter, public GroundTruthAware {
 public:
  explicit OracleSegmenter(OracleOptions options = {}, std::string name = "oracle");
  void set_image(const uint8_t* rgb, int height, int width) override;
  void set_ground_truth(const segment::BinaryMask& truth) override;
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool multimask_output) override;
  int low_res_size() const override { return options_.low_res_size; }
  std::string name() const override { return name_; }

  // Every batch of prompts received since the last set_ground_truth (tests
  // check what the protocol sends).
  const std::vector<std::vector<predict::Prompt>>& calls() const { return calls_; }
  int images_set() const { return images_set_; }

 private:
  segment::BinaryMask answer(const predict::Prompt& p) const;
  OracleOptions options_;
  std::string name_;
  int height_ = 0, width_ = 0;
  int images_set_ = 0;
  std::vector<segment::BinaryMask> objects_;
  std::vector<std::vector<predict::Prompt>> calls_;
};

}  // namespace medicosam::eval
