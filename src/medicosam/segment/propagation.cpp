#include "medicosam/segment/propagation.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <opencv2/imgproc.hpp>
#include <set>

#include "medicosam/core/error.hpp"

namespace medicosam::segment {

// ------------------------------------------------------------ ImageStackSegmenter

ImageStackSegmenter::ImageStackSegmenter(ImageSegmenter& segmenter, int num_slices,
                                         predict::Size2 slice_size, SliceImage image)
    : segmenter_(segmenter), num_slices_(num_slices), size_(slice_size), image_(std::move(image)) {
  if (num_slices <= 0 || size_.height <= 0 || size_.width <= 0)
    throw InputError("empty slice stack");
}

predict::Prediction ImageStackSegmenter::predict(int z, const predict::Prompt& prompt,
                                                 bool multimask_output) {
  if (z < 0 || z >= num_slices_) {
    throw InputError("slice " + std::to_string(z) + " is outside 0.." +
                     std::to_string(num_slices_ - 1));
  }
  if (z != current_) {
    const io::RGB8Image img = image_(z);
    if (img.height != size_.height || img.width != size_.width) {
      throw InputError("slice " + std::to_string(z) + " has size " + std::to_string(img.width) +
                       "x" + std::to_string(img.height) + ", the stack " +
                       std::to_string(size_.width) + "x" + std::to_string(size_.height));
    }
    segmenter_.set_image(img.data.data(), img.height, img.width);
    current_ = z;
    ++encoded_;
  }
  return segmenter_.predict_batch({prompt}, multimask_output).front();
}

// ------------------------------------------------------------------ projection

Projection parse_projection(const std::string& name) {
  if (name == "box") return Projection::kBox;
  if (name == "mask") return Projection::kMask;
  if (name == "points") return Projection::kPoints;
  if (name == "points_and_mask") return Projection::kPointsAndMask;
  if (name == "single_point") return Projection::kSinglePoint;
  throw InputError("unknown projection '" + name +
                   "' (expected box, mask, points, points_and_mask or single_point)");
}

const char* projection_name(Projection p) {
  switch (p) {
    case Projection::kBox:
      return "box";
    case Projection::kMask:
      return "mask";
    case Projection::kPoints:
      return "points";
    case Projection::kPointsAndMask:
      return "points_and_mask";
    case Projection::kSinglePoint:
      return "single_point";
  }
  return "?";
}

ProjectionFlags projection_flags(Projection p) {
  switch (p) {
    case Projection::kBox:
      return {true, false, false, false};
    case Projection::kMask:
      return {true, true, false, false};
    case Projection::kPoints:
      return {false, false, true, false};
    case Projection::kPointsAndMask:
      return {false, true, true, false};
    case Projection::kSinglePoint:
      return {false, false, true, true};
  }
  return {};
}

// ------------------------------------------------------------- prompts from mask

namespace {

struct IntBox {
  int x0, y0, x1, y1;  // exclusive max
};

std::optional<IntBox> tight_box(const BinaryMask& m) {
  int x0 = m.width, y0 = m.height, x1 = -1, y1 = -1;
  for (int y = 0; y < m.height; ++y) {
    const uint8_t* row = m.data.data() + static_cast<size_t>(y) * m.width;
    for (int x = 0; x < m.width; ++x) {
      if (row[x]) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
  }
  if (x1 < 0) return std::nullopt;
  return IntBox{x0, y0, x1 + 1, y1 + 1};
}

// micro_sam _process_box: grow, clip, np.round (half to even).
IntBox extend_box(const IntBox& b, double e, int height, int width) {
  double ex = 0, ey = 0;
  if (e >= 1) {
    ex = ey = e;
  } else if (e > 0) {
    ey = e * (b.y1 - b.y0);
    ex = e * (b.x1 - b.x0);
  }
  auto r = [](double v) {
    return static_cast<int>(std::nearbyint(v));
  };  // default mode: half to even
  return {r(std::max(b.x0 - ex, 0.0)), r(std::max(b.y0 - ey, 0.0)),
          r(std::min(b.x1 + ex, double(width))), r(std::min(b.y1 + ey, double(height)))};
}

void check_mask(const BinaryMask& m) {
  if (m.height < 0 || m.width < 0 || m.data.size() != static_cast<size_t>(m.height) * m.width) {
    throw InputError("malformed mask: " + std::to_string(m.data.size()) + " values for " +
                     std::to_string(m.width) + "x" + std::to_string(m.height));
  }
}

// skimage.feature.peak_local_max(image, min_distance=d, exclude_border=False):
// pixels equal to the maximum of their (2d+1)^2 neighbourhood (edges
// replicated) and above the image minimum, strongest first, then thinned so no
// two kept peaks are within d (Chebyshev) of each other.
std::vector<cv::Point> peak_local_max(const cv::Mat& image, int d) {
  cv::Mat dilated;
  cv::dilate(image, dilated, cv::getStructuringElement(cv::MORPH_RECT, {2 * d + 1, 2 * d + 1}),
             {-1, -1}, 1, cv::BORDER_REPLICATE);
  double lo = 0;
  cv::minMaxLoc(image, &lo, nullptr);
  struct Peak {
    float v;
    int y, x;
  };
  std::vector<Peak> peaks;
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const float v = image.at<float>(y, x);
      if (v == dilated.at<float>(y, x) && v > lo) peaks.push_back({v, y, x});
    }
  }
  std::stable_sort(peaks.begin(), peaks.end(),
                   [](const Peak& a, const Peak& b) { return a.v > b.v; });
  std::vector<cv::Point> kept;
  for (const auto& p : peaks) {
    bool near = false;
    for (const auto& k : kept) {
      if (std::abs(k.x - p.x) <= d && std::abs(k.y - p.y) <= d) {
        near = true;
        break;
      }
    }
    if (!near) kept.emplace_back(p.x, p.y);
  }
  return kept;
}

// Antialiased bilinear resampling weights along one axis (torch's
// interpolate(mode="bilinear", align_corners=False, antialias=True)).
struct AxisWeights {
  std::vector<int> start;
  std::vector<std::vector<float>> w;
};

AxisWeights aa_weights(int in, int out) {
  AxisWeights a;
  const double scale = static_cast<double>(in) / out;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
  a.start.resize(out);
  a.w.resize(out);
  for (int i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in);
    double total = 0;
    std::vector<float> w;
    for (int j = lo; j < hi; ++j) {
      const double v = std::max(0.0, 1.0 - std::abs((j - center + 0.5) * inv));
      w.push_back(static_cast<float>(v));
      total += v;
    }
    for (auto& v : w) v = total > 0 ? static_cast<float>(v / total) : 0.f;
    a.start[i] = lo;
    a.w[i] = std::move(w);
  }
  return a;
}

}  // namespace

std::optional<predict::Box> box_from_mask(const BinaryMask& mask, double extension) {
  check_mask(mask);
  const auto b = tight_box(mask);
  if (!b) return std::nullopt;
  const auto e = extend_box(*b, extension, mask.height, mask.width);
  return predict::Box{double(e.x0), double(e.y0), double(e.x1), double(e.y1)};
}

std::vector<predict::Point> points_from_mask(const BinaryMask& mask, double box_extension,
                                             bool single_point) {
  check_mask(mask);
  const auto tb = tight_box(mask);
  if (!tb) return {};
  const auto b = extend_box(*tb, box_extension, mask.height, mask.width);
  const int h = b.y1 - b.y0, w = b.x1 - b.x0;
  cv::Mat crop(h, w, CV_8UC1);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) crop.at<uint8_t>(y, x) = mask.at(y + b.y0, x + b.x0) ? 1 : 0;
  // Outer boundary (skimage find_boundaries mode="outer"): background pixels
  // with an object pixel among their 4 neighbours. The distance transform
  // measures the distance to it. Without any (the object fills its crop), the
  // crop's surroundings count as boundary.
  cv::Mat grown;
  cv::dilate(crop, grown, cv::getStructuringElement(cv::MORPH_CROSS, {3, 3}), {-1, -1}, 1,
             cv::BORDER_REPLICATE);
  cv::Mat not_boundary(h, w, CV_8UC1);
  bool any_boundary = false;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const bool boundary = !crop.at<uint8_t>(y, x) && grown.at<uint8_t>(y, x);
      any_boundary |= boundary;
      not_boundary.at<uint8_t>(y, x) = boundary ? 0 : 1;
    }
  }
  cv::Mat dist;
  if (any_boundary) {
    cv::distanceTransform(not_boundary, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
  } else {
    cv::Mat padded;
    cv::copyMakeBorder(not_boundary, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, cv::Scalar(0));
    cv::distanceTransform(padded, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
    dist = dist(cv::Rect(1, 1, w, h)).clone();
  }
  // skimage.filters.gaussian(sigma=1): truncate 4 -> 9 taps, edges replicated.
  cv::Mat smooth;
  cv::GaussianBlur(dist, smooth, {9, 9}, 1.0, 1.0, cv::BORDER_REPLICATE);
  cv::Mat inner = smooth.clone(), outer = smooth.clone();
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (crop.at<uint8_t>(y, x)) {
        outer.at<float>(y, x) = 0.f;
      } else {
        inner.at<float>(y, x) = 0.f;
      }
    }
  }
  std::vector<predict::Point> points;
  if (single_point) {
    // np.argmax: the first maximum in raster order.
    float best = -1.f;
    int by = 0, bx = 0;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        if (inner.at<float>(y, x) > best) best = inner.at<float>(y, x), by = y, bx = x;
    points.push_back({double(bx + b.x0), double(by + b.y0), 1});
    return points;
  }
  for (const auto& p : peak_local_max(inner, 3))
    points.push_back({double(p.x + b.x0), double(p.y + b.y0), 1});
  for (const auto& p : peak_local_max(outer, 5))
    points.push_back({double(p.x + b.x0), double(p.y + b.y0), 0});
  return points;
}

std::vector<float> mask_logits_from_mask(const BinaryMask& mask, int L) {
  check_mask(mask);
  if (L <= 0) throw InputError("mask prompts need a positive low-res size");
  const int H = mask.height, W = mask.width;
  const auto target = predict::preprocess_shape(H, W, L);
  const int h = target.height, w = target.width;
  // Separable resample: rows first (W -> w), then columns (H -> h).
  const auto wx = aa_weights(W, w), wy = aa_weights(H, h);
  std::vector<float> tmp(static_cast<size_t>(H) * w);
  for (int y = 0; y < H; ++y) {
    const uint8_t* row = mask.data.data() + static_cast<size_t>(y) * W;
    for (int x = 0; x < w; ++x) {
      float s = 0;
      const auto& ws = wx.w[x];
      for (size_t k = 0; k < ws.size(); ++k) s += ws[k] * (row[wx.start[x] + k] ? 1.f : 0.f);
      tmp[static_cast<size_t>(y) * w + x] = s;
    }
  }
  const float pos = static_cast<float>(std::log((1 - 1e-3) / 1e-3));
  std::vector<float> logits(static_cast<size_t>(L) * L, -pos);
  for (int y = 0; y < h; ++y) {
    const auto& ws = wy.w[y];
    for (int x = 0; x < w; ++x) {
      float s = 0;
      for (size_t k = 0; k < ws.size(); ++k)
        s += ws[k] * tmp[static_cast<size_t>(wy.start[y] + k) * w + x];
      logits[static_cast<size_t>(y) * L + x] = s > 0.5f ? pos : -pos;
    }
  }
  return logits;
}

predict::Prompt prompt_from_mask(const BinaryMask& mask, const ProjectionFlags& flags,
                                 double box_extension, int low_res_size) {
  predict::Prompt p;
  if (mask.empty()) return p;
  if (flags.use_points) p.points = points_from_mask(mask, box_extension, flags.single_point);
  if (flags.use_box) p.box = box_from_mask(mask, box_extension);
  if (flags.use_mask && low_res_size > 0) p.mask_input = mask_logits_from_mask(mask, low_res_size);
  return p;
}

BinaryMask segment_from_mask(SliceSegmenter& segmenter, int z, const BinaryMask& mask,
                             const ProjectionFlags& flags, double box_extension) {
  const auto size = segmenter.slice_size();
  const auto prompt = prompt_from_mask(mask, flags, box_extension, segmenter.low_res_size());
  if (prompt.empty()) return BinaryMask(size.height, size.width);
  const auto pred = segmenter.predict(z, prompt, /*multimask_output=*/false);
  return BinaryMask(pred.height, pred.width, pred.mask(0));
}

double mask_iou(const BinaryMask& a, const BinaryMask& b) {
  if (a.data.size() != b.data.size()) throw InputError("IoU of masks of different sizes");
  int64_t inter = 0, uni = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const bool x = a.data[i] != 0, y = b.data[i] != 0;
    inter += x && y;
    uni += x || y;
  }
  return static_cast<double>(inter) / (static_cast<double>(uni) + 1e-7);
}

// ------------------------------------------------------------------ propagation

namespace {

BinaryMask mask_or(const BinaryMask& a, const BinaryMask& b) {
  BinaryMask m(a.height, a.width);
  for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = (a.data[i] || b.data[i]) ? 1 : 0;
  return m;
}

// One walk of micro_sam's segment_range: from slice `start` by `inc`, each
// slice prompted from its predecessor; `done(z)` says when to stop; with a
// threshold, it stops before writing a slice whose IoU with its predecessor is
// too low.
struct Walk {
  int next;  // slice decoded in the next round
  int inc;
  std::function<bool(int)> done;
  std::optional<double> threshold;
  int last;  // last slice written (the start until one is)
  bool active = true;
};

class Propagator {
 public:
  Propagator(SliceSegmenter& s, std::vector<BinaryMask>& seg, const PropagationOptions& o,
             PropagationResult& r)
      : s_(s), seg_(seg), o_(o), r_(r) {}

  Walk walk(int start, int inc, std::function<bool(int)> done, std::optional<double> threshold) {
    return Walk{start + inc, inc, std::move(done), threshold, start};
  }

  // Advances every walk one slice per round until all are done; the slices of
  // a round are decoded in one predict_many call. The walks write disjoint
  // slices and each reads only what it wrote (or its annotated start), so the
  // result equals running them one after another.
  void run(std::vector<Walk>& walks) {
    while (true) {
      std::vector<Walk*> round;
      std::vector<BinaryMask> prompts;
      for (auto& w : walks) {
        if (!w.active) continue;
        round.push_back(&w);
        prompts.push_back(seg_[w.next - w.inc]);
      }
      if (round.empty()) break;
      std::vector<int> zs;
      for (const auto* w : round) zs.push_back(w->next);
      auto masks = decode(zs, prompts);
      for (size_t i = 0; i < round.size(); ++i) {
        Walk& w = *round[i];
        const int z = w.next;
        PropagationStep step{z, z - w.inc, mask_iou(prompts[i], masks[i]), true};
        if (w.threshold && step.iou < *w.threshold) {
          step.written = false;
          r_.steps.push_back(step);
          w.active = false;
          continue;
        }
        r_.steps.push_back(step);
        seg_[z] = std::move(masks[i]);
        w.last = z;
        w.next = z + w.inc;
        if (w.done(w.next)) w.active = false;
      }
    }
  }

  // Slices prompted with the union of both neighbours, all in one call.
  void middles(const std::vector<int>& zs) {
    if (zs.empty()) return;
    std::vector<BinaryMask> prompts;
    for (int z : zs) prompts.push_back(mask_or(seg_[z - 1], seg_[z + 1]));
    auto masks = decode(zs, prompts);
    for (size_t i = 0; i < zs.size(); ++i) {
      r_.steps.push_back({zs[i], -1, mask_iou(prompts[i], masks[i]), true});
      seg_[zs[i]] = std::move(masks[i]);
    }
  }

 private:
  // segment_from_mask for several slices at once: empty prompts give empty
  // masks without a decoder call; the rest go through one predict_many.
  std::vector<BinaryMask> decode(const std::vector<int>& zs, const std::vector<BinaryMask>& prompt_masks) {
    const auto size = s_.slice_size();
    std::vector<BinaryMask> out(zs.size(), BinaryMask(size.height, size.width));
    std::vector<SliceSegmenter::Request> requests;
    std::vector<size_t> which;
    for (size_t i = 0; i < zs.size(); ++i) {
      auto prompt = prompt_from_mask(prompt_masks[i], o_.projection, o_.box_extension, s_.low_res_size());
      if (prompt.empty()) continue;
      requests.push_back({zs[i], std::move(prompt)});
      which.push_back(i);
    }
    if (!requests.empty()) {
      const auto preds = s_.predict_many(requests, /*multimask_output=*/false);
      for (size_t j = 0; j < which.size(); ++j) {
        const auto& pred = preds[j];
        out[which[j]] = BinaryMask(pred.height, pred.width, pred.mask(0));
      }
    }
    if (o_.on_slice) {
      for (int z : zs) o_.on_slice(z);
    }
    return out;
  }

  SliceSegmenter& s_;
  std::vector<BinaryMask>& seg_;
  const PropagationOptions& o_;
  PropagationResult& r_;
};

}  // namespace

std::vector<predict::Prediction> SliceSegmenter::predict_many(const std::vector<Request>& requests,
                                                              bool multimask_output) {
  std::vector<predict::Prediction> out;
  out.reserve(requests.size());
  for (const auto& r : requests) out.push_back(predict(r.z, r.prompt, multimask_output));
  return out;
}

PropagationResult segment_mask_in_volume(SliceSegmenter& segmenter,
                                         std::vector<BinaryMask>& segmentation,
                                         std::vector<int> annotated,
                                         const PropagationOptions& options) {
  const int Z = segmenter.num_slices();
  const auto size = segmenter.slice_size();
  if (static_cast<int>(segmentation.size()) != Z) {
    throw InputError("segmentation has " + std::to_string(segmentation.size()) +
                     " slices, the stack " + std::to_string(Z));
  }
  for (size_t z = 0; z < segmentation.size(); ++z) {
    const auto& m = segmentation[z];
    if (m.height != size.height || m.width != size.width ||
        m.data.size() != size_t(size.height) * size.width) {
      throw InputError("mask of slice " + std::to_string(z) + " is " + std::to_string(m.width) +
                       "x" + std::to_string(m.height) + ", slices are " +
                       std::to_string(size.width) + "x" + std::to_string(size.height));
    }
  }
  if (annotated.empty()) throw InputError("propagation needs at least one annotated slice");
  for (int z : annotated) {
    if (z < 0 || z >= Z) {
      throw InputError("annotated slice " + std::to_string(z) + " is outside 0.." +
                       std::to_string(Z - 1));
    }
  }
  std::sort(annotated.begin(), annotated.end());
  annotated.erase(std::unique(annotated.begin(), annotated.end()), annotated.end());

  PropagationResult result;
  Propagator p(segmenter, segmentation, options, result);
  const int z0 = annotated.front(), z1 = annotated.back();
  const double thr = options.iou_threshold;

  // 1-2: outwards below the lowest and above the highest annotated slice.
  std::vector<Walk> walks;
  int lower = -1, upper = -1;
  if (z0 > 0 && !options.stop_lower) {
    lower = static_cast<int>(walks.size());
    walks.push_back(p.walk(z0, -1, [](int z) { return z < 0; }, thr));
  }
  if (z1 < Z - 1 && !options.stop_upper) {
    upper = static_cast<int>(walks.size());
    walks.push_back(p.walk(z1, +1, [Z](int z) { return z > Z - 1; }, thr));
  }
  // 3: the gaps between annotated slices, without a threshold.
  std::vector<int> middle;
  for (size_t i = 0; i + 1 < annotated.size(); ++i) {
    const int a = annotated[i], b = annotated[i + 1];
    const int diff = b - a, mid = (a + b) / 2;
    if (diff == 1) continue;
    if (a == z0 && options.stop_lower) {
      walks.push_back(p.walk(b, -1, [a](int z) { return z <= a; }, std::nullopt));
    } else if (b == z1 && options.stop_upper) {
      walks.push_back(p.walk(a, +1, [b](int z) { return z >= b; }, std::nullopt));
    } else if (diff == 2) {
      middle.push_back(a + 1);
    } else {
      if (diff % 2 == 0) {
        walks.push_back(p.walk(a, +1, [mid](int z) { return z >= mid; }, std::nullopt));
      } else {
        walks.push_back(p.walk(a, +1, [mid](int z) { return z > mid; }, std::nullopt));
      }
      walks.push_back(p.walk(b, -1, [mid](int z) { return z <= mid; }, std::nullopt));
      if (diff % 2 == 0) middle.push_back(mid);
    }
  }
  p.run(walks);
  p.middles(middle);
  result.z_min = lower >= 0 ? walks[size_t(lower)].last : z0;
  result.z_max = upper >= 0 ? walks[size_t(upper)].last : z1;
  return result;
}

}  // namespace medicosam::segment

namespace medicosam::segment {

BinaryMask segment_from_prompt(SliceSegmenter& segmenter, int z, const predict::Prompt& prompt) {
  const bool best_of_three =
      prompt.points.size() == 1 && prompt.points[0].label == 1 && !prompt.box && !prompt.mask_input;
  const auto pred = segmenter.predict(z, prompt, best_of_three);
  return BinaryMask(pred.height, pred.width, pred.mask(best_of_three ? pred.best() : 0));
}

}  // namespace medicosam::segment
