// Intensity normalisation to the model's uint8 RGB input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "medicosam/core/error.hpp"
#include "medicosam/io/normalize.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/slice.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

Volume image2d(PixelType t, int64_t w, int64_t h, const std::vector<double>& values,
               int components = 1) {
  Geometry g;
  g.size = {w, h, 1};
  Volume v(t, g, components);
  for (int64_t i = 0; i < w * h; ++i) {
    for (int c = 0; c < components; ++c)
      v.set_value(i % w, i / w, 0, c, values[(i * components + c) % values.size()]);
  }
  return v;
}

// numpy.percentile, written independently (full sort).
double np_percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * (v.size() - 1);
  const size_t k = static_cast<size_t>(std::floor(pos));
  if (k + 1 >= v.size()) return v.back();
  return v[k] + (v[k + 1] - v[k]) * (pos - k);
}

TEST(NormalizationSpec, ParsesEveryForm) {
  EXPECT_EQ(parse_normalization("minmax").method, NormalizationMethod::kMinMax);
  EXPECT_EQ(parse_normalization("minmax").scope, NormalizationScope::kSlice);
  EXPECT_EQ(parse_normalization("minmax:volume").scope, NormalizationScope::kVolume);
  const Normalization p = parse_normalization("percentile");
  EXPECT_EQ(p.method, NormalizationMethod::kPercentile);
  EXPECT_EQ(p.lower_percentile, 1.0);
  EXPECT_EQ(p.upper_percentile, 99.0);
  const Normalization p2 = parse_normalization("percentile:0.5:99.5:volume");
  EXPECT_EQ(p2.lower_percentile, 0.5);
  EXPECT_EQ(p2.upper_percentile, 99.5);
  EXPECT_EQ(p2.scope, NormalizationScope::kVolume);
  struct Preset {
    const char* spec;
    double w, l;
  };
  for (const Preset& c :
       {Preset{"ct:soft-tissue", 400, 40}, Preset{"ct:lung", 1500, -600},
        Preset{"ct:bone", 1800, 400}, Preset{"ct:brain", 80, 40}, Preset{"window:350:50", 350, 50},
        Preset{"window:2000:-500:slice", 2000, -500}}) {
    const Normalization n = parse_normalization(c.spec);
    EXPECT_EQ(n.method, NormalizationMethod::kWindow) << c.spec;
    EXPECT_EQ(n.window_width, c.w) << c.spec;
    EXPECT_EQ(n.window_level, c.l) << c.spec;
  }
}

TEST(NormalizationSpec, ToStringRoundTrips) {
  for (const char* spec :
       {"minmax:slice", "minmax:volume", "percentile:1:99:slice", "percentile:0.5:99.5:volume",
        "ct:lung:slice", "ct:soft-tissue:volume", "window:350:-20.5:slice"}) {
    EXPECT_EQ(to_string(parse_normalization(spec)), spec);
  }
  EXPECT_EQ(to_string(Normalization{}), "minmax:slice");
}

TEST(NormalizationSpec, RejectsBadSpecsNamingThem) {
  for (const char* spec : {"", "foo", "minmax:1", "percentile:1", "percentile:99:1",
                           "percentile:-1:50", "percentile:a:b", "window:400", "window:0:40",
                           "window:-5:40", "ct:liver", "ct", "ct:lung:sideways", "volume"}) {
    try {
      parse_normalization(spec);
      ADD_FAILURE() << "accepted '" << spec << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + spec + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(MinMax, FloatArithmeticTruncatesLikeNumpy) {
  const std::vector<double> values{-1000, -999, 0, 1, 250, 3071, 1234, -5};
  const Volume v = image2d(PixelType::kInt16, 4, 2, values);
  const RGB8Image rgb = to_rgb8(v);
  for (size_t i = 0; i < values.size(); ++i) {
    // uint8(float32(x - min) / float32(max - min) * 255), truncated
    const float x = (static_cast<float>(values[i]) + 1000.0f) / 4071.0f * 255.0f;
    EXPECT_EQ(rgb.data[3 * i], static_cast<uint8_t>(x)) << values[i];
    EXPECT_EQ(rgb.data[3 * i + 1], rgb.data[3 * i]);
    EXPECT_EQ(rgb.data[3 * i + 2], rgb.data[3 * i]);
  }
  EXPECT_EQ(rgb.data[0], 0);
  EXPECT_EQ(rgb.data[3 * 5], 255);
}

TEST(MinMax, ConstantImageIsBlack) {
  const RGB8Image rgb = to_rgb8(image2d(PixelType::kFloat32, 3, 3, {7.5}));
  EXPECT_TRUE(std::all_of(rgb.data.begin(), rgb.data.end(), [](uint8_t x) { return x == 0; }));
}

TEST(MinMax, Uint8IsNeverRescaled) {
  const Volume gray = image2d(PixelType::kUInt8, 3, 1, {10, 20, 30});
  const RGB8Image a = to_rgb8(gray);
  EXPECT_EQ(a.data, (std::vector<uint8_t>{10, 10, 10, 20, 20, 20, 30, 30, 30}));
  const Volume rgb = image2d(PixelType::kUInt8, 2, 1, {1, 2, 3, 4, 5, 6}, 3);
  EXPECT_EQ(to_rgb8(rgb).data, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
}

TEST(MinMax, NonUint8RgbUsesOneGlobalRange) {
  const Volume rgb = image2d(PixelType::kUInt16, 2, 1, {0, 1000, 2000, 3000, 4000, 5100}, 3);
  const RGB8Image out = to_rgb8(rgb);
  EXPECT_EQ(out.data[0], 0);
  EXPECT_EQ(out.data[5], 255);
  EXPECT_EQ(out.data[1], static_cast<uint8_t>(1000.0f / 5100.0f * 255.0f));
}

TEST(Percentile, MatchesNumpyForIntegerAndFloatData) {
  std::mt19937 rng(7);
  std::normal_distribution<double> dist(100.0, 400.0);
  std::vector<double> values(5003);
  for (double& x : values) x = std::round(dist(rng));
  for (PixelType t : {PixelType::kInt16, PixelType::kFloat32, PixelType::kInt32}) {
    const Volume v = image2d(t, 5003, 1, values);
    const Normalization n = Normalization::percentile(1, 99);
    const IntensityRange r = compute_intensity_range(v, n);
    EXPECT_NEAR(r.lower, np_percentile(values, 1), 1e-6) << pixel_type_name(t);
    EXPECT_NEAR(r.upper, np_percentile(values, 99), 1e-6) << pixel_type_name(t);
    const RGB8Image rgb = to_rgb8(v, n);
    for (size_t i = 0; i < values.size(); i += 37) {
      const double x = std::clamp((values[i] - r.lower) / (r.upper - r.lower + 1e-7), 0.0, 1.0);
      ASSERT_EQ(rgb.data[3 * i], static_cast<uint8_t>(std::lround(x * 255))) << i;
    }
  }
}

TEST(Window, CtPresets) {
  const Volume hu = image2d(PixelType::kInt16, 6, 1, {-1000, -160, 40, 240, 1000, -600});
  const RGB8Image soft = to_rgb8(hu, parse_normalization("ct:soft-tissue"));
  EXPECT_EQ(soft.data[0], 0);
  EXPECT_EQ(soft.data[3], 0);    // L - W/2
  EXPECT_EQ(soft.data[6], 128);  // L: 127.5 rounds up
  EXPECT_EQ(soft.data[9], 255);  // L + W/2
  EXPECT_EQ(soft.data[12], 255);
  const RGB8Image lung = to_rgb8(hu, parse_normalization("ct:lung"));
  EXPECT_EQ(lung.data[15], 128);  // -600 is the lung level
  EXPECT_EQ(lung.data[0], static_cast<uint8_t>(std::lround((-1000.0 + 1350.0) / 1500.0 * 255.0)));
}

TEST(Scope, VolumeScopeUsesTheWholeVolume) {
  const Volume ct = read_image(test::shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  const Slice s = extract_slice(ct, Axis::kAxial, 1);
  const Normalizer per_volume(parse_normalization("minmax:volume"), ct);
  const Normalizer per_slice(parse_normalization("minmax"), ct);
  const RGB8Image a = per_volume(s.image);
  const RGB8Image b = per_slice(s.image);
  const auto vol_range = ct.min_max();
  const auto slice_range = s.image.min_max();
  const IntensityRange r{vol_range[0], vol_range[1]};
  EXPECT_EQ(a.data, to_rgb8(s.image, Normalization::minmax(), r).data);
  EXPECT_EQ(b.data, to_rgb8(s.image, Normalization::minmax(),
                            IntensityRange{slice_range[0], slice_range[1]})
                        .data);
  // Windows do not depend on statistics, so scope does not matter.
  const Normalizer w(parse_normalization("ct:bone:volume"), ct);
  EXPECT_EQ(w(s.image).data, to_rgb8(s.image, parse_normalization("ct:bone")).data);
}

}  // namespace
}  // namespace medicosam::io
