#pragma once
// Trivial baseline: the filled prompt box. Every pixel whose centre lies
// inside the box is foreground. With the evaluation's tight boxes (exclusive
// maximum, as micro_sam's regionprops boxes) that is exactly the object's
// bounding rectangle, so a model that "paints its box" scores the same as
// this baseline and a model worth using must score above it.
// Clicks and previous masks are ignored (correction rounds change nothing);
// a prompt without a box has no extent to fill and is an InputError (run the
// baseline with the box start only).
#include <string>
#include <vector>

#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

class BoxFillSegmenter : public segment::ImageSegmenter {
 public:
  explicit BoxFillSegmenter(std::string name = "boxfill") : name_(std::move(name)) {}
  void set_image(const uint8_t* rgb, int height, int width) override;
  // One mask per prompt (also with multimask_output), iou_predictions {1}.
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool multimask_output) override;
  int low_res_size() const override { return 0; }
  std::string name() const override { return name_; }

  // The filled box for one prompt (H x W, 0/1).
  std::vector<uint8_t> segment(const predict::Prompt& prompt) const;

 private:
  std::string name_;
  int height_ = 0, width_ = 0;
};

}  // namespace medicosam::eval
