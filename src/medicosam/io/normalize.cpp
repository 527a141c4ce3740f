#include "medicosam/io/normalize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "medicosam/core/error.hpp"

namespace medicosam::io {
namespace {

struct Preset {
  const char* name;
  double width, level;
};
constexpr Preset kCtPresets[] = {
    {"soft-tissue", 400, 40},
    {"lung", 1500, -600},
    {"bone", 1800, 400},
    {"brain", 80, 40},
};

const char* kSpecHelp =
    "expected minmax, percentile, percentile:LO:HI, ct:soft-tissue, ct:lung, ct:bone, ct:brain or "
    "window:W:L, optionally followed by :slice or :volume";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool parse_number(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

std::string format_number(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

// numpy.percentile (linear interpolation) of the values in `v`.
std::array<double, 2> percentiles(const Volume& v, double lo_p, double hi_p) {
  const size_t n = static_cast<size_t>(v.num_voxels()) * v.components();
  if (n == 0) return {0.0, 0.0};
  const double lo_pos = lo_p / 100.0 * static_cast<double>(n - 1);
  const double hi_pos = hi_p / 100.0 * static_cast<double>(n - 1);
  const PixelType t = v.pixel_type();
  if (t == PixelType::kUInt8 || t == PixelType::kInt8 || t == PixelType::kUInt16 ||
      t == PixelType::kInt16) {
    // Exact order statistics from a histogram: no copy of the data.
    std::vector<uint64_t> hist(65536, 0);
    const int offset = (t == PixelType::kInt8 || t == PixelType::kInt16) ? 32768 : 0;
    visit_pixel_type(t, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (sizeof(T) <= 2 && std::is_integral_v<T>) {
        const T* p = v.data_as<T>();
        for (size_t i = 0; i < n; ++i) ++hist[static_cast<int>(p[i]) + offset];
      }
    });
    auto order_stat = [&](uint64_t k) {  // k-th smallest, 0-based
      uint64_t seen = 0;
      for (int b = 0; b < 65536; ++b) {
        seen += hist[b];
        if (seen > k) return static_cast<double>(b - offset);
      }
      return static_cast<double>(65535 - offset);
    };
    auto at = [&](double pos) {
      const auto k = static_cast<uint64_t>(std::floor(pos));
      const double frac = pos - static_cast<double>(k);
      const double a = order_stat(k);
      if (frac == 0.0 || k + 1 >= n) return a;
      return a + (order_stat(k + 1) - a) * frac;
    };
    return {at(lo_pos), at(hi_pos)};
  }
  std::vector<double> values(n);
  visit_pixel_type(t, [&](auto tag) {
    using T = decltype(tag);
    const T* p = v.data_as<T>();
    for (size_t i = 0; i < n; ++i) values[i] = static_cast<double>(p[i]);
  });
  auto at = [&](double pos) {
    const auto k = static_cast<size_t>(std::floor(pos));
    const double frac = pos - static_cast<double>(k);
    std::nth_element(values.begin(), values.begin() + k, values.end());
    const double a = values[k];
    if (frac == 0.0 || k + 1 >= n) return a;
    const double b = *std::min_element(values.begin() + k + 1, values.end());
    return a + (b - a) * frac;
  };
  const double lo = at(lo_pos);
  const double hi = at(hi_pos);
  return {lo, hi};
}

}  // namespace

Normalization Normalization::minmax(NormalizationScope scope) {
  Normalization n;
  n.method = NormalizationMethod::kMinMax;
  n.scope = scope;
  return n;
}

Normalization Normalization::percentile(double lower, double upper, NormalizationScope scope) {
  if (!(lower >= 0.0 && lower < upper && upper <= 100.0)) {
    throw InputError("percentile normalisation needs 0 <= LO < HI <= 100, got " +
                     format_number(lower) + ":" + format_number(upper));
  }
  Normalization n;
  n.method = NormalizationMethod::kPercentile;
  n.lower_percentile = lower;
  n.upper_percentile = upper;
  n.scope = scope;
  return n;
}

Normalization Normalization::window(double width, double level) {
  if (!(width > 0.0) || !std::isfinite(width) || !std::isfinite(level)) {
    throw InputError("window normalisation needs a positive width, got W=" + format_number(width));
  }
  Normalization n;
  n.method = NormalizationMethod::kWindow;
  n.window_width = width;
  n.window_level = level;
  return n;
}

Normalization Normalization::ct_preset(const std::string& name) {
  for (const auto& p : kCtPresets) {
    if (name == p.name) {
      Normalization n = window(p.width, p.level);
      n.preset = p.name;
      return n;
    }
  }
  throw InputError("unknown CT window '" + name + "' (soft-tissue, lung, bone or brain)");
}

Normalization parse_normalization(const std::string& spec) {
  std::vector<std::string> parts = split(spec, ':');
  NormalizationScope scope = NormalizationScope::kSlice;
  if (parts.size() > 1 && (parts.back() == "slice" || parts.back() == "volume")) {
    scope = parts.back() == "volume" ? NormalizationScope::kVolume : NormalizationScope::kSlice;
    parts.pop_back();
  }
  const std::string bad = "invalid normalisation '" + spec + "': " + kSpecHelp;
  Normalization n;
  const std::string& m = parts[0];
  if (m == "minmax" && parts.size() == 1) {
    n = Normalization::minmax();
  } else if (m == "percentile" && (parts.size() == 1 || parts.size() == 3)) {
    double lo = 1.0, hi = 99.0;
    if (parts.size() == 3 && (!parse_number(parts[1], &lo) || !parse_number(parts[2], &hi))) {
      throw InputError(bad);
    }
    try {
      n = Normalization::percentile(lo, hi);
    } catch (const InputError& e) {
      throw InputError("invalid normalisation '" + spec + "': " + e.what());
    }
  } else if (m == "ct" && parts.size() == 2) {
    try {
      n = Normalization::ct_preset(parts[1]);
    } catch (const InputError& e) {
      throw InputError("invalid normalisation '" + spec + "': " + e.what());
    }
  } else if (m == "window" && parts.size() == 3) {
    double w = 0, l = 0;
    if (!parse_number(parts[1], &w) || !parse_number(parts[2], &l)) throw InputError(bad);
    try {
      n = Normalization::window(w, l);
    } catch (const InputError& e) {
      throw InputError("invalid normalisation '" + spec + "': " + e.what());
    }
  } else {
    throw InputError(bad);
  }
  n.scope = scope;
  return n;
}

std::string to_string(const Normalization& n) {
  std::string s;
  switch (n.method) {
    case NormalizationMethod::kMinMax:
      s = "minmax";
      break;
    case NormalizationMethod::kPercentile:
      s = "percentile:" + format_number(n.lower_percentile) + ":" +
          format_number(n.upper_percentile);
      break;
    case NormalizationMethod::kWindow:
      s = n.preset.empty()
              ? "window:" + format_number(n.window_width) + ":" + format_number(n.window_level)
              : "ct:" + n.preset;
      break;
  }
  return s + (n.scope == NormalizationScope::kVolume ? ":volume" : ":slice");
}

IntensityRange compute_intensity_range(const Volume& v, const Normalization& n) {
  switch (n.method) {
    case NormalizationMethod::kMinMax: {
      if (v.pixel_type() == PixelType::kUInt8) return {0.0, 255.0};
      const auto mm = v.min_max();
      return {mm[0], mm[1]};
    }
    case NormalizationMethod::kPercentile: {
      const auto p = percentiles(v, n.lower_percentile, n.upper_percentile);
      return {p[0], p[1]};
    }
    case NormalizationMethod::kWindow:
      return {n.window_level - n.window_width / 2.0, n.window_level + n.window_width / 2.0};
  }
  return {};
}

RGB8Image to_rgb8(const Volume& image, const Normalization& n) {
  return to_rgb8(image, n, compute_intensity_range(image, n));
}

RGB8Image to_rgb8(const Volume& image, const Normalization& n, const IntensityRange& range) {
  if (image.empty()) throw InputError("to_rgb8: the image is empty");
  if (image.depth() != 1) {
    throw InputError("to_rgb8: needs a 2D image, got " + std::to_string(image.depth()) +
                     " slices; use extract_slice first");
  }
  if (image.width() > std::numeric_limits<int>::max() / 4 ||
      image.height() > std::numeric_limits<int>::max() / 4) {
    throw InputError("to_rgb8: image is too large");
  }
  RGB8Image out;
  out.height = static_cast<int>(image.height());
  out.width = static_cast<int>(image.width());
  const size_t pixels = static_cast<size_t>(out.height) * out.width;
  out.data.resize(pixels * 3);
  const int c_in = image.components();
  const size_t values = pixels * c_in;
  std::vector<uint8_t> mapped(values);

  if (n.method == NormalizationMethod::kMinMax && image.pixel_type() == PixelType::kUInt8) {
    std::memcpy(mapped.data(), image.data(), values);  // micro_sam: uint8 passes through
  } else if (n.method == NormalizationMethod::kMinMax) {
    // micro_sam's float32 arithmetic: (x - min) / (max - min) * 255, truncated.
    const float lo = static_cast<float>(range.lower);
    const float span = static_cast<float>(range.upper) - lo;
    visit_pixel_type(image.pixel_type(), [&](auto tag) {
      using T = decltype(tag);
      const T* p = image.data_as<T>();
      for (size_t i = 0; i < values; ++i) {
        const float x = (static_cast<float>(p[i]) - lo) / span * 255.0f;
        // NaN (constant image) -> 0; guard against float rounding past 255.
        mapped[i] = x >= 0.0f ? static_cast<uint8_t>(std::min(x, 255.0f)) : 0;
      }
    });
  } else {
    double lo = range.lower, span = range.upper - range.lower;
    if (n.method == NormalizationMethod::kPercentile) span += 1e-7;  // MedicoSAM's eps
    if (!(span > 0)) span = 1.0;
    visit_pixel_type(image.pixel_type(), [&](auto tag) {
      using T = decltype(tag);
      const T* p = image.data_as<T>();
      for (size_t i = 0; i < values; ++i) {
        double x = (static_cast<double>(p[i]) - lo) / span;
        x = std::isnan(x) ? 0.0 : std::clamp(x, 0.0, 1.0);
        mapped[i] = static_cast<uint8_t>(std::lround(x * 255.0));
      }
    });
  }
  if (c_in == 3) {
    out.data = std::move(mapped);
  } else {
    for (size_t i = 0; i < pixels; ++i)
      out.data[3 * i] = out.data[3 * i + 1] = out.data[3 * i + 2] = mapped[i];
  }
  return out;
}

Normalizer::Normalizer(const Normalization& n, const Volume& volume) : n_(n) {
  if (n.scope == NormalizationScope::kVolume) {
    range_ = compute_intensity_range(volume, n);
    have_range_ = true;
  }
}

RGB8Image Normalizer::operator()(const Volume& slice) const {
  return have_range_ ? to_rgb8(slice, n_, range_) : to_rgb8(slice, n_);
}

}  // namespace medicosam::io
