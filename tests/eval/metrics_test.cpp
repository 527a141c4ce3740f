// Metrics against hand-computed values (docs/evaluation.md has the definitions).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/metrics.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using medicosam::eval::testing::rect_mask;

namespace {
segment::BinaryMask pixel(int h, int w, int x, int y) {
  return rect_mask(h, w, x, y, x + 1, y + 1);
}
}  // namespace

TEST(Metrics, ShiftedSquareByHand) {
  // 4x4 square and the same square one pixel to the right. Overlap 12 px.
  const auto gt = rect_mask(10, 10, 2, 2, 6, 6);
  const auto pred = rect_mask(10, 10, 3, 2, 7, 6);
  // Each outline has 12 pixels; 6 of them lie on the other outline (distance
  // 0), the other 6 are 1 px away.
  auto d = surface_distances(view_of(pred), view_of(gt));
  std::sort(d.begin(), d.end());
  ASSERT_EQ(d.size(), 12u);
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(d[i], 0.0);
  for (int i = 6; i < 12; ++i) EXPECT_DOUBLE_EQ(d[i], 1.0);

  const Metrics m = compute_metrics(pred, gt, {1.0, 1.0}, 1.0);
  EXPECT_DOUBLE_EQ(m.dice, 24.0 / 32.0);
  EXPECT_NEAR(m.iou, 12.0 / 20.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.nsd, 1.0);  // everything within 1 px
  EXPECT_DOUBLE_EQ(m.hd95, 1.0);
  EXPECT_DOUBLE_EQ(normalized_surface_dice(view_of(pred), view_of(gt), 0.5),
                   0.5);  // only the 12 exact ones
}

TEST(Metrics, SurfaceIsFaceConnectedAndImageBorderCounts) {
  const auto square = rect_mask(5, 5, 1, 1, 4, 4);
  const auto s = surface_of(view_of(square));
  EXPECT_EQ(std::count(s.begin(), s.end(), 1),
            8);  // 3x3 square: all but the centre; no z neighbours in 2D
  EXPECT_EQ(s[2 * 5 + 2], 0);
  const auto full_mask = rect_mask(5, 5, 0, 0, 5, 5);
  const auto full = surface_of(view_of(full_mask));
  EXPECT_EQ(std::count(full.begin(), full.end(), 1),
            16);  // the image border is the object's border
}

TEST(Metrics, SpacingScalesDistancesPerAxis) {
  const auto gt = pixel(6, 8, 2, 2);
  // 3 px apart along x with 2 mm pixels: 6 mm.
  const Metrics mx = compute_metrics(pixel(6, 8, 5, 2), gt, {2.0, 1.0}, 5.9);
  EXPECT_DOUBLE_EQ(mx.hd95, 6.0);
  EXPECT_DOUBLE_EQ(mx.nsd, 0.0);
  EXPECT_DOUBLE_EQ(mx.dice, 0.0);
  EXPECT_DOUBLE_EQ(compute_metrics(pixel(6, 8, 5, 2), gt, {2.0, 1.0}, 6.0).nsd, 1.0);
  // 3 px apart along y with 1 mm rows: 3 mm (x spacing must not leak into y).
  EXPECT_DOUBLE_EQ(compute_metrics(pixel(6, 8, 2, 5), gt, {2.0, 1.0}, 1.0).hd95, 3.0);
}

TEST(Metrics, ThreeDimensionalAnisotropic) {
  std::vector<uint8_t> a(3 * 3 * 5, 0), b(3 * 3 * 5, 0);
  a[(1 * 3 + 1) * 3 + 1] = 1;  // (1,1,1)
  b[(3 * 3 + 1) * 3 + 1] = 1;  // (1,1,3)
  MaskView va{a.data(), {3, 3, 5}, {1.0, 1.0, 2.5}}, vb{b.data(), {3, 3, 5}, {1.0, 1.0, 2.5}};
  EXPECT_DOUBLE_EQ(hd95(va, vb), 5.0);
  EXPECT_DOUBLE_EQ(normalized_surface_dice(va, vb, 5.0), 1.0);
  EXPECT_DOUBLE_EQ(normalized_surface_dice(va, vb, 4.99), 0.0);
  EXPECT_DOUBLE_EQ(dice(va, vb), 0.0);
}

TEST(Metrics, Hd95InterpolatesLikeNumpy) {
  // Truth: the top row (10 px, all outline); prediction: one pixel 3 rows below x = 0.
  const auto gt = rect_mask(5, 10, 0, 0, 10, 1);
  const auto pred = pixel(5, 10, 0, 3);
  // pred -> gt: {3}; gt -> pred: sqrt(x^2 + 9), x = 0..9. numpy percentile 95
  // of 10 sorted values: position 8.55.
  const double v8 = std::sqrt(64.0 + 9), v9 = std::sqrt(81.0 + 9);
  const double expected = v8 + 0.55 * (v9 - v8);
  const Metrics m = compute_metrics(pred, gt, {1.0, 1.0}, 5.0);
  EXPECT_NEAR(m.hd95, expected, 1e-12);
  // Within 5 px: the prediction's pixel and gt pixels x = 0..4: 6 of 11.
  EXPECT_NEAR(m.nsd, 6.0 / 11.0, 1e-12);
  EXPECT_NEAR(percentile({1, 2, 3, 4}, 50), 2.5, 1e-12);
  EXPECT_NEAR(percentile({10, 0, 5}, 95), 9.5, 1e-12);
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(Metrics, EmptyMasks) {
  const segment::BinaryMask empty(8, 8);
  const auto one = rect_mask(8, 8, 2, 2, 4, 4);
  const Metrics both = compute_metrics(empty, empty, {1, 1}, 1.0);
  EXPECT_EQ(both.dice, 1.0);
  EXPECT_EQ(both.iou, 1.0);
  EXPECT_EQ(both.nsd, 1.0);
  EXPECT_EQ(both.hd95, 0.0);
  for (const Metrics& m :
       {compute_metrics(empty, one, {1, 1}, 1.0), compute_metrics(one, empty, {1, 1}, 1.0)}) {
    EXPECT_EQ(m.dice, 0.0);
    EXPECT_EQ(m.iou, 0.0);
    EXPECT_EQ(m.nsd, 0.0);
    EXPECT_TRUE(std::isinf(m.hd95));
  }
  const Metrics no_surface = compute_metrics(one, one, {1, 1}, 1.0, false);
  EXPECT_EQ(no_surface.dice, 1.0);  // a perfect match is exactly 1
  EXPECT_TRUE(std::isnan(no_surface.nsd));
  EXPECT_TRUE(std::isnan(no_surface.hd95));
}

TEST(Metrics, DiceUsesMedicoSamFormula) {
  const auto a = rect_mask(10, 10, 0, 0, 5, 2);  // 10 px
  const auto b = rect_mask(10, 10, 0, 0, 5, 1);  // 5 px inside a
  EXPECT_DOUBLE_EQ(dice(view_of(a), view_of(b)), 2.0 * 5 / 15);
  EXPECT_DOUBLE_EQ(iou(view_of(a), view_of(b)), 0.5);
  EXPECT_NEAR(dice(view_of(a), view_of(b)), segment::dice(a, b),
              1e-8);  // training's rule differs only by eps
}

TEST(Metrics, DistanceTransformMatchesBruteForce) {
  std::mt19937 rng(7);
  const std::array<int64_t, 3> size{9, 7, 5};
  const std::array<double, 3> spacing{0.7, 1.3, 2.9};
  std::vector<uint8_t> f(9 * 7 * 5, 0);
  for (auto& v : f) v = rng() % 13 == 0;
  const auto d2 = squared_distance_transform(f.data(), size, spacing);
  for (int64_t z = 0; z < 5; ++z)
    for (int64_t y = 0; y < 7; ++y)
      for (int64_t x = 0; x < 9; ++x) {
        double best = std::numeric_limits<double>::infinity();
        for (int64_t k = 0; k < 5; ++k)
          for (int64_t j = 0; j < 7; ++j)
            for (int64_t i = 0; i < 9; ++i)
              if (f[(k * 7 + j) * 9 + i]) {
                const double dx = (x - i) * spacing[0], dy = (y - j) * spacing[1],
                             dz = (z - k) * spacing[2];
                best = std::min(best, dx * dx + dy * dy + dz * dz);
              }
        ASSERT_NEAR(d2[(z * 7 + y) * 9 + x], best, 1e-9) << x << "," << y << "," << z;
      }
  std::vector<uint8_t> none(9 * 7 * 5, 0);
  EXPECT_TRUE(std::isinf(squared_distance_transform(none.data(), size, spacing)[0]));
}

TEST(Metrics, MismatchedGridsAreRejected) {
  EXPECT_THROW(compute_metrics(segment::BinaryMask(4, 4), segment::BinaryMask(4, 5), {1, 1}, 1.0),
               InputError);
}
