// The bfloat16 fast path against the float32 reference path: names and
// errors of the precision option, then mask agreement (IoU of the binary
// masks the user sees) on the parity fixtures' model and on the default model
// over the four test splits, box start from the ground truth. bf16 runs
// wherever libtorch can compute it (emulated on CPUs without native bf16, so
// the test is slower there but checks the same thing).
//
// MEDICOSAM_PRECISION_TEST_LIMIT=N sets the images per test split (default 8;
// 0 = the whole split, for the numbers in the README).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/eval/dataset.hpp"
#include "medicosam/model/precision.hpp"
#include "medicosam/predict/predictor.hpp"

using namespace medicosam;
using namespace medicosam::predict;
using nlohmann::json;

namespace {

const std::string kShared = MEDICOSAM_SHARED_DIR;
const std::string kParity = kShared + "/fixtures/sam_parity";

// IoU of two 0/1 masks; two empty masks agree perfectly.
double iou(const uint8_t* a, const uint8_t* b, size_t n) {
  size_t inter = 0, uni = 0;
  for (size_t i = 0; i < n; ++i) {
    inter += (a[i] && b[i]);
    uni += (a[i] || b[i]);
  }
  return uni == 0 ? 1.0 : double(inter) / double(uni);
}

double dice(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t inter = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    inter += (a[i] && b[i]);
    sa += a[i] != 0;
    sb += b[i] != 0;
  }
  return sa + sb == 0 ? 1.0 : 2.0 * inter / double(sa + sb);
}

// Mean IoU over the masks of two predictions of the same prompt.
double mean_mask_iou(const Prediction& a, const Prediction& b) {
  EXPECT_EQ(a.num_masks, b.num_masks);
  const size_t n = size_t(a.height) * a.width;
  double sum = 0;
  for (int m = 0; m < a.num_masks; ++m) sum += iou(a.masks.data() + m * n, b.masks.data() + m * n, n);
  return sum / a.num_masks;
}

// Max |a - b| / max |a| over two embeddings.
double relative_error(const Embedding& ref, const Embedding& other) {
  const auto a = ref.to_npy().to_float(), b = other.to_npy().to_float();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(a[i])));
  }
  return diff / scale;
}

bool has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

Prompt prompt_from_case(const json& c) {
  Prompt p;
  if (has(c, "point_coords_file")) {
    const auto coords = read_npy(kParity + "/" + c["point_coords_file"].get<std::string>()).to_float();
    const auto labels = read_npy(kParity + "/" + c["point_labels_file"].get<std::string>()).to_float();
    for (size_t i = 0; i < labels.size(); ++i) p.points.push_back({coords[2 * i], coords[2 * i + 1], int(labels[i])});
  }
  if (has(c, "box_file")) {
    const auto b = read_npy(kParity + "/" + c["box_file"].get<std::string>()).to_float();
    p.box = Box{b[0], b[1], b[2], b[3]};
  }
  if (has(c, "mask_input_file")) p.mask_input = read_npy(kParity + "/" + c["mask_input_file"].get<std::string>()).to_float();
  return p;
}

PredictorOptions with_precision(const char* precision) {
  PredictorOptions o;
  o.threads = 2;
  o.precision = precision;
  return o;
}

}  // namespace

TEST(Precision, NamesResolveAndUnknownOnesAreRefused) {
  EXPECT_EQ(model::resolve_precision("fp32", false), model::Precision::kFloat32);
  EXPECT_EQ(model::resolve_precision("bf16", false), model::Precision::kBFloat16);
  EXPECT_EQ(model::resolve_precision("auto", false),
            model::cpu_has_native_bf16() ? model::Precision::kBFloat16 : model::Precision::kFloat32);
  EXPECT_EQ(model::resolve_precision("auto", /*cuda=*/true), model::Precision::kFloat32);
  try {
    model::resolve_precision("fp16", false);
    FAIL() << "fp16 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'fp16'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("auto, fp32 or bf16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SamPredictor(kParity + "/sam_tiny_seed0.pth", with_precision("half")), InputError);
  SamPredictor fp32(kParity + "/sam_tiny_seed0.pth", with_precision("fp32"));
  EXPECT_EQ(fp32.model().precision, "fp32");
  SamPredictor bf16(kParity + "/sam_tiny_seed0.pth", with_precision("bf16"));
  EXPECT_EQ(bf16.model().precision, "bf16");
}

TEST(Precision, Bf16MasksMatchFp32OnTheParityFixtures) {
  std::ifstream in(kParity + "/cases.json");
  ASSERT_TRUE(in);
  const json cases = json::parse(in);
  const std::string ckpt = kParity + "/" + cases["model"]["checkpoint"].get<std::string>();
  SamPredictor fp32(ckpt, with_precision("fp32")), bf16(ckpt, with_precision("bf16"));
  double sum = 0, worst = 1;
  int n = 0;
  for (const auto& img : cases["images"]) {
    const auto image = read_npy(kParity + "/" + img["image"].get<std::string>());
    const int h = int(image.shape[0]), w = int(image.shape[1]);
    fp32.set_image(image.data.data(), h, w, 3);
    bf16.set_image(image.data.data(), h, w, 3);
    const double rel = relative_error(fp32.embedding(), bf16.embedding());
    std::printf("[precision] %s: bf16 embedding max relative error %.3g\n", img["name"].get<std::string>().c_str(), rel);
    EXPECT_LT(rel, 0.05);
    for (const auto& c : img["cases"]) {
      const Prompt p = prompt_from_case(c);
      const bool multimask = c["multimask_output"];
      const double v = mean_mask_iou(fp32.predict(p, multimask), bf16.predict(p, multimask));
      std::printf("[precision]   %-28s mask IoU bf16 vs fp32 %.4f\n", c["name"].get<std::string>().c_str(), v);
      sum += v;
      worst = std::min(worst, v);
      ++n;
    }
  }
  ASSERT_GT(n, 0);
  std::printf("[precision] parity fixtures: mean mask IoU %.4f over %d cases (worst %.4f)\n", sum / n, n, worst);
  EXPECT_GE(sum / n, 0.98);
}

TEST(Precision, Bf16MasksMatchFp32OnTheDefaultModel) {
  const std::string model = std::string(MEDICOSAM_SOURCE_DIR) + "/models/medicosam_default.safetensors";
  SamPredictor fp32(model, with_precision("fp32")), bf16(model, with_precision("bf16"));
  const char* env = std::getenv("MEDICOSAM_PRECISION_TEST_LIMIT");
  eval::Dataset2DOptions opts;
  opts.split = "test";
  opts.limit = env && *env ? std::atoll(env) : 8;
  double all_iou = 0;
  int all_n = 0;
  for (const char* name : {"kvasir_seg", "busi", "hc18_fetal_head", "ph2_dermoscopy"}) {
    const auto ds = eval::Dataset2D::open(kShared + "/data/" + name, opts);
    double sum_iou = 0, dice32 = 0, dice16 = 0, rel = 0;
    int n = 0;
    for (size_t i = 0; i < ds.size(); ++i) {
      const auto s = ds.load(i);
      const auto e32 = fp32.encode(s.rgb.data.data(), s.rgb.height, s.rgb.width, 3);
      const auto e16 = bf16.encode(s.rgb.data.data(), s.rgb.height, s.rgb.width, 3);
      rel = std::max(rel, relative_error(e32, e16));
      for (const auto& cls : s.classes) {
        const auto box = segment::bounding_box(cls.mask);
        if (!box) continue;
        Prompt p;
        p.box = *box;
        const auto a = fp32.predict_batch(e32, {p}, false).front();
        const auto b = bf16.predict_batch(e16, {p}, false).front();
        sum_iou += mean_mask_iou(a, b);
        dice32 += dice(a.mask(0), cls.mask.data);
        dice16 += dice(b.mask(0), cls.mask.data);
        ++n;
      }
    }
    ASSERT_GT(n, 0) << name;
    std::printf("[precision] %-16s %3d objects: mask IoU bf16 vs fp32 %.4f; Dice vs truth fp32 %.4f bf16 %.4f "
                "(diff %+.4f); max embedding relative error %.3g\n",
                name, n, sum_iou / n, dice32 / n, dice16 / n, (dice16 - dice32) / n, rel);
    EXPECT_GE(sum_iou / n, 0.98) << name;
    all_iou += sum_iou;
    all_n += n;
  }
  std::printf("[precision] default model: mean mask IoU bf16 vs fp32 %.4f over %d objects\n", all_iou / all_n, all_n);
  EXPECT_GE(all_iou / all_n, 0.98);
}
