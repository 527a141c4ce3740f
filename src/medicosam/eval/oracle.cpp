#include "medicosam/eval/oracle.hpp"

#include <algorithm>
#include <opencv2/imgproc.hpp>

#include "medicosam/core/error.hpp"

namespace medicosam::eval {
namespace {

double box_iou(const predict::Box& a, const predict::Box& b) {
  const double ix = std::max(0.0, std::min(a.x1, b.x1) - std::max(a.x0, b.x0));
  const double iy = std::max(0.0, std::min(a.y1, b.y1) - std::max(a.y0, b.y0));
  const double inter = ix * iy;
  const double uni = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

segment::BinaryMask erode(const segment::BinaryMask& m, int px) {
  if (px <= 0) return m;
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data())), dst;
  cv::erode(src, dst, cv::getStructuringElement(cv::MORPH_RECT, {3, 3}), {-1, -1}, px,
            cv::BORDER_CONSTANT, cv::Scalar(0));
  return segment::BinaryMask(m.height, m.width,
                             std::vector<uint8_t>(dst.data, dst.data + dst.total()));
}

// The mask on a low-res grid (longest side L, zero padded), as +-8 logits.
std::vector<float> low_res_logits(const segment::BinaryMask& m, int L) {
  std::vector<float> out(size_t(L) * L, -8.0f);
  const double scale = double(L) / std::max(m.height, m.width);
  for (int v = 0; v < L; ++v)
    for (int u = 0; u < L; ++u) {
      const int x = int((u + 0.5) / scale), y = int((v + 0.5) / scale);
      if (x < m.width && y < m.height && m.at(y, x)) out[size_t(v) * L + u] = 8.0f;
    }
  return out;
}

}  // namespace

OracleSegmenter::OracleSegmenter(OracleOptions options, std::string name)
    : options_(options), name_(std::move(name)) {}

void OracleSegmenter::set_image(const uint8_t* /*rgb*/, int height, int width) {
  height_ = height;
  width_ = width;
  ++images_set_;
  objects_.clear();
  calls_.clear();
}

void OracleSegmenter::set_ground_truth(const segment::BinaryMask& truth) {
  if (truth.height != height_ || truth.width != width_) {
    throw InputError("OracleSegmenter: ground truth " + std::to_string(truth.width) + "x" +
                     std::to_string(truth.height) + " does not match the image " +
                     std::to_string(width_) + "x" + std::to_string(height_));
  }
  objects_ = segment::connected_components(truth, 1);
  calls_.clear();
}

segment::BinaryMask OracleSegmenter::answer(const predict::Prompt& p) const {
  int best = -1;
  if (p.box) {
    double best_iou = 0;
    for (size_t i = 0; i < objects_.size(); ++i) {
      const auto b = segment::bounding_box(objects_[i]);
      const double v = b ? box_iou(*b, *p.box) : 0.0;
      if (v > best_iou) {
        best_iou = v;
        best = int(i);
      }
    }
  } else {
    int best_hits = 0;
    for (size_t i = 0; i < objects_.size(); ++i) {
      int hits = 0;
      for (const auto& pt : p.points) {
        const int x = int(pt.x), y = int(pt.y);
        if (pt.label == 1 && x >= 0 && y >= 0 && x < width_ && y < height_ && objects_[i].at(y, x))
          ++hits;
      }
      if (hits > best_hits) {
        best_hits = hits;
        best = int(i);
      }
    }
  }
  if (best < 0) return segment::BinaryMask(height_, width_);
  // Every correction round adds one negative click.
  int rounds = 0;
  for (const auto& pt : p.points) rounds += pt.label == 0;
  return erode(objects_[size_t(best)], std::max(0, options_.erosion - rounds));
}

std::vector<predict::Prediction> OracleSegmenter::predict_batch(
    const std::vector<predict::Prompt>& prompts, bool multimask_output) {
  if (height_ == 0) throw InputError("OracleSegmenter: no image set");
  calls_.push_back(prompts);
  std::vector<predict::Prediction> out;
  const size_t n = size_t(height_) * width_;
  const int L = options_.low_res_size;
  for (const auto& p : prompts) {
    predict::validate_prompt(p, {height_, width_}, L);
    const auto a = answer(p);
    predict::Prediction r;
    r.height = height_;
    r.width = width_;
    std::vector<segment::BinaryMask> masks;
    if (multimask_output) {
      masks = {segment::BinaryMask(height_, width_), a,
               segment::BinaryMask(height_, width_, std::vector<uint8_t>(n, 1))};
      r.iou_predictions = {0.2f, 0.9f, 0.5f};
    } else {
      masks = {a};
      r.iou_predictions = {0.9f};
    }
    r.num_masks = int(masks.size());
    for (const auto& m : masks) r.masks.insert(r.masks.end(), m.data.begin(), m.data.end());
    if (L > 0) {
      r.low_res_size = L;
      for (const auto& m : masks) {
        const auto l = low_res_logits(m, L);
        r.low_res_logits.insert(r.low_res_logits.end(), l.begin(), l.end());
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace medicosam::eval
