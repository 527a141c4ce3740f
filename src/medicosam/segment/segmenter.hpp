#pragma once
// The seam between segmentation logic (propagation, sessions, evaluation
// protocols, automatic masks) and the model: anything that turns prompts on
// one 2D image into masks. The SAM predictor is one; test doubles (an oracle
// that returns the true object under the prompt) and classical baselines
// (GrabCut) are others, so the logic can be verified independently of model
// quality and compared against other methods with the same prompts.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medicosam/predict/predictor.hpp"

namespace medicosam::segment {

class ImageSegmenter {
 public:
  virtual ~ImageSegmenter() = default;
  // Makes an 8-bit RGB image (HxWx3) current.
  virtual void set_image(const uint8_t* rgb, int height, int width) = 0;
  // Decodes prompts against the current image (see SamPredictor::predict_batch).
  virtual std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                         bool multimask_output) = 0;
  // Side of the square low-res logits this segmenter returns and accepts as
  // mask input (0 if it has none).
  virtual int low_res_size() const = 0;
  virtual std::string name() const = 0;
};

// ImageSegmenter backed by a SAM predictor (shared: a predictor may serve
// several users of the same model).
class SamImageSegmenter : public ImageSegmenter {
 public:
  explicit SamImageSegmenter(std::shared_ptr<predict::SamPredictor> predictor, std::string name = "");
  void set_image(const uint8_t* rgb, int height, int width) override;
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool multimask_output) override;
  int low_res_size() const override;
  std::string name() const override { return name_; }
  predict::SamPredictor& predictor() { return *predictor_; }

 private:
  std::shared_ptr<predict::SamPredictor> predictor_;
  std::string name_;
};

}  // namespace medicosam::segment
