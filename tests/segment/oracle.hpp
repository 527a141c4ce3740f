#pragma once
// Oracle test doubles: segmenters that return the TRUE object under a prompt,
// so propagation, session and AMG logic can be checked independently of model
// quality. The truth is a label stack (one label image per slice); the answer
// to a prompt on slice z is the connected component (of one label) that
// overlaps the prompt's region most: positive points, the box, and the
// positive cells of a mask input. Negative points remove the component they
// fall on from the candidates. Every call is recorded.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "medicosam/core/error.hpp"
#include "medicosam/segment/propagation.hpp"

namespace medicosam::segment::testing {

using LabelSlice = std::vector<uint16_t>;  // H x W

struct OracleCall {
  int z;
  predict::Prompt prompt;
};

// Components of one label slice: id image (0 = none) and count.
inline std::vector<int> components(const LabelSlice& labels, int H, int W, int* count) {
  std::vector<int> ids(labels.size(), 0);
  int next = 0;
  std::map<uint16_t, bool> seen;
  for (auto l : labels)
    if (l) seen[l] = true;
  for (const auto& [label, _] : seen) {
    cv::Mat bin(H, W, CV_8UC1);
    for (size_t i = 0; i < labels.size(); ++i) bin.data[i] = labels[i] == label ? 1 : 0;
    cv::Mat cc;
    const int n = cv::connectedComponents(bin, cc, 8, CV_32S);
    for (size_t i = 0; i < labels.size(); ++i) {
      const int c = cc.at<int>(static_cast<int>(i / W), static_cast<int>(i % W));
      if (c > 0) ids[i] = next + c;
    }
    next += n - 1;
  }
  *count = next;
  return ids;
}

inline BinaryMask oracle_answer(const LabelSlice& labels, int H, int W, int L,
                                const predict::Prompt& p) {
  int n = 0;
  const auto ids = components(labels, H, W, &n);
  std::vector<double> score(n + 1, 0.0);
  std::vector<bool> banned(n + 1, false);
  auto id_at = [&](double x, double y) {
    const int xi = std::clamp(static_cast<int>(x), 0, W - 1),
              yi = std::clamp(static_cast<int>(y), 0, H - 1);
    return ids[static_cast<size_t>(yi) * W + xi];
  };
  for (const auto& pt : p.points) {
    if (pt.label == 1)
      score[id_at(pt.x, pt.y)] += 1e6;  // a click on an object decides
    else
      banned[id_at(pt.x, pt.y)] = true;
  }
  if (p.box) {
    for (int y = std::max(0, int(p.box->y0)); y < std::min(H, int(std::ceil(p.box->y1))); ++y)
      for (int x = std::max(0, int(p.box->x0)); x < std::min(W, int(std::ceil(p.box->x1))); ++x)
        score[ids[size_t(y) * W + x]] += 1;
  }
  if (p.mask_input && L > 0) {
    const double s = double(std::max(H, W)) / L;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int ly = std::min(L - 1, int((y + 0.5) / s)),
                  lx = std::min(L - 1, int((x + 0.5) / s));
        if ((*p.mask_input)[size_t(ly) * L + lx] > 0) score[ids[size_t(y) * W + x]] += 1;
      }
  }
  int best = 0;
  for (int c = 1; c <= n; ++c)
    if (!banned[c] && score[c] > 0 && (best == 0 || score[c] > score[best])) best = c;
  BinaryMask m(H, W);
  if (best > 0)
    for (size_t i = 0; i < ids.size(); ++i) m.data[i] = ids[i] == best ? 1 : 0;
  return m;
}

inline predict::Prediction to_prediction(const BinaryMask& m, int L) {
  predict::Prediction pr;
  pr.height = m.height;
  pr.width = m.width;
  pr.num_masks = 1;
  pr.masks = m.data;
  pr.iou_predictions = {1.0f};
  pr.low_res_size = L;
  pr.low_res_logits.assign(size_t(L) * L, 0.f);
  return pr;
}

// A stack of label slices decoded by the oracle.
class OracleStack : public SliceSegmenter {
 public:
  OracleStack(std::vector<LabelSlice> truth, int H, int W, int L = 64)
      : truth_(std::move(truth)), H_(H), W_(W), L_(L) {}
  int num_slices() const override { return static_cast<int>(truth_.size()); }
  predict::Size2 slice_size() const override { return {H_, W_}; }
  int low_res_size() const override { return L_; }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool) override {
    predict::validate_prompt(prompt, {H_, W_}, L_);
    calls.push_back({z, prompt});
    return to_prediction(oracle_answer(truth_.at(z), H_, W_, L_, prompt), L_);
  }
  std::vector<int> called_slices() const {
    std::vector<int> z;
    for (const auto& c : calls) z.push_back(c.z);
    return z;
  }
  std::vector<OracleCall> calls;

 private:
  std::vector<LabelSlice> truth_;
  int H_, W_, L_;
};

// The same oracle as a 2D ImageSegmenter: set_image selects the truth by the
// image's first pixel value (tests render slice z with value z).
class OracleImageSegmenter : public ImageSegmenter {
 public:
  OracleImageSegmenter(std::vector<LabelSlice> truth, int H, int W, int L = 64)
      : truth_(std::move(truth)), H_(H), W_(W), L_(L) {}
  void set_image(const uint8_t* rgb, int height, int width) override {
    if (height != H_ || width != W_) throw InputError("oracle: image size differs from the truth");
    current_ = rgb[0];
    ++images_set;
  }
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool) override {
    std::vector<predict::Prediction> out;
    for (const auto& p : prompts) {
      predict::validate_prompt(p, {H_, W_}, L_);
      out.push_back(to_prediction(oracle_answer(truth_.at(current_), H_, W_, L_, p), L_));
    }
    return out;
  }
  int low_res_size() const override { return L_; }
  std::string name() const override { return "oracle"; }
  int images_set = 0;

 private:
  std::vector<LabelSlice> truth_;
  int H_, W_, L_;
  int current_ = 0;
};

// Synthetic truth: discs (label, centre, radius per slice; radius <= 0 = absent).
struct Disc {
  uint16_t label;
  double cx, cy;
  std::function<double(int z)> radius;
  std::function<double(int z)> shift_x = [](int) { return 0.0; };
};

inline std::vector<LabelSlice> make_truth(int Z, int H, int W, const std::vector<Disc>& discs) {
  std::vector<LabelSlice> t(Z, LabelSlice(size_t(H) * W, 0));
  for (int z = 0; z < Z; ++z)
    for (const auto& d : discs) {
      const double r = d.radius(z);
      if (r <= 0) continue;
      const double cx = d.cx + d.shift_x(z);
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
          if ((x - cx) * (x - cx) + (y - d.cy) * (y - d.cy) <= r * r)
            t[z][size_t(y) * W + x] = d.label;
    }
  return t;
}

inline BinaryMask label_mask(const LabelSlice& s, int H, int W, uint16_t label) {
  BinaryMask m(H, W);
  for (size_t i = 0; i < s.size(); ++i) m.data[i] = s[i] == label ? 1 : 0;
  return m;
}

}  // namespace medicosam::segment::testing
