// GrabCut baseline: segments easy synthetic objects from a box or a click,
// honours corrective clicks, and is deterministic.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/grabcut.hpp"
#include "medicosam/eval/interactive2d.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;

namespace {
segment::BinaryMask as_mask(int h, int w, std::vector<uint8_t> m) {
  return segment::BinaryMask(h, w, std::move(m));
}
}  // namespace

TEST(GrabCut, BoxAndPointOnAnEasyObject) {
  const int H = 120, W = 160;
  const auto gt = disc_mask(H, W, 70, 60, 28);
  const auto img = synthetic_image(gt);
  GrabCutSegmenter gc;
  gc.set_image(img.data.data(), H, W);
  predict::Prompt box;
  box.box = segment::bounding_box(gt);
  EXPECT_GT(segment::dice(as_mask(H, W, gc.segment(box)), gt), 0.95);
  predict::Prompt point;
  point.points = {segment::object_center(gt)};
  EXPECT_GT(segment::dice(as_mask(H, W, gc.segment(point)), gt), 0.9);
  // Same prompt, same mask.
  EXPECT_EQ(gc.segment(box), gc.segment(box));
  // Only a negative click: nothing to segment.
  predict::Prompt neg;
  neg.points = {{5, 5, 0}};
  EXPECT_EQ(as_mask(H, W, gc.segment(neg)).area(), 0);
}

TEST(GrabCut, CorrectiveClicksAreHardConstraints) {
  // Two touching blobs of the same colour; the truth is the left one.
  const int H = 100, W = 160;
  const auto left = rect_mask(H, W, 30, 30, 80, 70), right = rect_mask(H, W, 80, 30, 130, 70);
  GrabCutSegmenter gc;
  const auto img = synthetic_image(mask_or(left, right));
  gc.set_image(img.data.data(), H, W);
  predict::Prompt p;
  p.box = predict::Box{30, 30, 130, 70};
  const auto before = as_mask(H, W, gc.segment(p));
  EXPECT_TRUE(before.at(50, 110));  // both blobs look alike
  p.points = {{55, 50, 1}, {110, 50, 0}};
  const auto after = as_mask(H, W, gc.segment(p));
  EXPECT_TRUE(after.at(50, 55));
  EXPECT_FALSE(after.at(50, 110));
  EXPECT_FALSE(after.at(50, 112));  // the disc around the click, too
  // Outside the box is background.
  EXPECT_FALSE(after.at(10, 10));
}

TEST(GrabCut, DownscaledRoiAndWholeImageBox) {
  const int H = 600, W = 640;
  const auto gt = disc_mask(H, W, 320, 300, 150);
  const auto img = synthetic_image(gt);
  GrabCutOptions o;
  o.max_side = 128;
  GrabCutSegmenter gc(o);
  gc.set_image(img.data.data(), H, W);
  predict::Prompt p;
  p.box = segment::bounding_box(gt);
  EXPECT_GT(segment::dice(as_mask(H, W, gc.segment(p)), gt), 0.95);
  p.box = predict::Box{0, 0, double(W), double(H)};  // no background outside: the frame is used
  EXPECT_NO_THROW(gc.segment(p));
}

TEST(GrabCut, RunsThroughTheProtocol) {
  const int H = 96, W = 128;
  const auto gt = mask_or(disc_mask(H, W, 30, 40, 15), rect_mask(H, W, 80, 20, 110, 70));
  const Sample2D s = make_sample("x", synthetic_image(gt), {{"foreground", gt}});
  GrabCutSegmenter gc;
  Interactive2DOptions o;
  o.progress = false;
  o.n_iterations = 3;
  const auto cases = run_interactive2d_sample(gc, s, "synthetic", o);
  ASSERT_EQ(cases.size(), 2u);
  for (const auto& c : cases) {
    EXPECT_EQ(c.n_objects, 2);
    EXPECT_GT(c.iterations.back().dice, 0.9) << start_name(c.start);
  }
  // Deterministic end to end.
  const auto again = run_interactive2d_sample(gc, s, "synthetic", o);
  for (size_t i = 0; i < cases.size(); ++i)
    for (size_t it = 0; it < cases[i].iterations.size(); ++it)
      EXPECT_EQ(cases[i].iterations[it].dice, again[i].iterations[it].dice);
}

TEST(GrabCut, BadInputIsRejected) {
  GrabCutOptions o;
  o.iterations = 0;
  EXPECT_THROW(GrabCutSegmenter{o}, InputError);
  GrabCutSegmenter gc;
  predict::Prompt p;
  p.box = predict::Box{0, 0, 10, 10};
  EXPECT_THROW(gc.segment(p), InputError);  // no image
  const auto img = synthetic_image(rect_mask(20, 20, 5, 5, 10, 10));
  gc.set_image(img.data.data(), 20, 20);
  p.box = predict::Box{0, 0, 30, 10};
  EXPECT_THROW(gc.segment(p), InputError);  // outside the image
}

TEST(GrabCut, WholeImageBoxIsOpenCvsRectangleGrabCut) {
  // With a region of interest covering the image and no downscaling, the box
  // start is exactly cv::grabCut(GC_INIT_WITH_RECT) on the full image.
  const int H = 90, W = 120;
  const auto gt = mask_or(disc_mask(H, W, 50, 45, 22), rect_mask(H, W, 60, 30, 90, 60));
  auto img = synthetic_image(gt, 3);
  for (size_t i = 0; i < img.data.size(); i += 7)
    img.data[i] = uint8_t(img.data[i] ^ 0x55);  // clutter
  GrabCutOptions o;
  o.max_side = 0;
  o.roi_margin = 10;
  o.iterations = 4;
  GrabCutSegmenter gc(o);
  gc.set_image(img.data.data(), H, W);
  predict::Prompt p;
  p.box = segment::bounding_box(gt);
  const auto ours = gc.segment(p);

  cv::Mat rgb(H, W, CV_8UC3, img.data.data()), bgr, mask, bgd, fgd;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::theRNG().state = kGrabCutRngState;
  cv::grabCut(bgr, mask,
              cv::Rect(int(p.box->x0), int(p.box->y0), int(p.box->x1 - p.box->x0),
                       int(p.box->y1 - p.box->y0)),
              bgd, fgd, 4, cv::GC_INIT_WITH_RECT);
  const cv::Mat fg = (mask == cv::GC_FGD) | (mask == cv::GC_PR_FGD);
  std::vector<uint8_t> expected(fg.data, fg.data + fg.total());
  for (auto& v : expected) v = v != 0;
  EXPECT_EQ(ours, expected);
  EXPECT_GT(segment::BinaryMask(H, W, ours).area(), 0);
}
