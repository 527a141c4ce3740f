// Automatic mask generation against the official Segment Anything generator:
// - fixtures/sam_parity/amg_*: the tiny random-weight SAM on img0 (no crops,
//   no small-region removal);
// - tests/segment/data/amg_*.json (make_amg_fixtures.py): the same model on a
//   56x59 window of img0 with crop layers, min_mask_region_area and both, each
//   with masks in the output.
// Same number of masks, the reference and our masks matched one to one with
// IoU >= 0.9 per pair, the same predicted IoU / stability score and prompt
// point; for the data/ runs also the same bbox, crop box, area (within float
// noise) and order. Plus the building blocks.
#include "medicosam/segment/amg.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/segment/propagation.hpp"

namespace medicosam::segment {
namespace {

const std::string kDir = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/";

predict::SamPredictor& tiny_model() {
  static predict::SamPredictor p(kDir + "sam_tiny_seed0.pth", {2, "cpu"});
  return p;
}

// The reference mask stacks are bool (N, H, W), some written in Fortran order
// (numpy keeps the order of the array it saved); read both.
std::vector<uint8_t> read_mask_stack(const std::string& path, size_t n, int H, int W) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  const std::string header = bytes.substr(10, header_len);
  const bool fortran = header.find("'fortran_order': True") != std::string::npos;
  const char* data = bytes.data() + 10 + header_len;
  const size_t hw = size_t(H) * W;
  if (bytes.size() != 10 + header_len + n * hw) throw InputError(path + ": unexpected size");
  std::vector<uint8_t> out(n * hw);
  for (size_t k = 0; k < n; ++k)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        out[k * hw + size_t(y) * W + x] =
            fortran ? data[k + n * (y + size_t(H) * x)] : data[k * hw + size_t(y) * W + x];
  return out;
}

AmgOptions options_from(const nlohmann::json& p) {
  AmgOptions o;
  o.points_per_side = p["points_per_side"];
  o.points_per_batch = p["points_per_batch"];
  o.pred_iou_thresh = p["pred_iou_thresh"];
  o.stability_score_thresh = p["stability_score_thresh"];
  if (p.contains("stability_score_offset")) o.stability_score_offset = p["stability_score_offset"];
  if (p.contains("box_nms_thresh")) o.box_nms_thresh = p["box_nms_thresh"];
  if (p.contains("crop_n_layers")) o.crop_n_layers = p["crop_n_layers"];
  if (p.contains("crop_nms_thresh")) o.crop_nms_thresh = p["crop_nms_thresh"];
  if (p.contains("crop_overlap_ratio")) o.crop_overlap_ratio = p["crop_overlap_ratio"];
  if (p.contains("crop_n_points_downscale_factor")) {
    o.crop_n_points_downscale_factor = p["crop_n_points_downscale_factor"];
  }
  if (p.contains("min_mask_region_area")) o.min_mask_region_area = p["min_mask_region_area"];
  return o;
}

// What a run is compared on; `strict` adds the whole bbox, area, crop box and
// the output order (the data/ fixtures, made for the crop and small-region
// paths, where those are what can go wrong).
struct Tolerance {
  double min_iou = 0.9;
  bool strict = false;
};

// Matches reference and our masks one to one and checks each pair.
void compare_with_reference(const nlohmann::json& ref, const std::vector<BinaryMask>& want,
                            const std::vector<AmgMask>& masks, int H, int W, Tolerance tol) {
  const size_t n = want.size();
  ASSERT_EQ(masks.size(), n) << "number of masks";
  // One-to-one matching: every reference mask gets its own mask of ours (pairs
  // taken by descending IoU, each mask used once), so two reference masks
  // cannot both be "matched" by one of ours while another of ours matches none.
  struct Pair {
    double iou;
    size_t r, i;
  };
  std::vector<Pair> pairs;
  for (size_t r = 0; r < n; ++r)
    for (size_t i = 0; i < masks.size(); ++i)
      pairs.push_back({mask_iou(want[r], masks[i].mask), r, i});
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const Pair& a, const Pair& b) { return a.iou > b.iou; });
  std::vector<long> match(n, -1);
  std::vector<bool> taken(masks.size(), false);
  std::vector<double> match_iou(n, 0.0);
  for (const Pair& p : pairs) {
    if (match[p.r] >= 0 || taken[p.i]) continue;
    match[p.r] = static_cast<long>(p.i);
    match_iou[p.r] = p.iou;
    taken[p.i] = true;
  }
  double worst = 1.0, d_iou = 0.0, d_stab = 0.0;
  for (size_t r = 0; r < n; ++r) {
    ASSERT_GE(match[r], 0) << "reference mask " << r << " has no mask of ours left to match";
    const size_t i = static_cast<size_t>(match[r]);
    const auto& m = masks[i];
    worst = std::min(worst, match_iou[r]);
    EXPECT_GE(match_iou[r], tol.min_iou) << "reference mask " << r;
    const auto& rm = ref["masks"][r];
    d_iou = std::max(d_iou, std::abs(m.predicted_iou - rm["predicted_iou"].get<double>()));
    d_stab = std::max(d_stab, std::abs(m.stability_score - rm["stability_score"].get<double>()));
    EXPECT_NEAR(m.predicted_iou, rm["predicted_iou"].get<double>(), 2e-3) << r;
    EXPECT_NEAR(m.stability_score, rm["stability_score"].get<double>(), 5e-3) << r;
    EXPECT_NEAR(m.point.x, rm["point_coords"][0][0].get<double>(), 1e-9) << r;
    EXPECT_NEAR(m.point.y, rm["point_coords"][0][1].get<double>(), 1e-9) << r;
    EXPECT_EQ(m.bbox[2], rm["bbox"][2].get<int>()) << r;
    if (tol.strict) {
      for (int k = 0; k < 4; ++k) {
        EXPECT_EQ(m.bbox[k], rm["bbox"][k].get<int>()) << "mask " << r << " bbox[" << k << "]";
      }
      const auto& cb = rm["crop_box"];  // XYWH
      EXPECT_EQ(m.crop_box, (std::array<int, 4>{cb[0].get<int>(), cb[1].get<int>(),
                                                cb[0].get<int>() + cb[2].get<int>(),
                                                cb[1].get<int>() + cb[3].get<int>()}))
          << r;
      EXPECT_EQ(m.area, m.mask.area()) << r;
      const auto ref_area = rm["area"].get<int64_t>();
      EXPECT_EQ(ref_area, want[r].area()) << r;
      // The pixels that differ are the few whose logit is within float noise of 0.
      EXPECT_LE(std::abs(m.area - ref_area), std::max<int64_t>(2, ref_area / 100)) << r;
      // Same order as the official output (NMS keep order: predicted IoU,
      // 1 / crop area, unchanged-before-changed after small-region removal).
      EXPECT_EQ(i, r) << "reference mask " << r << " is our mask " << i;
    }
  }
  std::cout << "[ amg ] " << n << " masks; against the reference: min mask IoU " << worst
            << ", max |d predicted_iou| " << d_iou << ", max |d stability| " << d_stab << "\n";
  // Label map: one id per mask that keeps pixels, consecutive.
  const auto labels = masks_to_label_map(masks, H, W);
  uint16_t top = 0;
  for (auto v : labels) top = std::max(top, v);
  EXPECT_LE(top, n);
  if (n > 0) {
    EXPECT_GE(top, 1);
  }
}

class AmgFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(AmgFixture, MatchesTheOfficialGenerator) {
  std::ifstream in(kDir + "amg_" + GetParam() + "_img0.json");
  const auto ref = nlohmann::json::parse(in);
  const AmgOptions o = options_from(ref["params"]);
  const auto image = read_npy(kDir + ref["image"].get<std::string>());
  const int H = static_cast<int>(image.shape[0]), W = static_cast<int>(image.shape[1]);
  const auto masks = generate_masks(tiny_model(), image.as<uint8_t>(), H, W, o);
  const size_t n = ref["num_masks"];
  const auto ref_masks =
      read_mask_stack(kDir + "extra/" + ref["masks_file"].get<std::string>(), n, H, W);
  const size_t hw = size_t(H) * W;
  std::vector<BinaryMask> want(n, BinaryMask(H, W));
  for (size_t r = 0; r < n; ++r)
    for (size_t i = 0; i < hw; ++i) want[r].data[i] = ref_masks[r * hw + i] ? 1 : 0;
  compare_with_reference(ref, want, masks, H, W, {});
}

INSTANTIATE_TEST_SUITE_P(Runs, AmgFixture,
                         ::testing::Values("default", "relaxed", "relaxed_nms07"));

// The official uncompressed RLE: column-major, counts alternate 0-runs and 1-runs.
BinaryMask mask_from_rle(const nlohmann::json& rle) {
  const int H = rle["size"][0], W = rle["size"][1];
  std::vector<uint8_t> col_major;
  col_major.reserve(size_t(H) * W);
  uint8_t value = 0;
  for (const auto& c : rle["counts"]) {
    col_major.insert(col_major.end(), c.get<size_t>(), value);
    value ^= 1;
  }
  if (col_major.size() != size_t(H) * W) throw InputError("RLE counts do not add up to its size");
  BinaryMask m(H, W);
  for (int x = 0; x < W; ++x)
    for (int y = 0; y < H; ++y) m.data[size_t(y) * W + x] = col_major[size_t(x) * H + y];
  return m;
}

// tests/segment/data/amg_*.json (made by make_amg_fixtures.py with the official
// generator): a window of img0, settings whose output holds masks from crop
// layers and from min_mask_region_area's post-processing.
class AmgCodePaths : public ::testing::TestWithParam<std::string> {};

TEST_P(AmgCodePaths, MatchTheOfficialGenerator) {
  const std::string path =
      std::string(MEDICOSAM_SOURCE_DIR) + "/tests/segment/data/amg_" + GetParam() + ".json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const auto ref = nlohmann::json::parse(in);
  const AmgOptions o = options_from(ref["params"]);
  const auto full = read_npy(kDir + ref["image"]["file"].get<std::string>());
  const int full_w = static_cast<int>(full.shape[1]);
  const int r0 = ref["image"]["rows"][0], r1 = ref["image"]["rows"][1];
  const int c0 = ref["image"]["cols"][0], c1 = ref["image"]["cols"][1];
  const int H = r1 - r0, W = c1 - c0;
  std::vector<uint8_t> image(size_t(H) * W * 3);
  for (int y = 0; y < H; ++y)
    std::copy_n(full.as<uint8_t>() + (size_t(y + r0) * full_w + c0) * 3, size_t(W) * 3,
                image.data() + size_t(y) * W * 3);
  const size_t n = ref["num_masks"];
  ASSERT_GT(n, 0u) << "a code-path fixture without masks compares nothing";
  std::vector<BinaryMask> want;
  for (const auto& m : ref["masks"]) want.push_back(mask_from_rle(m["rle"]));
  ASSERT_EQ(want.size(), n);
  ASSERT_EQ(want[0].height, H);
  ASSERT_EQ(want[0].width, W);
  // The fixture must exercise what it is named after.
  bool from_crop = false;
  for (const auto& m : ref["masks"]) from_crop |= m["crop_box"][2].get<int>() != W;
  EXPECT_EQ(from_crop, o.crop_n_layers > 0) << "masks from crop layers";
  const auto masks = generate_masks(tiny_model(), image.data(), H, W, o);
  compare_with_reference(ref, want, masks, H, W, {0.9, true});
}

INSTANTIATE_TEST_SUITE_P(Data, AmgCodePaths,
                         ::testing::Values("crops", "min_area", "crops_min_area"));

TEST(Amg, PointGridAndCropBoxesFollowSam) {
  const auto g = point_grid(4);
  ASSERT_EQ(g.size(), 16u);
  EXPECT_DOUBLE_EQ(g[0][0], 0.125);
  EXPECT_DOUBLE_EQ(g[1][0], 0.375);  // x fastest
  EXPECT_DOUBLE_EQ(g[1][1], 0.125);
  EXPECT_DOUBLE_EQ(g[15][1], 0.875);
  std::vector<int> layers;
  const auto boxes = crop_boxes(300, 420, 1, 512.0 / 1500, &layers);
  ASSERT_EQ(boxes.size(), 5u);
  EXPECT_EQ(boxes[0], (std::array<int, 4>{0, 0, 420, 300}));
  // overlap = int(0.3413 * 300 * 1) = 102; crop_w = ceil((102 + 420) / 2) = 261, crop_h = ceil(402
  // / 2) = 201.
  EXPECT_EQ(boxes[1], (std::array<int, 4>{0, 0, 261, 201}));
  EXPECT_EQ(boxes[2], (std::array<int, 4>{0, 99, 261, 300}));  // y varies fastest
  EXPECT_EQ(boxes[3], (std::array<int, 4>{159, 0, 420, 201}));
  EXPECT_EQ(layers, (std::vector<int>{0, 1, 1, 1, 1}));
}

// Official generate_crop_boxes / build_all_layer_point_grids on more layers,
// overlaps and odd sizes than the model runs can afford (amg_crop_boxes.json).
TEST(Amg, CropBoxesAndPointGridsMatchTheOfficialHelpers) {
  const std::string path =
      std::string(MEDICOSAM_SOURCE_DIR) + "/tests/segment/data/amg_crop_boxes.json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const auto ref = nlohmann::json::parse(in);
  ASSERT_GE(ref["cases"].size(), 1u);
  for (const auto& c : ref["cases"]) {
    const int H = c["height"], W = c["width"], n_layers = c["crop_n_layers"];
    SCOPED_TRACE(std::to_string(H) + "x" + std::to_string(W) + ", " + std::to_string(n_layers) +
                 " layers");
    std::vector<int> layers;
    const auto boxes = crop_boxes(H, W, n_layers, c["crop_overlap_ratio"].get<double>(), &layers);
    ASSERT_EQ(boxes.size(), c["crop_boxes"].size());
    for (size_t i = 0; i < boxes.size(); ++i) {
      const auto& b = c["crop_boxes"][i];
      EXPECT_EQ(boxes[i], (std::array<int, 4>{b[0].get<int>(), b[1].get<int>(), b[2].get<int>(),
                                              b[3].get<int>()}))
          << "crop " << i;
    }
    EXPECT_EQ(layers, c["layer_idxs"].get<std::vector<int>>());
    for (size_t l = 0; l < c["grid_points_per_layer"].size(); ++l) {
      const int count = c["grid_points_per_layer"][l];
      const int n = static_cast<int>(std::lround(std::sqrt(count)));
      ASSERT_EQ(n * n, count);
      const auto g = point_grid(n);
      ASSERT_EQ(static_cast<int>(g.size()), count) << "layer " << l;
      const auto& fl = c["grid_first_last_per_layer"][l];
      EXPECT_DOUBLE_EQ(g.front()[0], fl[0][0].get<double>());
      EXPECT_DOUBLE_EQ(g.front()[1], fl[0][1].get<double>());
      EXPECT_DOUBLE_EQ(g.back()[0], fl[1][0].get<double>());
      EXPECT_DOUBLE_EQ(g.back()[1], fl[1][1].get<double>());
    }
  }
}

TEST(Amg, NmsKeepsTheBestOfOverlappingBoxes) {
  const std::vector<std::array<float, 4>> b{
      {0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}, {0, 0, 10, 10}};
  const std::vector<float> s{0.5f, 0.9f, 0.1f, 0.9f};
  EXPECT_EQ(box_nms(b, s, 0.5), (std::vector<size_t>{1, 2}));
  EXPECT_EQ(box_nms(b, s, 1.0),
            (std::vector<size_t>{1, 3, 0, 2}));  // identical boxes: IoU 1 is not > 1
}

TEST(Amg, LabelMapPaintsSmallerMasksOnTop) {
  auto make = [](int x0, int x1, int64_t) {
    AmgMask m;
    m.mask = BinaryMask(4, 10);
    for (int y = 0; y < 4; ++y)
      for (int x = x0; x < x1; ++x) m.mask.data[y * 10 + x] = 1;
    m.area = m.mask.area();
    return m;
  };
  std::vector<AmgMask> ms{make(2, 4, 0), make(0, 10, 0), make(8, 9, 0)};
  const auto lab = masks_to_label_map(ms, 4, 10);
  EXPECT_EQ(lab[0], 1);  // the large mask first
  EXPECT_EQ(lab[3], 2);  // then the 2-wide one on top
  EXPECT_EQ(lab[8], 3);
  const auto filtered = masks_to_label_map(ms, 4, 10, 5);  // drops the 4-pixel one
  EXPECT_EQ(filtered[8], 1);
}

}  // namespace
}  // namespace medicosam::segment
