// Propagation logic (micro_sam segment_mask_in_volume semantics) against an
// oracle that returns the true object under each prompt: order of slices,
// IoU stops, gap filling, stop annotations and the prompts derived from masks.
#include "medicosam/segment/propagation.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "medicosam/core/error.hpp"
#include "oracle.hpp"

namespace medicosam::segment {
namespace {

using testing::Disc;
using testing::label_mask;
using testing::make_truth;
using testing::OracleStack;

constexpr int kH = 48, kW = 64;

std::vector<BinaryMask> empty_stack(int Z) {
  return std::vector<BinaryMask>(Z, BinaryMask(kH, kW));
}

// A tube along z from slice 4 to 15 (radius changes slowly, so adjacent IoU > 0.5).
std::vector<testing::LabelSlice> tube(int Z) {
  return make_truth(
      Z, kH, kW,
      {{1, 30, 24, [](int z) { return (z >= 4 && z <= 15) ? 8.0 + 0.3 * (z - 4) : 0.0; }}});
}

TEST(Propagation, EveryProjectionCarriesTheObjectExactlyThroughItsExtent) {
  const int Z = 20;
  const auto truth = tube(Z);
  for (auto proj : {Projection::kBox, Projection::kMask, Projection::kPoints,
                    Projection::kPointsAndMask, Projection::kSinglePoint}) {
    SCOPED_TRACE(projection_name(proj));
    OracleStack oracle(truth, kH, kW);
    auto seg = empty_stack(Z);
    seg[10] = label_mask(truth[10], kH, kW, 1);
    PropagationOptions opt;
    opt.projection = projection_flags(proj);
    const auto r = segment_mask_in_volume(oracle, seg, {10}, opt);
    EXPECT_EQ(r.z_min, 4);
    EXPECT_EQ(r.z_max, 15);
    for (int z = 0; z < Z; ++z)
      EXPECT_EQ(seg[z].data, label_mask(truth[z], kH, kW, 1).data) << "slice " << z;
    // Downward 9..4 then the failing slice 3, upward 11..15 then the failing 16: both
    // directions advance together, one slice each per round. One decoder call per slice.
    const std::vector<int> expected{9, 11, 8, 12, 7, 13, 6, 14, 5, 15, 4, 16, 3};
    EXPECT_EQ(oracle.called_slices(), expected);
    ASSERT_EQ(r.steps.size(), expected.size());
    EXPECT_EQ(r.steps.back().z, 3);
    EXPECT_FALSE(r.steps.back().written);  // slice 3: IoU 0 with slice 4
    EXPECT_EQ(r.steps.back().from, 4);
    EXPECT_EQ(r.steps[11].z, 16);
    EXPECT_FALSE(r.steps[11].written);
  }
}

TEST(Propagation, StopsBeforeTheSliceWhoseIoUDropsBelowTheThreshold) {
  const int Z = 12;
  // The object jumps sideways by 10 px at slice 8: IoU with slice 7 is about 0.35.
  auto truth = make_truth(
      Z, kH, kW,
      {{1, 25, 24, [](int) { return 10.0; }, [](int z) { return z >= 8 ? 10.0 : 0.0; }}});
  OracleStack oracle(truth, kH, kW);
  auto seg = empty_stack(Z);
  seg[5] = label_mask(truth[5], kH, kW, 1);
  PropagationOptions opt;
  opt.projection = projection_flags(Projection::kMask);
  opt.iou_threshold = 0.5;
  auto r = segment_mask_in_volume(oracle, seg, {5}, opt);
  EXPECT_EQ(r.z_min, 0);
  EXPECT_EQ(r.z_max, 7);
  EXPECT_TRUE(seg[8].empty());  // not written
  // The upward walk's last step (the downward one goes on to slice 0 in the same rounds).
  const auto last_up = std::find_if(r.steps.rbegin(), r.steps.rend(), [](const auto& s) { return s.z > 5; });
  ASSERT_NE(last_up, r.steps.rend());
  const auto& last = *last_up;
  EXPECT_EQ(last.z, 8);
  EXPECT_FALSE(last.written);
  EXPECT_LT(last.iou, 0.5);
  EXPECT_GT(last.iou, 0.2);

  // A lower threshold lets it through.
  OracleStack oracle2(truth, kH, kW);
  auto seg2 = empty_stack(Z);
  seg2[5] = label_mask(truth[5], kH, kW, 1);
  opt.iou_threshold = 0.2;
  r = segment_mask_in_volume(oracle2, seg2, {5}, opt);
  EXPECT_EQ(r.z_max, Z - 1);
  EXPECT_EQ(seg2[8].data, label_mask(truth[8], kH, kW, 1).data);
}

TEST(Propagation, FillsGapsFromBothEndsTowardsTheMiddleWithoutThreshold) {
  const int Z = 30;
  // A cone: radius grows with z; annotated at 2, 5 (gap 3), 7 (gap 2), 12 (gap 5), 16 (gap 4).
  auto truth = make_truth(Z, kH, kW, {{1, 32, 24, [](int z) { return 3.0 + 0.6 * z; }}});
  OracleStack oracle(truth, kH, kW);
  auto seg = empty_stack(Z);
  const std::vector<int> ann{16, 2, 7, 12, 5};  // any order
  for (int z : ann) seg[z] = label_mask(truth[z], kH, kW, 1);
  PropagationOptions opt;
  opt.projection = projection_flags(Projection::kBox);
  opt.iou_threshold = 0.99;  // outward stops at once (the cone widens); gaps ignore it
  const auto r = segment_mask_in_volume(oracle, seg, ann, opt);
  // Outward: 1 (fails at 0.99? radius 3.6 vs 4.2 -> IoU ~0.73: stops, not written), 17 likewise.
  // Every walk advances one slice per round: round 1 = outward 1 and 17, gap 2..5 (odd) up 3 and
  // down 4, gap 7..12 (5, odd) up 8 and down 11, gap 12..16 (even) up 13 and down 15; round 2 = the
  // 7..12 walks' second slices 9 and 10; then the middles (gap 5..7: slice 6; gap 12..16: slice 14)
  // from the OR of both neighbours.
  const std::vector<int> expected{1, 17, 3, 4, 8, 11, 13, 15, 9, 10, 6, 14};
  EXPECT_EQ(oracle.called_slices(), expected);
  EXPECT_EQ(r.z_min, 2);
  EXPECT_EQ(r.z_max, 16);
  for (int z = 2; z <= 16; ++z) EXPECT_EQ(seg[z].data, label_mask(truth[z], kH, kW, 1).data) << z;
  EXPECT_TRUE(seg[1].empty());
  EXPECT_TRUE(seg[17].empty());
  // The middle slices were prompted with the union of their neighbours.
  const auto& mid = oracle.calls[10];
  ASSERT_EQ(mid.z, 6);
  ASSERT_TRUE(mid.prompt.box);
  const auto union_box =
      box_from_mask(label_mask(truth[7], kH, kW, 1), opt.box_extension);  // 7 is the larger
  EXPECT_EQ(mid.prompt.box->x0, union_box->x0);
  EXPECT_EQ(mid.prompt.box->x1, union_box->x1);
  ASSERT_EQ(r.steps[10].z, 6);
  EXPECT_EQ(r.steps[10].from, -1);
}

TEST(Propagation, StopAnnotationsBoundTheObject) {
  const int Z = 20;
  const auto truth = tube(Z);
  OracleStack oracle(truth, kH, kW);
  auto seg = empty_stack(Z);
  // Slice 6 is a stop (the user says the object ends there: empty mask), 12 is annotated.
  seg[12] = label_mask(truth[12], kH, kW, 1);
  PropagationOptions opt;
  opt.projection = projection_flags(Projection::kMask);
  opt.stop_lower = true;
  const auto r = segment_mask_in_volume(oracle, seg, {6, 12}, opt);
  // Upward from 12 (stopping at the failing 16) and down the gap to the stop, side by side.
  const std::vector<int> expected{13, 11, 14, 10, 15, 9, 16, 8, 7};
  EXPECT_EQ(oracle.called_slices(), expected);
  EXPECT_EQ(r.z_min, 6);
  EXPECT_EQ(r.z_max, 15);
  EXPECT_TRUE(seg[6].empty());
  for (int z = 7; z <= 15; ++z) EXPECT_FALSE(seg[z].empty()) << z;
  for (int z = 0; z < 6; ++z) EXPECT_TRUE(seg[z].empty()) << z;

  // Upper stop: nothing above it is decoded.
  OracleStack o2(truth, kH, kW);
  auto seg2 = empty_stack(Z);
  seg2[8] = label_mask(truth[8], kH, kW, 1);
  opt.stop_lower = false;
  opt.stop_upper = true;
  const auto r2 = segment_mask_in_volume(o2, seg2, {8, 11}, opt);
  const std::vector<int> expected2{7, 9, 6, 10, 5, 4, 3};
  EXPECT_EQ(o2.called_slices(), expected2);
  EXPECT_EQ(r2.z_max, 11);
  EXPECT_TRUE(seg2[11].empty());
}

TEST(Propagation, SecondObjectInTheSliceIsNotPickedUp) {
  const int Z = 10;
  auto truth = make_truth(
      Z, kH, kW,
      {{1, 15, 24, [](int) { return 7.0; }}, {2, 48, 24, [](int z) { return z < 7 ? 7.0 : 0.0; }}});
  OracleStack oracle(truth, kH, kW);
  auto seg = empty_stack(Z);
  seg[3] = label_mask(truth[3], kH, kW, 2);
  PropagationOptions opt;
  opt.projection = projection_flags(Projection::kPoints);
  const auto r = segment_mask_in_volume(oracle, seg, {3}, opt);
  EXPECT_EQ(r.z_min, 0);
  EXPECT_EQ(r.z_max, 6);
  for (int z = 0; z <= 6; ++z) EXPECT_EQ(seg[z].data, label_mask(truth[z], kH, kW, 2).data) << z;
}

TEST(Propagation, RejectsBadArguments) {
  OracleStack oracle(tube(5), kH, kW);
  auto seg = empty_stack(5);
  EXPECT_THROW(segment_mask_in_volume(oracle, seg, {}), InputError);
  EXPECT_THROW(segment_mask_in_volume(oracle, seg, {5}), InputError);
  EXPECT_THROW(segment_mask_in_volume(oracle, seg, {-1}), InputError);
  auto short_stack = empty_stack(4);
  EXPECT_THROW(segment_mask_in_volume(oracle, short_stack, {1}), InputError);
  seg[2] = BinaryMask(10, 10);
  EXPECT_THROW(segment_mask_in_volume(oracle, seg, {1}), InputError);
  EXPECT_THROW(parse_projection("lasso"), InputError);
  EXPECT_EQ(parse_projection("points_and_mask"), Projection::kPointsAndMask);
}

TEST(Propagation, ImageStackSegmenterEncodesEachSliceOnce) {
  const int Z = 20;
  const auto truth = tube(Z);
  testing::OracleImageSegmenter image_oracle(truth, kH, kW);
  ImageStackSegmenter stack(image_oracle, Z, {kH, kW}, [](int z) {
    io::RGB8Image img;
    img.height = kH;
    img.width = kW;
    img.data.assign(size_t(kH) * kW * 3, static_cast<uint8_t>(z));
    return img;
  });
  auto seg = empty_stack(Z);
  seg[10] = label_mask(truth[10], kH, kW, 1);
  const auto r = segment_mask_in_volume(stack, seg, {10});  // defaults: single_point, 0.5, 0.05
  EXPECT_EQ(r.z_min, 4);
  EXPECT_EQ(r.z_max, 15);
  EXPECT_EQ(stack.encoded_slices(), 13);
  EXPECT_EQ(image_oracle.images_set, 13);
  for (int z = 0; z < Z; ++z) EXPECT_EQ(seg[z].data, label_mask(truth[z], kH, kW, 1).data) << z;
}

// ---------------------------------------------------------- prompts from masks

BinaryMask rect(int H, int W, int x0, int y0, int x1, int y1) {
  BinaryMask m(H, W);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) m.data[size_t(y) * W + x] = 1;
  return m;
}

TEST(PromptsFromMask, BoxExtensionFollowsMicroSam) {
  const auto m = rect(40, 50, 10, 5, 20, 25);  // 10 wide, 20 high
  auto b = box_from_mask(m, 0.0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->x0, 10);
  EXPECT_EQ(b->y0, 5);
  EXPECT_EQ(b->x1, 20);
  EXPECT_EQ(b->y1, 25);
  b = box_from_mask(m, 0.25);  // ex 2.5 -> 7.5, 22.5 -> half to even: 8, 22; ey 5 -> 0, 30
  EXPECT_EQ(b->x0, 8);
  EXPECT_EQ(b->x1, 22);
  EXPECT_EQ(b->y0, 0);
  EXPECT_EQ(b->y1, 30);
  b = box_from_mask(m, 7);  // pixels, clipped to the image
  EXPECT_EQ(b->x0, 3);
  EXPECT_EQ(b->y0, 0);
  EXPECT_EQ(b->x1, 27);
  EXPECT_EQ(b->y1, 32);
  EXPECT_FALSE(box_from_mask(BinaryMask(4, 4)));
}

TEST(PromptsFromMask, MaskLogitsAreResizedPaddedAndSaturated) {
  // 40 x 80 mask, left half set: at L = 64 the content is 32 x 64, rows 32.. are padding.
  BinaryMask m = rect(40, 80, 0, 0, 40, 40);
  const auto lg = mask_logits_from_mask(m, 64);
  ASSERT_EQ(lg.size(), 64u * 64u);
  const float pos = std::log(0.999f / 0.001f);
  EXPECT_NEAR(lg[10 * 64 + 5], pos, 1e-4);
  EXPECT_NEAR(lg[10 * 64 + 40], -pos, 1e-4);
  EXPECT_NEAR(lg[40 * 64 + 5], -pos, 1e-4);  // padding is background
  int positive = 0;
  for (float v : lg) positive += v > 0;
  EXPECT_EQ(positive, 32 * 32);
}

TEST(PromptsFromMask, SinglePointIsTheInnermostPixelAndPointsSplitByLabel) {
  auto truth = make_truth(1, kH, kW, {{1, 30, 20, [](int) { return 9.0; }}});
  const auto disc = label_mask(truth[0], kH, kW, 1);
  const auto single = points_from_mask(disc, 0.0, true);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_NEAR(single[0].x, 30, 1.0);
  EXPECT_NEAR(single[0].y, 20, 1.0);
  EXPECT_EQ(single[0].label, 1);
  const auto pts = points_from_mask(disc, 0.1);
  int pos = 0, neg = 0;
  for (const auto& p : pts) {
    const bool inside = disc.at(int(p.y), int(p.x));
    EXPECT_EQ(inside, p.label == 1) << p.x << "," << p.y;
    (p.label ? pos : neg)++;
  }
  EXPECT_GE(pos, 1);
  EXPECT_GE(neg, 1);  // the corners of the box lie outside the disc
  EXPECT_TRUE(points_from_mask(BinaryMask(5, 5)).empty());
  // An object that fills its crop still yields its centre.
  const auto full = points_from_mask(rect(20, 20, 5, 5, 16, 16), 0.0, true);
  EXPECT_NEAR(full[0].x, 10, 1.0);
  EXPECT_NEAR(full[0].y, 10, 1.0);
}

TEST(PromptsFromMask, IoUMatchesMicroSam) {
  const auto a = rect(10, 10, 0, 0, 4, 4), b = rect(10, 10, 2, 2, 6, 6);
  EXPECT_NEAR(mask_iou(a, b), 4.0 / 28.0, 1e-6);
  EXPECT_EQ(mask_iou(BinaryMask(3, 3), BinaryMask(3, 3)), 0.0);
}

}  // namespace
}  // namespace medicosam::segment
