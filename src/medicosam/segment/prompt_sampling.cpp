#include "medicosam/segment/prompt_sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <opencv2/imgproc.hpp>

#include "medicosam/core/error.hpp"

namespace medicosam::segment {

int64_t BinaryMask::area() const {
  int64_t n = 0;
  for (auto v : data) n += v != 0;
  return n;
}

int64_t Rng::uniform_int(int64_t n) {
  if (n <= 0) throw Error("Rng::uniform_int: empty range");
  // Rejection sampling removes the modulo bias; the algorithm is fixed, so the
  // sequence depends only on the seed.
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % un;
  uint64_t r;
  do {
    r = engine_();
  } while (r >= limit);
  return static_cast<int64_t>(r % un);
}

double Rng::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  // Box-Muller, one value per call.
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::optional<predict::Box> bounding_box(const BinaryMask& m) {
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
  return predict::Box{double(x0), double(y0), double(x1 + 1), double(y1 + 1)};
}

predict::Point object_center(const BinaryMask& m) {
  if (m.empty()) throw InputError("object_center: empty mask");
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data()));
  cv::Mat bin = src != 0, dist;
  cv::distanceTransform(bin, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
  double maxv = 0;
  cv::Point loc;
  cv::minMaxLoc(dist, nullptr, &maxv, nullptr, &loc);
  return {double(loc.x), double(loc.y), 1};
}

predict::Box distort_box(const predict::Box& b, double factor, int height, int width, Rng& rng) {
  const double w = b.x1 - b.x0, h = b.y1 - b.y0;
  predict::Box d = b;
  d.x0 = std::max(0.0, b.x0 - rng.uniform(0, factor) * w);
  d.y0 = std::max(0.0, b.y0 - rng.uniform(0, factor) * h);
  d.x1 = std::min(double(width), b.x1 + rng.uniform(0, factor) * w);
  d.y1 = std::min(double(height), b.y1 + rng.uniform(0, factor) * h);
  return d;
}

namespace {

// Indices of pixels where pred(index) holds.
template <typename Pred>
std::vector<int64_t> pixels_where(const BinaryMask& m, Pred pred) {
  std::vector<int64_t> idx;
  const int64_t n = static_cast<int64_t>(m.data.size());
  for (int64_t i = 0; i < n; ++i)
    if (pred(i)) idx.push_back(i);
  return idx;
}

predict::Point point_at(const BinaryMask& m, int64_t index, int label) {
  return {double(index % m.width), double(index / m.width), label};
}

// k distinct random picks (all of them, shuffled, if k >= size).
std::vector<int64_t> sample_without_replacement(std::vector<int64_t> pool, int k, Rng& rng) {
  const int n = static_cast<int>(pool.size());
  k = std::min(k, n);
  for (int i = 0; i < k; ++i) std::swap(pool[i], pool[i + rng.uniform_int(n - i)]);
  pool.resize(k);
  return pool;
}

BinaryMask dilate(const BinaryMask& m, int iterations) {
  if (iterations <= 0) return m;
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data()));
  cv::Mat out;
  cv::dilate(src, out, cv::getStructuringElement(cv::MORPH_RECT, {3, 3}), {-1, -1}, iterations,
             cv::BORDER_CONSTANT, cv::Scalar(0));
  return BinaryMask(m.height, m.width, std::vector<uint8_t>(out.data, out.data + out.total()));
}

}  // namespace

std::vector<predict::Point> random_points(const BinaryMask& m, int n_positive, int n_negative, int dilation,
                                          Rng& rng) {
  std::vector<predict::Point> pts;
  const auto inside = pixels_where(m, [&](int64_t i) { return m.data[i] != 0; });
  if (n_positive > 0 && !inside.empty()) {
    if (static_cast<int>(inside.size()) >= n_positive) {
      for (auto i : sample_without_replacement(inside, n_positive, rng)) pts.push_back(point_at(m, i, 1));
    } else {
      for (int k = 0; k < n_positive; ++k) pts.push_back(point_at(m, inside[rng.uniform_int(inside.size())], 1));
    }
  }
  if (n_negative > 0) {
    const auto box = bounding_box(m);
    const auto grown = dilate(m, dilation);
    std::vector<int64_t> ring;
    if (box) {
      const int x0 = std::max(0, int(box->x0) - dilation), y0 = std::max(0, int(box->y0) - dilation);
      const int x1 = std::min(m.width, int(box->x1) + dilation), y1 = std::min(m.height, int(box->y1) + dilation);
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
          const int64_t i = int64_t(y) * m.width + x;
          if (!grown.data[i]) ring.push_back(i);
        }
    }
    auto picked = sample_without_replacement(ring, n_negative, rng);
    if (static_cast<int>(picked.size()) < n_negative) {
      const auto background = pixels_where(m, [&](int64_t i) { return m.data[i] == 0; });
      while (static_cast<int>(picked.size()) < n_negative && !background.empty()) {
        picked.push_back(background[rng.uniform_int(background.size())]);
      }
    }
    for (auto i : picked) pts.push_back(point_at(m, i, 0));
  }
  return pts;
}

std::vector<predict::Point> corrective_points(const BinaryMask& gt, const BinaryMask& pred, Rng& rng) {
  if (gt.height != pred.height || gt.width != pred.width) throw Error("corrective_points: size mismatch");
  std::vector<predict::Point> out;
  // Positive: a missed object pixel, else any correctly found one.
  auto fn = pixels_where(gt, [&](int64_t i) { return gt.data[i] && !pred.data[i]; });
  if (fn.empty()) fn = pixels_where(gt, [&](int64_t i) { return gt.data[i] && pred.data[i]; });
  if (fn.empty()) fn = pixels_where(gt, [&](int64_t i) { return gt.data[i] != 0; });
  if (!fn.empty()) out.push_back(point_at(gt, fn[rng.uniform_int(fn.size())], 1));
  // Negative: a false positive, else the ring around the object's box, else any background.
  auto fp = pixels_where(gt, [&](int64_t i) { return !gt.data[i] && pred.data[i]; });
  if (fp.empty()) {
    if (const auto box = bounding_box(gt)) {
      const int x0 = std::max(0, int(box->x0) - 3), y0 = std::max(0, int(box->y0) - 3);
      const int x1 = std::min(gt.width, int(box->x1) + 3), y1 = std::min(gt.height, int(box->y1) + 3);
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x)
          if (!gt.at(y, x)) fp.push_back(int64_t(y) * gt.width + x);
    }
  }
  if (fp.empty()) fp = pixels_where(gt, [&](int64_t i) { return gt.data[i] == 0; });
  if (!fp.empty()) out.push_back(point_at(gt, fp[rng.uniform_int(fp.size())], 0));
  return out;
}

std::vector<BinaryMask> connected_components(const BinaryMask& m, int min_size) {
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data()));
  cv::Mat bin = src != 0, labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(bin, labels, stats, centroids, 8, CV_32S);
  std::vector<BinaryMask> out;
  for (int c = 1; c < n; ++c) {
    if (stats.at<int>(c, cv::CC_STAT_AREA) < min_size) continue;
    BinaryMask cc(m.height, m.width);
    const int* lab = labels.ptr<int>();
    for (size_t i = 0; i < cc.data.size(); ++i) cc.data[i] = lab[i] == c;
    out.push_back(std::move(cc));
  }
  return out;
}

double dice(const BinaryMask& a, const BinaryMask& b) {
  if (a.data.size() != b.data.size()) throw Error("dice: size mismatch");
  int64_t inter = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const bool x = a.data[i] != 0, y = b.data[i] != 0;
    inter += x && y;
    sa += x;
    sb += y;
  }
  if (sa + sb == 0) return 1.0;
  return 2.0 * inter / (sa + sb + 1e-7);
}

double iou(const BinaryMask& a, const BinaryMask& b) {
  if (a.data.size() != b.data.size()) throw Error("iou: size mismatch");
  int64_t inter = 0, uni = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const bool x = a.data[i] != 0, y = b.data[i] != 0;
    inter += x && y;
    uni += x || y;
  }
  return uni == 0 ? 1.0 : double(inter) / uni;
}

}  // namespace medicosam::segment
