#include "medicosam/segment/segmenter.hpp"

#include <filesystem>

namespace medicosam::segment {

SamImageSegmenter::SamImageSegmenter(std::shared_ptr<predict::SamPredictor> predictor, std::string name)
    : predictor_(std::move(predictor)), name_(std::move(name)) {
  if (name_.empty()) name_ = std::filesystem::path(predictor_->model().path).stem().string();
}

void SamImageSegmenter::set_image(const uint8_t* rgb, int height, int width) {
  predictor_->set_image(rgb, height, width, 3);
}

std::vector<predict::Prediction> SamImageSegmenter::predict_batch(const std::vector<predict::Prompt>& prompts,
                                                                  bool multimask_output) {
  return predictor_->predict_batch(prompts, multimask_output);
}

int SamImageSegmenter::low_res_size() const { return predictor_->model().low_res_size; }

}  // namespace medicosam::segment
