// The AMG evaluation (eval/amg_eval.hpp) and model-specific AMG defaults in
// checkpoint metadata (segment::kAmgMetadataKey):
// - a hand-made candidate source on a dataset on disk: objects, IoUs, the
//   threshold-before-NMS order, crop offsets, summaries, the selection rule;
// - end to end with the default model (a copy): export with thresholds ->
//   info shows them -> amg uses them unless an option overrides them; the
//   metadata rewrite keeps the tensors byte for byte; eval --protocol amg
//   picks them up, agrees with `medicosam amg` and its selection can be written back.
#include "medicosam/eval/amg_eval.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {

constexpr int kH = 64, kW = 64;

// Object A: 20x20 square at x,y 10..29 (400 px); object B: 10x10 at 40..49
// (100 px); a 3x3 speck (9 px, below the 20 px minimum: not an object).
segment::BinaryMask truth() {
  auto m = rect_mask(kH, kW, 10, 10, 30, 30);
  m = mask_or(m, rect_mask(kH, kW, 40, 40, 50, 50));
  return mask_or(m, rect_mask(kH, kW, 2, 55, 5, 58));
}

void write_dataset(const fs::path& root) {
  fs::create_directories(root / "images");
  fs::create_directories(root / "masks");
  const auto m = truth();
  write_rgb_png(root / "images" / "a.png", synthetic_image(m));
  write_png(root / "masks" / "a.png", m);
}

struct Fake {
  segment::BinaryMask mask;  // in its crop's coordinates
  double iou, stability;
  int crop;
};

// A candidate source that emits fixed masks (as generate_candidates would:
// box = the mask's tight box in image coordinates).
AmgCandidateSource fake_source(const std::vector<Fake>& fakes, const std::vector<std::array<int, 4>>& crops,
                               segment::AmgOptions* seen = nullptr) {
  return [=](const io::RGB8Image& img, const segment::AmgOptions& o, const segment::AmgCandidateVisitor& visit) {
    EXPECT_EQ(img.height, kH);
    if (seen) *seen = o;
    for (const auto& f : fakes) {
      if (o.pred_iou_thresh > 0 && !(f.iou > o.pred_iou_thresh)) continue;
      if (o.stability_score_thresh > 0 && !(f.stability >= o.stability_score_thresh)) continue;
      const auto& cb = crops[f.crop];
      int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
      for (int y = 0; y < f.mask.height; ++y)
        for (int x = 0; x < f.mask.width; ++x)
          if (f.mask.data[size_t(y) * f.mask.width + x])
            x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
      segment::AmgCandidate c;
      c.predicted_iou = f.iou;
      c.stability_score = f.stability;
      c.crop = f.crop;
      c.box = {x0 + cb[0], y0 + cb[1], x1 + cb[0], y1 + cb[1]};
      visit(c, f.mask.data.data(), cb);
    }
    return crops;
  };
}

segment::BinaryMask ring(int h, int w, int x0, int y0, int x1, int y1) {
  auto m = rect_mask(h, w, x0, y0, x1, y1);
  const auto inner = rect_mask(h, w, x0 + 1, y0 + 1, x1 - 1, y1 - 1);
  for (size_t i = 0; i < m.data.size(); ++i) m.data[i] &= !inner.data[i];
  return m;
}

// The default model (small, 384 px input: fast), copied without any AMG
// defaults it may carry, so that each test starts from SAM's.
const std::string kDefaultModel = std::string(MEDICOSAM_SOURCE_DIR) + "/models/medicosam_default.safetensors";

// The bytes after a safetensors header, and its tensor entries without __metadata__.
std::pair<std::string, nlohmann::json> safetensors_parts(const fs::path& p) {
  const std::string b = read_file(p.string());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(b[size_t(i)]);
  auto h = nlohmann::json::parse(b.substr(8, n));
  h.erase("__metadata__");
  return {b.substr(8 + n), h};
}

}  // namespace

TEST(AmgEval, ObjectsIousAndThresholdsBeforeNms) {
  TempDir tmp("amg_eval");
  write_dataset(tmp.path / "ds");
  Dataset2DOptions dopts;
  dopts.split = "all";
  const auto ds = Dataset2D::open((tmp.path / "ds").string(), dopts);
  ASSERT_EQ(ds.size(), 1u);

  // Objects: the two squares; the speck is below 20 px.
  const auto sample = ds.load(0);
  const auto objects = amg_objects(ds, 0, sample, 20);
  ASSERT_EQ(objects.size(), 2u);

  const std::array<int, 4> full{0, 0, kW, kH}, quarter{32, 32, 64, 64};
  const std::vector<Fake> fakes{
      // c0: A's outline: same box as A (suppresses c1 in NMS), mask IoU 76/400; unstable.
      {ring(kH, kW, 10, 10, 30, 30), 0.95, 0.30, 0},
      // c1: A exactly.
      {rect_mask(kH, kW, 10, 10, 30, 30), 0.80, 0.90, 0},
      // c2: B shifted 4 px right: IoU 60/140.
      {rect_mask(kH, kW, 44, 40, 54, 50), 0.90, 0.90, 0},
      // c3: B exactly, low predicted IoU.
      {rect_mask(kH, kW, 40, 40, 50, 50), 0.40, 0.90, 0},
      // c4: B exactly, from the crop at (32, 32): local 8..17.
      {rect_mask(32, 32, 8, 8, 18, 18), 0.20, 0.90, 1},
  };
  AmgEvalOptions o;
  o.progress = false;
  o.amg.pred_iou_thresh = 0.88;  // in effect: nothing passes (c0 is not stable enough)
  o.amg.stability_score_thresh = 0.95;
  o.sweep = {{0.5, 0.5}, {0.3, 0.5}, {0.5, 0.0}, {0.1, 0.5}, {0.88, 0.95}};
  segment::AmgOptions seen;
  const auto r = run_amg_eval(fake_source(fakes, {full, quarter}, &seen), "fake", ds, o);
  // One decoding with the loosest thresholds; the duplicate of the setting in effect dropped.
  EXPECT_DOUBLE_EQ(seen.pred_iou_thresh, 0.1);
  EXPECT_DOUBLE_EQ(seen.stability_score_thresh, 0.0);
  ASSERT_EQ(r.settings.size(), 5u);
  ASSERT_EQ(r.images.size(), 1u);
  const auto& im = r.images[0];
  EXPECT_EQ(im.n_objects, 2);
  EXPECT_EQ(im.largest_object_px, 400);
  EXPECT_EQ(im.candidates, 5);
  // In effect (0.88 / 0.95): no mask.
  EXPECT_EQ(im.masks[0], 0);
  EXPECT_EQ(im.matched[0], 0);
  EXPECT_FALSE(im.largest_matched[0]);
  // 0.5 / 0.5: c1, c2 -> A matched (IoU 1), B not (60/140).
  EXPECT_EQ(im.masks[1], 2);
  EXPECT_EQ(im.matched[1], 1);
  EXPECT_TRUE(im.largest_matched[1]);
  EXPECT_NEAR(im.largest_best_iou[1], 1.0, 1e-6);
  // 0.3 / 0.5: c1, c2, c3 (box IoU of c2 and c3 60/140 < 0.7: both kept) -> both matched.
  EXPECT_EQ(im.masks[2], 3);
  EXPECT_EQ(im.matched[2], 2);
  // 0.5 / 0: c0 passes and, by predicted IoU first in NMS, suppresses c1 (same box):
  // SAM filters before NMS, so c1 is lost only here; A's best is the outline.
  EXPECT_EQ(im.masks[3], 2);
  EXPECT_EQ(im.matched[3], 0);
  EXPECT_FALSE(im.largest_matched[3]);
  EXPECT_NEAR(im.largest_best_iou[3], 76.0 / 400.0, 1e-6);
  // 0.1 / 0.5: c4 (crop 1) joins; across crops the smaller crop wins over c3
  // (same box), so B is matched through c4: its crop offset is applied.
  EXPECT_EQ(im.masks[4], 3);
  EXPECT_EQ(im.matched[4], 2);

  const auto sums = r.summarize();
  ASSERT_EQ(sums.size(), 5u);
  EXPECT_EQ(sums[1].objects, 2);
  EXPECT_DOUBLE_EQ(sums[1].object_match_rate, 0.5);
  EXPECT_DOUBLE_EQ(sums[1].image_match_rate, 1.0);
  EXPECT_DOUBLE_EQ(sums[2].mean_masks, 3.0);
  EXPECT_DOUBLE_EQ(sums[2].object_match_rate, 1.0);

  // Selection: the best object match rate within the mask cap; fewer masks break ties.
  auto sel = select_amg_setting({r}, 50);
  ASSERT_TRUE(sel.has_value());
  EXPECT_DOUBLE_EQ(sel->object_match_rate, 1.0);
  EXPECT_EQ(sel->index, 2u);  // 0.3/0.5 and 0.1/0.5 both match all, both 3 masks: the first
  sel = select_amg_setting({r}, 2.5);  // 3 masks are over the cap
  ASSERT_TRUE(sel.has_value());
  EXPECT_EQ(sel->index, 1u);
  sel = select_amg_setting({r}, 0.0);  // only the settings without masks fit
  ASSERT_TRUE(sel.has_value());
  EXPECT_EQ(sel->index, 0u);
  EXPECT_DOUBLE_EQ(sel->object_match_rate, 0.0);

  // The report: summary.json carries the selection; per_image.csv the setting in effect.
  AmgReportOptions ro;
  ro.max_mean_masks = 2.5;
  ro.thresholds_note = "test";
  write_amg_report((tmp.path / "rep").string(), {r}, o, ro);
  const auto j = nlohmann::json::parse(read_file((tmp.path / "rep" / "summary.json").string()));
  EXPECT_DOUBLE_EQ(j["selected"]["pred_iou_thresh"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["selected"]["stability_score_thresh"].get<double>(), 0.5);
  EXPECT_EQ(j["results"][0]["objects"], 2);
  EXPECT_TRUE(fs::exists(tmp.path / "rep" / "sweep.csv"));
  EXPECT_NE(read_file((tmp.path / "rep" / "per_image.csv").string()).find("ds,fake,a,2,400,5,0,0,0,"),
            std::string::npos);
}

TEST(AmgEval, InstanceMapsMakeSeparateObjects) {
  TempDir tmp("amg_eval_inst");
  write_dataset(tmp.path / "ds");
  // Two touching structures (ids 1 and 2): one component of the union mask, two objects.
  fs::create_directories(tmp.path / "ds" / "instances");
  cv::Mat inst(kH, kW, CV_8UC1, cv::Scalar(0));
  inst(cv::Rect(10, 10, 10, 20)).setTo(1);
  inst(cv::Rect(20, 10, 10, 20)).setTo(2);
  inst(cv::Rect(40, 40, 10, 10)).setTo(1);  // id 1 in two pieces: two objects
  cv::imwrite((tmp.path / "ds" / "instances" / "a.png").string(), inst);
  Dataset2DOptions dopts;
  dopts.split = "all";
  const auto ds = Dataset2D::open((tmp.path / "ds").string(), dopts);
  const auto sample = ds.load(0);
  EXPECT_EQ(amg_objects(ds, 0, sample, 20, true).size(), 3u);
  EXPECT_EQ(amg_objects(ds, 0, sample, 20, false).size(), 2u);  // masks/: A and B
}

TEST(AmgEval, ThresholdListsAndMetadataValues) {
  EXPECT_EQ(parse_threshold_list("0,0.5,0.88", "--x"), (std::vector<double>{0, 0.5, 0.88}));
  EXPECT_THROW(parse_threshold_list("0,1.5", "--x"), InputError);
  EXPECT_THROW(parse_threshold_list("a", "--x"), InputError);
  // Metadata: missing key -> SAM's; a record -> its values; bad records -> errors.
  auto d = segment::amg_defaults_from_metadata(nlohmann::json{{"format", "pt"}});
  EXPECT_FALSE(d.from_checkpoint);
  EXPECT_DOUBLE_EQ(d.pred_iou_thresh, 0.88);
  EXPECT_DOUBLE_EQ(d.stability_score_thresh, 0.95);
  const std::string v = segment::amg_metadata_value(0.61, 0.72, {{"calibrated_on", "val"}});
  d = segment::amg_defaults_from_metadata(nlohmann::json{{segment::kAmgMetadataKey, v}});
  EXPECT_TRUE(d.from_checkpoint);
  EXPECT_DOUBLE_EQ(d.pred_iou_thresh, 0.61);
  EXPECT_DOUBLE_EQ(d.stability_score_thresh, 0.72);
  EXPECT_NE(d.describe().find("calibrated on val"), std::string::npos);
  EXPECT_THROW(segment::amg_defaults_from_metadata(nlohmann::json{{segment::kAmgMetadataKey, "{"}}),
               CheckpointError);
  EXPECT_THROW(segment::amg_defaults_from_metadata(
                   nlohmann::json{{segment::kAmgMetadataKey, R"({"pred_iou_thresh":2,"stability_score_thresh":0.5})"}}),
               CheckpointError);
  EXPECT_THROW(segment::amg_metadata_value(-0.1, 0.5), InputError);
}

TEST(AmgDefaultsCli, ExportInfoAmgAndOverrides) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("amg_defaults_cli");
  write_binary_dataset(tmp.path / "discs", 2);
  const std::string img = (tmp.path / "discs" / "images" / "img_00.png").string();
  const std::string with = (tmp.path / "with.safetensors").string();
  const std::string plain = (tmp.path / "plain.safetensors").string();
  // Thresholds below the random model's scores (about 0.1 / 0.2): masks pass them, not SAM's.
  const std::string P = "0", S = "0";  // 0 disables a filter: every mask passes, not so with SAM's
  auto r = run_cli("amg-defaults " + kDefaultModel + " --clear --out " + plain);
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run_cli("export " + plain + " --out " + with + " --amg-pred-iou-thresh " + P +
              " --amg-stability-score-thresh " + S);
  ASSERT_EQ(r.rc, 0) << r.output;

  // info shows them (and SAM's for the plain export).
  r = run_cli("info --json " + with, false);
  ASSERT_EQ(r.rc, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(j["amg_defaults"]["from_checkpoint"].get<bool>());
  EXPECT_DOUBLE_EQ(j["amg_defaults"]["pred_iou_thresh"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["amg_defaults"]["stability_score_thresh"].get<double>(), 0.0);
  r = run_cli("info " + plain, false);
  EXPECT_NE(r.output.find("amg defaults: pred_iou_thresh 0.88, stability_score_thresh 0.95 (SAM's defaults)"),
            std::string::npos)
      << r.output;

  const std::string common = " --points-per-side 4 --precision fp32 --json --out " + (tmp.path / "o.png").string();
  auto amg = [&](const std::string& args) {
    const auto run = run_cli("amg " + img + common + " " + args, false);
    EXPECT_EQ(run.rc, 0) << run.output;
    return nlohmann::json::parse(run.output);
  };
  const auto from_ckpt = amg("--model " + with);
  const auto by_option = amg("--model " + plain + " --pred-iou-thresh " + P + " --stability-score-thresh " + S);
  const auto sam_default = amg("--model " + plain);
  // The precondition that makes the comparison mean something.
  ASSERT_NE(from_ckpt["masks"], sam_default["masks"]);
  EXPECT_EQ(from_ckpt["thresholds"]["pred_iou_thresh_from"], "checkpoint");
  EXPECT_EQ(from_ckpt["thresholds"]["stability_score_thresh_from"], "checkpoint");
  EXPECT_DOUBLE_EQ(from_ckpt["thresholds"]["pred_iou_thresh"].get<double>(), 0.0);
  EXPECT_EQ(by_option["thresholds"]["pred_iou_thresh_from"], "option");
  EXPECT_EQ(sam_default["thresholds"]["pred_iou_thresh_from"], "sam_default");
  EXPECT_DOUBLE_EQ(sam_default["thresholds"]["stability_score_thresh"].get<double>(), 0.95);
  // The checkpoint's thresholds act exactly as the same values given as options.
  EXPECT_EQ(from_ckpt["mask_list"], by_option["mask_list"]);
  // An explicit option wins over the checkpoint's value, per threshold.
  const auto override = amg("--model " + with + " --stability-score-thresh 0.95");
  EXPECT_EQ(override["thresholds"]["stability_score_thresh_from"], "option");
  EXPECT_EQ(override["thresholds"]["pred_iou_thresh_from"], "checkpoint");
  EXPECT_DOUBLE_EQ(override["thresholds"]["stability_score_thresh"].get<double>(), 0.95);

  // amg-defaults rewrites only the metadata: tensors byte for byte, in place or to --out.
  const std::string moved = (tmp.path / "moved.safetensors").string();
  r = run_cli("amg-defaults " + plain + " --pred-iou-thresh 0.3 --stability-score-thresh 0.4 --calibrated-on test"
              " --out " + moved);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(safetensors_parts(moved) == safetensors_parts(plain));
  auto d = segment::read_amg_defaults(moved);
  EXPECT_TRUE(d.from_checkpoint);
  EXPECT_DOUBLE_EQ(d.pred_iou_thresh, 0.3);
  EXPECT_DOUBLE_EQ(d.stability_score_thresh, 0.4);
  EXPECT_EQ(d.record["calibrated_on"], "test");
  r = run_cli("amg-defaults " + moved + " --clear");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(safetensors_parts(moved) == safetensors_parts(plain));
  EXPECT_FALSE(segment::read_amg_defaults(moved).from_checkpoint);
  // A bad value leaves the file alone.
  const std::string before = read_file(moved);
  EXPECT_NE(run_cli("amg-defaults " + moved + " --pred-iou-thresh 1.5 --stability-score-thresh 0.4").rc, 0);
  EXPECT_EQ(read_file(moved), before);
  // export carries the input's AMG defaults over.
  const std::string again = (tmp.path / "again.safetensors").string();
  ASSERT_EQ(run_cli("export " + with + " --out " + again + " --dtype float16").rc, 0);
  d = segment::read_amg_defaults(again);
  EXPECT_TRUE(d.from_checkpoint);
  EXPECT_DOUBLE_EQ(d.stability_score_thresh, 0.0);
}

TEST(AmgEvalCli, UsesCheckpointDefaultsAgreesWithAmgAndWritesTheSelection) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("amg_eval_cli");
  write_binary_dataset(tmp.path / "discs", 2);
  const std::string model = (tmp.path / "m.safetensors").string();
  ASSERT_EQ(run_cli("amg-defaults " + kDefaultModel + " --pred-iou-thresh 0 --stability-score-thresh 0.01 --out " +
                    model)
                .rc,
            0);
  const auto out = tmp.path / "rep";
  auto r = run_cli("eval --protocol amg --model " + model + " --data " + (tmp.path / "discs").string() +
                   " --split all --points-per-side 4 --amg-precision fp32 --sweep --sweep-pred-iou 0,0.5"
                   " --sweep-stability 0,0.95 -q --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto j = nlohmann::json::parse(read_file((out / "summary.json").string()));
  EXPECT_DOUBLE_EQ(j["options"]["pred_iou_thresh"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["options"]["stability_score_thresh"].get<double>(), 0.01);
  EXPECT_NE(j["options"]["thresholds_from"].get<std::string>().find("(checkpoint)"), std::string::npos);
  EXPECT_EQ(j["results"][0]["images"], 2);
  EXPECT_EQ(j["split"], "all");
  ASSERT_TRUE(j["selected"].is_object());
  // The setting in effect for img_00 gives as many masks as `medicosam amg` does.
  const std::string per_image = read_file((out / "per_image.csv").string());
  const auto row = per_image.find("discs,m,img_00,");
  ASSERT_NE(row, std::string::npos) << per_image;
  std::vector<std::string> fields;
  std::stringstream line(per_image.substr(row, per_image.find('\n', row) - row));
  for (std::string f; std::getline(line, f, ',');) fields.push_back(f);
  ASSERT_GE(fields.size(), 7u);
  const auto a = run_cli("amg " + (tmp.path / "discs" / "images" / "img_00.png").string() + " --model " + model +
                             " --points-per-side 4 --precision fp32 --json --out " + (tmp.path / "o.png").string(),
                         false);
  ASSERT_EQ(a.rc, 0);
  EXPECT_EQ(std::to_string(nlohmann::json::parse(a.output)["masks"].get<int>()), fields[6]);
  // The selection goes into a checkpoint in one command.
  r = run_cli("amg-defaults " + model + " --from-report " + out.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto d = segment::read_amg_defaults(model);
  EXPECT_EQ(d.pred_iou_thresh, j["selected"]["pred_iou_thresh"].get<double>());
  EXPECT_EQ(d.stability_score_thresh, j["selected"]["stability_score_thresh"].get<double>());
  EXPECT_NE(d.record["calibrated_on"].get<std::string>().find("all split of discs"), std::string::npos);
  // A sweep on the test split is not a source of thresholds.
  r = run_cli("eval --protocol amg --model " + model + " --data " + (tmp.path / "discs").string() +
              " --split test --limit 1 --points-per-side 2 --sweep --sweep-pred-iou 0 --sweep-stability 0 -q --out " +
              (tmp.path / "t").string());
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("warning: sweeping thresholds on the test split"), std::string::npos) << r.output;
  EXPECT_NE(run_cli("amg-defaults " + model + " --from-report " + (tmp.path / "t").string()).rc, 0);
  // Baselines are not AMG methods.
  EXPECT_NE(run_cli("eval --protocol amg --baseline grabcut --data " + (tmp.path / "discs").string() + " --out " +
                    (tmp.path / "x").string())
                .rc,
            0);
}
