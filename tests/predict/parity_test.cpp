// Parity with the official Segment Anything implementation, on fixtures it
// produced (random weights, fixed seeds). Data-driven: every folder listed in
// MEDICOSAM_PARITY_DIRS (colon-separated; default: ../shared/fixtures/sam_parity)
// holding a cases.json made the same way is checked, whatever its model config.
//
// Tolerances (fp32 on CPU): embeddings, low-res logits, sparse prompt
// embeddings and IoU predictions within 1e-4 absolute: the reference and we
// run the same float32 ops, but BLAS blocking and the order of reductions
// differ, which moves values by ~1e-6 relative. Binary masks must be equal
// except at pixels whose logit is within 1e-3 of the threshold, where such
// float-order differences may legitimately flip the sign.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medicosam/core/npy.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/predict/predictor.hpp"

using namespace medicosam;
using namespace medicosam::predict;
using nlohmann::json;

namespace {

constexpr double kTol = 1e-4;
constexpr float kMaskLogitBand = 1e-3f;

std::vector<std::string> parity_dirs() {
  std::vector<std::string> dirs;
  const char* env = std::getenv("MEDICOSAM_PARITY_DIRS");
  std::string s = env && *env ? env : std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity";
  std::stringstream ss(s);
  for (std::string d; std::getline(ss, d, ':');)
    if (!d.empty()) dirs.push_back(d);
  return dirs;
}

json load_cases(const std::string& dir) {
  std::ifstream in(dir + "/cases.json");
  EXPECT_TRUE(in) << dir << "/cases.json";
  return json::parse(in);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

bool has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

Prompt prompt_from_case(const std::string& dir, const json& c) {
  Prompt p;
  if (has(c, "point_coords_file")) {
    const auto coords = read_npy(dir + "/" + c["point_coords_file"].get<std::string>()).to_float();
    const auto labels = read_npy(dir + "/" + c["point_labels_file"].get<std::string>()).to_float();
    for (size_t i = 0; i < labels.size(); ++i) p.points.push_back({coords[2 * i], coords[2 * i + 1], int(labels[i])});
  }
  if (has(c, "box_file")) {
    const auto b = read_npy(dir + "/" + c["box_file"].get<std::string>()).to_float();
    p.box = Box{b[0], b[1], b[2], b[3]};
  }
  if (has(c, "mask_input_file")) p.mask_input = read_npy(dir + "/" + c["mask_input_file"].get<std::string>()).to_float();
  return p;
}

struct Fixture {
  std::string dir;
  json cases;
  std::string checkpoint() const { return dir + "/" + cases["model"]["checkpoint"].get<std::string>(); }
};

std::vector<Fixture> fixtures() {
  std::vector<Fixture> out;
  for (const auto& d : parity_dirs()) out.push_back({d, load_cases(d)});
  return out;
}

}  // namespace

TEST(Parity, CheckpointLoadsWithTheReferenceParameterCount) {
  for (const auto& f : fixtures()) {
    SCOPED_TRACE(f.dir);
    SamPredictor pred(f.checkpoint(), {2, "cpu"});
    EXPECT_EQ(pred.model().parameters, f.cases["model"]["num_parameters"].get<int64_t>());
    const auto& m = f.cases["model"];
    auto loaded = model::load_sam(f.checkpoint());
    const auto& e = loaded.sam->config.encoder;
    EXPECT_EQ(e.embed_dim, m["encoder_embed_dim"].get<int64_t>());
    EXPECT_EQ(e.depth, m["encoder_depth"].get<int64_t>());
    EXPECT_EQ(e.num_heads, m["encoder_num_heads"].get<int64_t>());
    EXPECT_EQ(e.global_attn_indexes, m["encoder_global_attn_indexes"].get<std::vector<int64_t>>());
    EXPECT_EQ(e.window_size, m["window_size"].get<int64_t>());
    EXPECT_EQ(e.img_size, m["img_size"].get<int64_t>());
    EXPECT_EQ(e.patch_size, m["patch_size"].get<int64_t>());
  }
}

TEST(Parity, SafetensorsCopyGivesTheSameEmbedding) {
  for (const auto& f : fixtures()) {
    if (!has(f.cases["model"], "checkpoint_safetensors")) continue;
    SCOPED_TRACE(f.dir);
    const auto& img = f.cases["images"][0];
    const auto image = read_npy(f.dir + "/" + img["image"].get<std::string>());
    SamPredictor a(f.checkpoint(), {2, "cpu"});
    SamPredictor b(f.dir + "/" + f.cases["model"]["checkpoint_safetensors"].get<std::string>(), {2, "cpu"});
    const int h = int(image.shape[0]), w = int(image.shape[1]);
    auto ea = a.encode(image.data.data(), h, w, 3).to_npy().to_float();
    auto eb = b.encode(image.data.data(), h, w, 3).to_npy().to_float();
    EXPECT_EQ(max_abs_diff(ea, eb), 0.0);
  }
}

TEST(Parity, ImageEmbeddingsMatchReference) {
  for (const auto& f : fixtures()) {
    SamPredictor pred(f.checkpoint(), {2, "cpu"});
    for (const auto& img : f.cases["images"]) {
      if (!has(img, "embedding")) continue;
      SCOPED_TRACE(f.dir + " " + img["name"].get<std::string>());
      const auto image = read_npy(f.dir + "/" + img["image"].get<std::string>());
      pred.set_image(image.data.data(), int(image.shape[0]), int(image.shape[1]), int(image.shape[2]));
      const auto& e = pred.embedding();
      EXPECT_EQ(e.input_size().height, img["input_size"][0].get<int>());
      EXPECT_EQ(e.input_size().width, img["input_size"][1].get<int>());
      const auto ref = read_npy(f.dir + "/" + img["embedding"].get<std::string>());
      const auto mine = e.to_npy();
      ASSERT_EQ(mine.shape, ref.shape);
      const double d = max_abs_diff(mine.to_float(), ref.to_float());
      EXPECT_LE(d, kTol);
      std::printf("[parity] %s embedding max|diff| = %.3g\n", img["name"].get<std::string>().c_str(), d);
    }
  }
}

TEST(Parity, GrayscaleInputEqualsReplicatedRgb) {
  for (const auto& f : fixtures()) {
    SamPredictor pred(f.checkpoint(), {2, "cpu"});
    for (const auto& img : f.cases["images"]) {
      if (!img.value("grayscale_replicated", false)) continue;
      const auto rgb = read_npy(f.dir + "/" + img["image"].get<std::string>());
      const int h = int(rgb.shape[0]), w = int(rgb.shape[1]);
      std::vector<uint8_t> gray(size_t(h) * w);
      for (size_t i = 0; i < gray.size(); ++i) gray[i] = rgb.data[3 * i];
      auto a = pred.encode(rgb.data.data(), h, w, 3).to_npy().to_float();
      auto b = pred.encode(gray.data(), h, w, 1).to_npy().to_float();
      EXPECT_EQ(max_abs_diff(a, b), 0.0);
    }
  }
}

TEST(Parity, PromptCasesMatchReference) {
  for (const auto& f : fixtures()) {
    SamPredictor pred(f.checkpoint(), {2, "cpu"});
    auto loaded = model::load_sam(f.checkpoint());
    for (const auto& img : f.cases["images"]) {
      const auto image = read_npy(f.dir + "/" + img["image"].get<std::string>());
      pred.set_image(image.data.data(), int(image.shape[0]), int(image.shape[1]), int(image.shape[2]));
      for (const auto& c : img["cases"]) {
        const std::string name = c["name"];
        SCOPED_TRACE(f.dir + " " + name);
        const bool multimask = c["multimask_output"];
        const Prompt p = prompt_from_case(f.dir, c);
        const Prediction out = pred.predict(p, multimask, /*want_logits=*/true);

        const auto ref_iou = read_npy(f.dir + "/" + c["iou_predictions"].get<std::string>()).to_float();
        const double d_iou = max_abs_diff(out.iou_predictions, ref_iou);
        EXPECT_LE(d_iou, kTol);

        double d_low = -1;
        if (has(c, "low_res_logits")) {
          const auto ref_low = read_npy(f.dir + "/" + c["low_res_logits"].get<std::string>());
          ASSERT_EQ(ref_low.shape[2], out.low_res_size);
          d_low = max_abs_diff(out.low_res_logits, ref_low.to_float());
          EXPECT_LE(d_low, kTol);
        }

        // Masks: equal except where our logit is within the band around 0.
        const auto ref_masks = read_npy(f.dir + "/" + c["masks"].get<std::string>());
        ASSERT_EQ(ref_masks.numel(), int64_t(out.masks.size()));
        size_t flips = 0, hard_flips = 0;
        for (size_t i = 0; i < out.masks.size(); ++i) {
          if (out.masks[i] != ref_masks.data[i]) {
            ++flips;
            if (std::abs(out.logits[i]) >= kMaskLogitBand) ++hard_flips;
          }
        }
        EXPECT_EQ(hard_flips, 0u) << flips << " differing mask pixels";

        // Sparse prompt embeddings (intermediate), when the fixture has them.
        double d_sparse = -1;
        if (c.contains("intermediates") && has(c["intermediates"], "sparse_embeddings")) {
          const auto ref = read_npy(f.dir + "/" + c["intermediates"]["sparse_embeddings"].get<std::string>());
          torch::InferenceMode guard;
          const auto& o = img["original_size"];
          const CoordTransform tf{{o[0].get<int>(), o[1].get<int>()},
                                  {img["input_size"][0].get<int>(), img["input_size"][1].get<int>()}};
          torch::Tensor coords, labels, boxes;
          if (!p.points.empty()) {
            std::vector<float> cv;
            std::vector<int64_t> lv;
            for (const auto& pt : p.points) {
              cv.push_back(tf.x(pt.x));
              cv.push_back(tf.y(pt.y));
              lv.push_back(pt.label);
            }
            coords = torch::tensor(cv).view({1, -1, 2});
            labels = torch::tensor(lv).view({1, -1});
          }
          if (p.box) boxes = torch::tensor({tf.x(p.box->x0), tf.y(p.box->y0), tf.x(p.box->x1), tf.y(p.box->y1)}).view({1, 4});
          auto sparse = loaded.sam->prompt_encoder->forward(coords, labels, boxes, {}).first.contiguous();
          std::vector<float> sv(sparse.data_ptr<float>(), sparse.data_ptr<float>() + sparse.numel());
          ASSERT_EQ(sparse.sizes().vec(), ref.shape);
          d_sparse = max_abs_diff(sv, ref.to_float());
          EXPECT_LE(d_sparse, kTol);
        }
        std::printf("[parity] %-28s iou %.2g  low-res %.2g  sparse %.2g  mask flips %zu (all |logit|<1e-3)\n",
                    name.c_str(), d_iou, d_low, d_sparse, flips);
      }
    }
  }
}
