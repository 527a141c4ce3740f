// The filled-box baseline: exactly the object's bounding rectangle from the
// evaluation's tight box, the same through the protocol's correction rounds,
// and no point start.
#include <gtest/gtest.h>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/boxfill.hpp"
#include "medicosam/eval/interactive2d.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;

TEST(BoxFill, FillsPixelsWhoseCentreIsInTheBox) {
  BoxFillSegmenter bf;
  const int H = 10, W = 12;
  const std::vector<uint8_t> rgb(size_t(H) * W * 3, 0);
  bf.set_image(rgb.data(), H, W);
  predict::Prompt p;
  p.box = predict::Box{2.4, 3.0, 5.6, 6.0};
  const auto m = bf.segment(p);
  int n = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const bool inside = x >= 2 && x <= 5 && y >= 3 && y <= 5;
      EXPECT_EQ(m[size_t(y) * W + x], inside ? 1 : 0) << x << "," << y;
      n += m[size_t(y) * W + x];
    }
  EXPECT_EQ(n, 12);
  // Clicks change nothing; a point without a box is refused with a reason.
  p.points = {{3, 4, 0}};
  EXPECT_EQ(bf.segment(p), m);
  predict::Prompt point;
  point.points = {{3, 4, 1}};
  EXPECT_THROW(bf.segment(point), InputError);
}

TEST(BoxFill, ScoresTheBoundingRectangleThroughTheProtocol) {
  const int H = 90, W = 120;
  const auto gt = disc_mask(H, W, 60, 45, 20);
  const auto sample = make_sample("disc", synthetic_image(gt), {{"foreground", gt}});
  BoxFillSegmenter bf;
  Interactive2DOptions o;
  o.progress = false;
  o.starts = {StartPrompt::kBox};
  o.n_iterations = 4;
  const auto cases = run_interactive2d_sample(bf, sample, "synthetic", o);
  ASSERT_EQ(cases.size(), 1u);
  // Independently: the tight box's rectangle against the disc.
  const auto b = segment::bounding_box(gt);
  ASSERT_TRUE(b);
  const double rect = (b->x1 - b->x0) * (b->y1 - b->y0);
  const double disc = double(gt.area());
  const double expected = 2 * disc / (disc + rect);
  ASSERT_EQ(cases[0].iterations.size(), 4u);
  for (const auto& it : cases[0].iterations) EXPECT_NEAR(it.dice, expected, 1e-12);
  EXPECT_LT(expected, 0.9);  // a disc fills pi/4 of its box
}
