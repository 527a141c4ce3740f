#include <gtest/gtest.h>

#include "medicosam/segment/prompt_sampling.hpp"

using namespace medicosam;
using namespace medicosam::segment;

namespace {
BinaryMask rect(int h, int w, int x0, int y0, int x1, int y1) {
  BinaryMask m(h, w);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) m.data[size_t(y) * w + x] = 1;
  return m;
}
}  // namespace

TEST(PromptSampling, BoundingBoxHasExclusiveMax) {
  const auto b = bounding_box(rect(20, 30, 5, 7, 12, 9));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x0, 5);
  EXPECT_EQ(b->y0, 7);
  EXPECT_EQ(b->x1, 12);
  EXPECT_EQ(b->y1, 9);
  EXPECT_FALSE(bounding_box(BinaryMask(4, 4)));
}

TEST(PromptSampling, CenterIsFarthestFromTheBoundary) {
  // An L shape: the thick part wins.
  auto m = rect(40, 40, 2, 2, 22, 22);
  for (int y = 22; y < 38; ++y)
    for (int x = 2; x < 6; ++x) m.data[size_t(y) * 40 + x] = 1;
  const auto c = object_center(m);
  EXPECT_NEAR(c.x, 11.5, 1.0);
  EXPECT_NEAR(c.y, 11.5, 1.0);
  EXPECT_TRUE(m.at(int(c.y), int(c.x)));
}

TEST(PromptSampling, CorrectivePointsComeFromErrorRegions) {
  const auto gt = rect(50, 50, 10, 10, 30, 30);
  const auto pred = rect(50, 50, 20, 10, 40, 30);  // misses x 10..19, over-segments x 30..39
  Rng rng(7);
  for (int i = 0; i < 50; ++i) {
    const auto pts = corrective_points(gt, pred, rng);
    ASSERT_EQ(pts.size(), 2u);
    EXPECT_EQ(pts[0].label, 1);
    EXPECT_TRUE(gt.at(int(pts[0].y), int(pts[0].x)) && !pred.at(int(pts[0].y), int(pts[0].x)));
    EXPECT_EQ(pts[1].label, 0);
    EXPECT_TRUE(!gt.at(int(pts[1].y), int(pts[1].x)) && pred.at(int(pts[1].y), int(pts[1].x)));
  }
}

TEST(PromptSampling, CorrectivePointsFallBackWhenThePredictionIsPerfect) {
  const auto gt = rect(50, 50, 10, 10, 30, 30);
  Rng rng(3);
  for (int i = 0; i < 50; ++i) {
    const auto pts = corrective_points(gt, gt, rng);
    ASSERT_EQ(pts.size(), 2u);
    EXPECT_TRUE(gt.at(int(pts[0].y), int(pts[0].x)));  // from the true positives
    // Negative from the 3-px ring around the box.
    EXPECT_FALSE(gt.at(int(pts[1].y), int(pts[1].x)));
    EXPECT_GE(pts[1].x, 7);
    EXPECT_LT(pts[1].x, 33);
    EXPECT_GE(pts[1].y, 7);
    EXPECT_LT(pts[1].y, 33);
  }
}

TEST(PromptSampling, SameSeedSameSequence) {
  const auto gt = rect(64, 64, 5, 5, 40, 50);
  const auto pred = rect(64, 64, 10, 0, 45, 30);
  Rng a(42), b(42), c(43);
  const auto pa = corrective_points(gt, pred, a), pb = corrective_points(gt, pred, b);
  EXPECT_EQ(pa[0].x, pb[0].x);
  EXPECT_EQ(pa[1].y, pb[1].y);
  bool differs = false;
  for (int i = 0; i < 10 && !differs; ++i) {
    const auto q = corrective_points(gt, pred, c);
    const auto r = corrective_points(gt, pred, a);
    differs = q[0].x != r[0].x || q[0].y != r[0].y;
  }
  EXPECT_TRUE(differs);
}

TEST(PromptSampling, DistortedBoxOnlyGrowsAndStaysInside) {
  Rng rng(1);
  const predict::Box b{10, 20, 30, 60};
  for (int i = 0; i < 100; ++i) {
    const auto d = distort_box(b, 0.1, 64, 40, rng);
    EXPECT_LE(d.x0, b.x0);
    EXPECT_GE(d.x0, b.x0 - 2.0);
    EXPECT_LE(d.y0, b.y0);
    EXPECT_GE(d.x1, b.x1);
    EXPECT_LE(d.x1, 32.0);
    EXPECT_LE(d.y1, 64.0);
  }
}

TEST(PromptSampling, RandomPointsRespectRegions) {
  // A disk: the bbox grown by 5 px minus the disk dilated 5 times leaves the corners.
  BinaryMask m(60, 60);
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 60; ++x) m.data[size_t(y) * 60 + x] = (x - 30) * (x - 30) + (y - 30) * (y - 30) <= 100;
  Rng rng(5);
  const auto pts = random_points(m, 3, 4, 5, rng);
  ASSERT_EQ(pts.size(), 7u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pts[i].label, 1);
    EXPECT_TRUE(m.at(int(pts[i].y), int(pts[i].x)));
  }
  for (int i = 3; i < 7; ++i) {
    EXPECT_EQ(pts[i].label, 0);
    const int x = int(pts[i].x), y = int(pts[i].y);
    EXPECT_FALSE(m.at(y, x));
    EXPECT_TRUE(x >= 15 && x < 46 && y >= 15 && y < 46) << x << "," << y;  // bbox [20,41) grown by 5
    EXPECT_GT((x - 30) * (x - 30) + (y - 30) * (y - 30), 100 + 25);  // outside the dilated disk
  }
  // A rectangle fills its grown box when dilated: negatives fall back to any background.
  const auto r = rect(60, 60, 20, 20, 40, 40);
  for (const auto& p : random_points(r, 0, 3, 5, rng)) EXPECT_FALSE(r.at(int(p.y), int(p.x)));
}

TEST(PromptSampling, ComponentsBelowMinSizeAreDropped) {
  auto m = rect(30, 30, 1, 1, 11, 11);
  m.data[size_t(20) * 30 + 20] = 1;  // a single stray pixel
  EXPECT_EQ(connected_components(m, 1).size(), 2u);
  const auto big = connected_components(m, 20);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_EQ(big[0].area(), 100);
}

TEST(PromptSampling, DiceAndIouByHand) {
  const auto a = rect(10, 10, 0, 0, 4, 5);  // 20 px
  const auto b = rect(10, 10, 2, 0, 6, 5);  // 20 px, overlap 10
  EXPECT_NEAR(dice(a, b), 20.0 / 40.0, 1e-6);
  EXPECT_NEAR(iou(a, b), 10.0 / 30.0, 1e-9);
  EXPECT_NEAR(dice(a, a), 1.0, 1e-6);
  EXPECT_EQ(dice(BinaryMask(3, 3), BinaryMask(3, 3)), 1.0);
}
