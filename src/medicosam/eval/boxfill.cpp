#include "medicosam/eval/boxfill.hpp"

#include <algorithm>
#include <cmath>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/single_mask.hpp"

namespace medicosam::eval {

void BoxFillSegmenter::set_image(const uint8_t* /*rgb*/, int height, int width) {
  if (height <= 0 || width <= 0) throw InputError("boxfill: empty image");
  height_ = height;
  width_ = width;
}

std::vector<uint8_t> BoxFillSegmenter::segment(const predict::Prompt& p) const {
  if (height_ == 0) throw InputError("boxfill: no image set");
  predict::validate_prompt(p, {height_, width_});
  if (!p.box) {
    throw InputError(
        "boxfill: the filled-box baseline needs a box prompt (it has no point start; evaluate it "
        "with --starts box)");
  }
  const int H = height_, W = width_;
  std::vector<uint8_t> out(size_t(H) * W, 0);
  // Pixel (x, y) has its centre at (x + 0.5, y + 0.5): inside when x0 <= x + 0.5 <= x1.
  const auto lo = [](double v, int n) { return std::clamp(int(std::ceil(v - 0.5)), 0, n); };
  const auto hi = [](double v, int n) { return std::clamp(int(std::floor(v - 0.5)) + 1, 0, n); };
  const int x0 = lo(p.box->x0, W), x1 = hi(p.box->x1, W);
  const int y0 = lo(p.box->y0, H), y1 = hi(p.box->y1, H);
  for (int y = y0; y < y1; ++y)
    std::fill(out.begin() + size_t(y) * W + x0, out.begin() + size_t(y) * W + std::max(x0, x1), 1);
  return out;
}

std::vector<predict::Prediction> BoxFillSegmenter::predict_batch(
    const std::vector<predict::Prompt>& prompts, bool /*multimask_output*/) {
  return single_mask_predictions(prompts, height_, width_,
                                 [this](const predict::Prompt& p) { return segment(p); });
}

}  // namespace medicosam::eval
