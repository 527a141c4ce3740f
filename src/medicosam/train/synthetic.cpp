#include "medicosam/train/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::train {
namespace {

using segment::Rng;

uint64_t mix(uint64_t a, uint64_t b) {
  // splitmix64 of a combination: decorrelates (seed, index) pairs.
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Smooth random field in [0,1]: upsampled coarse noise (a few octaves).
cv::Mat smooth_field(int h, int w, Rng& rng, int octaves) {
  cv::Mat acc = cv::Mat::zeros(h, w, CV_32F);
  float amp = 1.f, total = 0.f;
  int cells = 2 + static_cast<int>(rng.uniform_int(3));
  for (int o = 0; o < octaves; ++o) {
    cv::Mat coarse(cells, cells, CV_32F);
    for (int i = 0; i < cells * cells; ++i) coarse.at<float>(i) = static_cast<float>(rng.uniform());
    cv::Mat up;
    cv::resize(coarse, up, {w, h}, 0, 0, cv::INTER_CUBIC);
    acc += amp * up;
    total += amp;
    amp *= 0.5f;
    cells *= 2;
  }
  acc /= total;
  cv::normalize(acc, acc, 0, 1, cv::NORM_MINMAX);
  return acc;
}

// Fine texture: blurred white noise, zero mean, unit-ish std.
cv::Mat texture(int h, int w, Rng& rng) {
  cv::Mat n(h, w, CV_32F);
  for (int i = 0; i < h * w; ++i) n.at<float>(i) = static_cast<float>(rng.normal());
  const double sigma = rng.uniform(0.5, 3.0);
  cv::GaussianBlur(n, n, {0, 0}, sigma);
  cv::Scalar mean, std;
  cv::meanStdDev(n, mean, std);
  return (n - mean[0]) / std::max(1e-6, std[0]);
}

// A random closed shape rasterised into `mask` (255 inside).
void draw_shape(cv::Mat& mask, Rng& rng) {
  const int h = mask.rows, w = mask.cols;
  const double scale = std::min(h, w);
  const double r = scale * rng.uniform(0.05, 0.28);
  const cv::Point2d c(rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h);
  const int kind = static_cast<int>(rng.uniform_int(6));
  const double angle = rng.uniform(0, 180);
  if (kind == 0) {  // ellipse
    cv::ellipse(mask, cv::RotatedRect(c, cv::Size2f(2 * r, 2 * r * rng.uniform(0.35, 1.0)), angle),
                255, cv::FILLED);
  } else if (kind == 1 || kind == 2) {  // star-convex blob: radius as a low-order Fourier series
    std::vector<cv::Point> pts;
    const int harmonics = 2 + static_cast<int>(rng.uniform_int(4));
    std::vector<double> amp(harmonics), phase(harmonics);
    for (int k = 0; k < harmonics; ++k) {
      amp[k] = rng.uniform(0, kind == 1 ? 0.25 : 0.45) / (k + 1);
      phase[k] = rng.uniform(0, 2 * M_PI);
    }
    for (int i = 0; i < 96; ++i) {
      const double t = 2 * M_PI * i / 96;
      double rr = 1.0;
      for (int k = 0; k < harmonics; ++k) rr += amp[k] * std::sin((k + 2) * t + phase[k]);
      rr = std::max(0.2, rr) * r;
      pts.emplace_back(cvRound(c.x + rr * std::cos(t)), cvRound(c.y + rr * std::sin(t)));
    }
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{pts}, 255);
  } else if (kind == 3) {  // polygon / rotated rectangle
    const int n = 3 + static_cast<int>(rng.uniform_int(5));
    std::vector<cv::Point> pts;
    for (int i = 0; i < n; ++i) {
      const double t = 2 * M_PI * i / n + rng.uniform(-0.3, 0.3);
      const double rr = r * rng.uniform(0.6, 1.2);
      pts.emplace_back(cvRound(c.x + rr * std::cos(t)), cvRound(c.y + rr * std::sin(t)));
    }
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{pts}, 255);
  } else if (kind == 4) {  // ring (annulus), like a vessel cross-section or skull
    const double ratio = rng.uniform(0.35, 0.8);
    cv::Mat ring = cv::Mat::zeros(mask.size(), CV_8U);
    const cv::Size2f axes(2 * r, 2 * r * rng.uniform(0.6, 1.0));
    cv::ellipse(ring, cv::RotatedRect(c, axes, angle), 255, cv::FILLED);
    cv::ellipse(ring, cv::RotatedRect(c, axes * static_cast<float>(ratio), angle), 0, cv::FILLED);
    mask |= ring;
  } else {  // thick curve (a tube)
    std::vector<cv::Point> pts;
    const double len = r * rng.uniform(1.5, 3.0), bend = rng.uniform(-1.5, 1.5);
    for (int i = 0; i <= 24; ++i) {
      const double s = (i / 24.0 - 0.5) * len;
      const double t = angle * M_PI / 180 + bend * (i / 24.0 - 0.5);
      pts.emplace_back(cvRound(c.x + s * std::cos(t) - 0.2 * len * std::sin(t) * bend),
                       cvRound(c.y + s * std::sin(t)));
    }
    const int thick = std::max(3, static_cast<int>(r * rng.uniform(0.15, 0.45)));
    cv::polylines(mask, std::vector<std::vector<cv::Point>>{pts}, false, 255, thick, cv::LINE_8);
  }
}

}  // namespace

TrainSample make_synthetic_sample(uint64_t seed, uint64_t index, const SyntheticOptions& o) {
  Rng rng(mix(seed, index));
  const int h = o.min_side + static_cast<int>(rng.uniform_int(o.max_side - o.min_side + 1));
  const int w = o.min_side + static_cast<int>(rng.uniform_int(o.max_side - o.min_side + 1));

  // Background: smooth shading + texture.
  cv::Mat img = smooth_field(h, w, rng, 3) * rng.uniform(0.2, 0.8) + rng.uniform(0.0, 0.4);
  img += texture(h, w, rng) * rng.uniform(0.0, 0.08);
  cv::Mat labels = cv::Mat::zeros(h, w, CV_16U);

  const int n =
      o.min_objects + static_cast<int>(rng.uniform_int(o.max_objects - o.min_objects + 1));
  for (int k = 1; k <= n; ++k) {
    cv::Mat m = cv::Mat::zeros(h, w, CV_8U);
    draw_shape(m, rng);
    // Object appearance: an intensity offset from the local background that
    // ranges from faint to strong, its own texture and an internal gradient.
    const double contrast = (rng.bernoulli(0.5) ? 1 : -1) * rng.uniform(0.1, 0.6);
    cv::Mat tex = texture(h, w, rng) * rng.uniform(0.0, 0.1);
    cv::Mat grad = smooth_field(h, w, rng, 1) * rng.uniform(0.0, 0.2);
    cv::Mat obj = img + contrast + tex + grad;
    if (rng.bernoulli(0.2)) obj = img * (1 + contrast);  // multiplicative, like attenuation
    obj.copyTo(img, m);
    labels.setTo(k, m);  // later objects occlude earlier ones
  }

  // Acquisition effects: blur, then additive or speckle noise.
  if (rng.bernoulli(0.7)) cv::GaussianBlur(img, img, {0, 0}, rng.uniform(0.3, 2.5));
  const double noise = rng.uniform(0.0, 0.08);
  cv::Mat nz(h, w, CV_32F);
  for (int i = 0; i < h * w; ++i) nz.at<float>(i) = static_cast<float>(rng.normal());
  if (rng.bernoulli(0.3)) {
    img = img.mul(1 + nz * noise * 2);  // speckle (ultrasound-like)
  } else {
    img += nz * noise;
  }
  cv::normalize(img, img, rng.uniform(0, 40), rng.uniform(200, 255), cv::NORM_MINMAX);

  // Colour: gray replicated, or a random tint per channel.
  cv::Mat u8;
  img.convertTo(u8, CV_8U);
  TrainSample s;
  s.height = h;
  s.width = w;
  s.name = "synthetic_" + std::to_string(seed) + "_" + std::to_string(index);
  s.image.resize(static_cast<size_t>(h) * w * 3);
  const bool color = rng.bernoulli(0.4);
  double gain[3] = {1, 1, 1};
  if (color)
    for (double& g : gain) g = rng.uniform(0.6, 1.2);
  for (int i = 0; i < h * w; ++i)
    for (int c = 0; c < 3; ++c)
      s.image[3 * i + c] = static_cast<uint8_t>(std::min(255.0, u8.data[i] * gain[c]));

  // Drop objects whose visible part is too small; renumber 1..m.
  std::vector<int64_t> area(n + 1, 0);
  const uint16_t* lab = labels.ptr<uint16_t>();
  for (int i = 0; i < h * w; ++i) ++area[lab[i]];
  std::vector<uint16_t> remap(n + 1, 0);
  uint16_t next = 1;
  for (int k = 1; k <= n; ++k)
    if (area[k] >= o.min_object_area) remap[k] = next++;
  s.instances.resize(static_cast<size_t>(h) * w);
  for (int i = 0; i < h * w; ++i) s.instances[i] = remap[lab[i]];
  return s;
}

uint16_t TrainSample::max_label() const {
  uint16_t m = 0;
  for (auto v : instances) m = std::max(m, v);
  return m;
}

}  // namespace medicosam::train
