#include "medicosam/eval/grabcut.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/single_mask.hpp"

namespace medicosam::eval {

GrabCutSegmenter::GrabCutSegmenter(GrabCutOptions options, std::string name)
    : options_(options), name_(std::move(name)) {
  if (options_.iterations < 1) throw InputError("GrabCut: iterations must be >= 1");
  if (options_.max_side < 0 || (options_.max_side > 0 && options_.max_side < 16)) {
    throw InputError("GrabCut: max_side must be 0 (full resolution) or >= 16");
  }
  if (options_.roi_margin < 0) throw InputError("GrabCut: roi_margin must be >= 0");
  if (options_.point_radius < 0) throw InputError("GrabCut: point_radius must be >= 0");
  if (!(options_.point_prior > 0 && options_.point_prior <= 1))
    throw InputError("GrabCut: point_prior must be in (0, 1]");
}

void GrabCutSegmenter::set_image(const uint8_t* rgb, int height, int width) {
  if (height <= 0 || width <= 0) throw InputError("GrabCut: empty image");
  height_ = height;
  width_ = width;
  cv::Mat src(height, width, CV_8UC3, const_cast<uint8_t*>(rgb)), bgr;
  cv::cvtColor(src, bgr, cv::COLOR_RGB2BGR);
  image_.assign(bgr.data, bgr.data + bgr.total() * 3);
}

std::vector<uint8_t> GrabCutSegmenter::segment(const predict::Prompt& p) const {
  if (height_ == 0) throw InputError("GrabCut: no image set");
  predict::validate_prompt(p, {height_, width_});
  const int H = height_, W = width_;
  std::vector<uint8_t> out(size_t(H) * W, 0);
  std::vector<predict::Point> pos, neg;
  for (const auto& pt : p.points) (pt.label == 1 ? pos : neg).push_back(pt);
  if (!p.box && pos.empty()) return out;  // nothing says where the object is

  // Core region: the box, or a prior square around the positive clicks.
  double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
  if (p.box) {
    x0 = p.box->x0, y0 = p.box->y0, x1 = p.box->x1, y1 = p.box->y1;
  }
  for (const auto& pt : pos) {
    x0 = std::min(x0, pt.x), y0 = std::min(y0, pt.y), x1 = std::max(x1, pt.x + 1),
    y1 = std::max(y1, pt.y + 1);
  }
  if (!p.box) {
    const double half = options_.point_prior * std::min(H, W) / 2.0;
    x0 -= half, y0 -= half, x1 += half, y1 += half;
  }
  const int cx0 = std::clamp(int(std::floor(x0)), 0, W - 1),
            cy0 = std::clamp(int(std::floor(y0)), 0, H - 1);
  const int cx1 = std::clamp(std::max(int(std::ceil(x1)), cx0 + 1), 1, W);
  const int cy1 = std::clamp(std::max(int(std::ceil(y1)), cy0 + 1), 1, H);
  // Without a box the extent is a guess: give the colour models a wider view.
  const double margin = p.box ? options_.roi_margin : std::max(1.0, options_.roi_margin);
  const int mx = std::max(10, int(std::lround(margin * (cx1 - cx0))));
  const int my = std::max(10, int(std::lround(margin * (cy1 - cy0))));
  const cv::Rect roi(cv::Point(std::max(0, cx0 - mx), std::max(0, cy0 - my)),
                     cv::Point(std::min(W, cx1 + mx), std::min(H, cy1 + my)));

  const double scale =
      options_.max_side > 0
          ? std::min(1.0, double(options_.max_side) / std::max(roi.width, roi.height))
          : 1.0;
  const int sw = std::max(1, int(std::lround(roi.width * scale))),
            sh = std::max(1, int(std::lround(roi.height * scale)));
  const double sx = double(sw) / roi.width, sy = double(sh) / roi.height;
  cv::Mat full(H, W, CV_8UC3, const_cast<uint8_t*>(image_.data()));
  cv::Mat img;
  if (sw != roi.width || sh != roi.height) {
    cv::resize(full(roi), img, cv::Size(sw, sh), 0, 0, cv::INTER_AREA);
  } else {
    img = full(roi).clone();
  }

  // Trimap on the (scaled) ROI.
  cv::Mat trimap(sh, sw, CV_8UC1);
  const uint8_t outside = p.box ? uint8_t(cv::GC_BGD) : uint8_t(cv::GC_PR_BGD);
  for (int v = 0; v < sh; ++v) {
    const double oy = roi.y + (v + 0.5) / sy;
    for (int u = 0; u < sw; ++u) {
      const double ox = roi.x + (u + 0.5) / sx;
      const bool in_core = ox >= cx0 && ox < cx1 && oy >= cy0 && oy < cy1;
      trimap.at<uint8_t>(v, u) = in_core ? uint8_t(cv::GC_PR_FGD) : outside;
    }
  }
  if (cv::countNonZero(trimap == cv::GC_BGD) + cv::countNonZero(trimap == cv::GC_PR_BGD) < 10) {
    // The prompt covers the whole image: let the frame be probable background.
    cv::rectangle(trimap, cv::Rect(0, 0, sw, sh), cv::Scalar(cv::GC_PR_BGD), 1);
  }
  const int r = std::max(1, int(std::lround(options_.point_radius * std::min(sx, sy))));
  auto paint = [&](const std::vector<predict::Point>& pts, uint8_t value) {
    for (const auto& pt : pts) {
      const double u = (pt.x + 0.5 - roi.x) * sx - 0.5, v = (pt.y + 0.5 - roi.y) * sy - 0.5;
      if (u < -r || v < -r || u > sw + r || v > sh + r) continue;
      cv::circle(trimap, cv::Point(int(std::lround(u)), int(std::lround(v))),
                 options_.point_radius > 0 ? r : 0, cv::Scalar(value), -1);
    }
  };
  paint(neg, cv::GC_BGD);
  paint(pos, cv::GC_FGD);

  cv::Mat fg_small = (trimap == cv::GC_FGD) | (trimap == cv::GC_PR_FGD);
  const int n_fg = cv::countNonZero(fg_small), n_bg = int(trimap.total()) - n_fg;
  if (n_fg >= 10 && n_bg >= 10) {  // GrabCut's GMMs need samples of both
    try {
      cv::Mat bgd_model, fgd_model;
      // GrabCut seeds its GMMs with k-means on OpenCV's thread-local RNG: fix
      // its state so a prompt always gives the same mask, whatever ran before.
      cv::RNG& rng = cv::theRNG();
      const uint64_t saved = rng.state;
      rng.state = kGrabCutRngState;
      try {
        cv::grabCut(img, trimap, cv::Rect(), bgd_model, fgd_model, options_.iterations,
                    cv::GC_INIT_WITH_MASK);
      } catch (...) {
        rng.state = saved;
        throw;
      }
      rng.state = saved;
      fg_small = (trimap == cv::GC_FGD) | (trimap == cv::GC_PR_FGD);
    } catch (const cv::Exception&) {
      // Degenerate colour statistics: keep the prior (the trimap's foreground).
    }
  }
  cv::Mat fg;
  if (sw != roi.width || sh != roi.height) {
    cv::resize(fg_small, fg, roi.size(), 0, 0, cv::INTER_LINEAR);
    fg = fg > 127;
  } else {
    fg = fg_small;
  }
  for (int y = 0; y < roi.height; ++y) {
    const uint8_t* row = fg.ptr<uint8_t>(y);
    uint8_t* dst = out.data() + size_t(roi.y + y) * W + roi.x;
    for (int x = 0; x < roi.width; ++x) dst[x] = row[x] != 0;
  }
  return out;
}

std::vector<predict::Prediction> GrabCutSegmenter::predict_batch(
    const std::vector<predict::Prompt>& prompts, bool /*multimask_output*/) {
  return single_mask_predictions(prompts, height_, width_,
                                 [this](const predict::Prompt& p) { return segment(p); });
}

}  // namespace medicosam::eval
