#include "medicosam/predict/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace medicosam::predict {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's 8-bit resampling precision

struct Coeffs {
  std::vector<int> xmin, count;
  std::vector<int32_t> k;  // out_size x ksize
  int ksize = 0;
};

// PIL precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter.
Coeffs make_coeffs(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as C's (int)
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double t = std::abs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      const double scaled = v * (1 << kPrecisionBits);
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? std::trunc(-0.5 + scaled) : std::trunc(0.5 + scaled));
    }
    c.xmin[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  if (v >= (255 << kPrecisionBits)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// Resamples along x: (h, in_w, C) -> (h, out_w, C).
std::vector<uint8_t> pass_horizontal(const uint8_t* src, int h, int in_w, int ch, int out_w) {
  const Coeffs c = make_coeffs(in_w, out_w);
  std::vector<uint8_t> out(static_cast<size_t>(h) * out_w * ch);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = src + static_cast<size_t>(y) * in_w * ch;
    uint8_t* orow = out.data() + static_cast<size_t>(y) * out_w * ch;
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      for (int cc = 0; cc < ch; ++cc) {
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.count[xx]; ++x) acc += row[(x + c.xmin[xx]) * ch + cc] * k[x];
        orow[xx * ch + cc] = clip8(acc);
      }
    }
  }
  return out;
}

// Resamples along y: (in_h, w, C) -> (out_h, w, C).
std::vector<uint8_t> pass_vertical(const uint8_t* src, int in_h, int w, int ch, int out_h) {
  const Coeffs c = make_coeffs(in_h, out_h);
  const size_t stride = static_cast<size_t>(w) * ch;
  std::vector<uint8_t> out(static_cast<size_t>(out_h) * stride);
  std::vector<int32_t> acc(stride);
  for (int yy = 0; yy < out_h; ++yy) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t* row = src + static_cast<size_t>(y + c.xmin[yy]) * stride;
      const int32_t ky = k[y];
      for (size_t i = 0; i < stride; ++i) acc[i] += row[i] * ky;
    }
    uint8_t* orow = out.data() + static_cast<size_t>(yy) * stride;
    for (size_t i = 0; i < stride; ++i) orow[i] = clip8(acc[i]);
  }
  return out;
}

}  // namespace

Size2 preprocess_shape(int height, int width, int long_side) {
  if (height <= 0 || width <= 0) throw std::invalid_argument("preprocess_shape: empty image");
  const double scale = long_side * 1.0 / std::max(height, width);
  return {static_cast<int>(height * scale + 0.5), static_cast<int>(width * scale + 0.5)};
}

std::vector<uint8_t> resize_bilinear_pil(const uint8_t* src, int height, int width, int channels, int out_height,
                                         int out_width) {
  if (height <= 0 || width <= 0 || out_height <= 0 || out_width <= 0 || channels <= 0) {
    throw std::invalid_argument("resize_bilinear_pil: empty image");
  }
  if (height == out_height && width == out_width) {
    return std::vector<uint8_t>(src, src + static_cast<size_t>(height) * width * channels);
  }
  std::vector<uint8_t> tmp;
  const uint8_t* cur = src;
  if (out_width != width) {
    tmp = pass_horizontal(src, height, width, channels, out_width);
    cur = tmp.data();
  }
  if (out_height != height) return pass_vertical(cur, height, out_width, channels, out_height);
  return tmp;
}

}  // namespace medicosam::predict
