// Semantic training and evaluation as users run them: `medicosam train` with
// objective "semantic" on a few real cardiac MRI slices (3 classes by id),
// then `info` shows the checkpoint's head, `semantic` segments an image with
// it, and `eval --protocol semantic` scores it and a U-Net trained the same
// way; the report's numbers agree with an in-process recomputation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "medicosam/io/read.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {

const fs::path kCmr = fs::path(MEDICOSAM_SHARED_DIR) / "data" / "mscmr_bssfp_mri";

nlohmann::json config(const std::string& model) {
  nlohmann::json j = {
      {"objective", "semantic"},
      {"semantic", {{"model", model}, {"num_classes", 4}, {"features", 8}, {"depth", 3}, {"input_size", 128}}},
      {"train_data", {{{"type", "folder"}, {"path", kCmr.string()}, {"split", "train"}, {"classes", "ids"},
                       {"limit", 6}, {"normalize", "minmax"}}}},
      {"val_data", {{{"type", "folder"}, {"path", kCmr.string()}, {"split", "val"}, {"classes", "ids"},
                     {"limit", 2}, {"normalize", "minmax"}}}},
      {"batch_size", 2},
      {"objects_per_image", 1},
      {"iterations", 8},
      {"epoch_length", 4},
      {"val_images", 2},
      {"lr", 3e-3},
      {"threads", 1}};
  if (model == "unetr")
    j["architecture"] = {{"img_size", 128}, {"patch_size", 16}, {"embed_dim", 32}, {"depth", 2},
                         {"num_heads", 2},  {"window_size", 4}, {"global_attn_indexes", {1}},
                         {"out_chans", 32}, {"decoder_mlp_dim", 64}, {"decoder_heads", 2}};
  return j;
}

TEST(SemanticTrainCli, TrainInfoSegmentEvaluate) {
  const auto dir = clitest::cli_scratch();
  for (const std::string m : {"unetr", "unet"}) {
    std::ofstream(dir / (m + ".json")) << config(m).dump(2);
    const auto r = clitest::run_cli("train --config " + (dir / (m + ".json")).string() + " --out " +
                                    (dir / m).string() + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["iterations"], 8);
    EXPECT_NE(r.err.find("semantic training"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ETA"), std::string::npos) << r.err;  // progress with ETA
  }
  // info shows the head of the SAM checkpoint.
  auto r = clitest::run_cli("info " + (dir / "unetr" / "best.pt").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE((r.out + r.err).find("UNETR decoder, 4 classes"), std::string::npos) << r.out;
  // semantic segments a real slice with it.
  const auto image = kCmr / "images" / "mscmr_p01_z01.png";
  r = clitest::run_cli("semantic -m " + (dir / "unetr" / "best.pt").string() + " " + image.string() +
                       " --out " + (dir / "labels.png").string() + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto labels = io::read_label_map((dir / "labels.png").string());
  EXPECT_EQ(labels.size()[0], 256);
  for (int64_t i = 0; i < labels.geometry().num_voxels(); ++i) ASSERT_LT(labels.data()[i], 4);

  // eval --protocol semantic: both models, one report.
  const auto out = dir / "report";
  r = clitest::run_cli("eval --protocol semantic -m " + (dir / "unetr" / "best.pt").string() + " -m " +
                       (dir / "unet" / "best.safetensors").string() + " --data " + kCmr.string() +
                       " --split val --limit 3 --classes ids --normalize minmax -q --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"summary.md", "summary.json", "summary.csv", "per_image.csv"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto s = nlohmann::json::parse(std::ifstream(out / "summary.json"));
  ASSERT_EQ(s["results"].size(), 2u);
  for (const auto& res : s["results"]) {
    EXPECT_EQ(res["images"], 3);
    EXPECT_EQ(res["classes"].size(), 3u);
    // mean Dice = mean of the classes seen
    double sum = 0;
    int n = 0;
    for (const auto& c : res["classes"])
      if (c["images"].get<int>() > 0) sum += c["dice"].get<double>(), ++n;
    ASSERT_GT(n, 0);
    EXPECT_NEAR(res["mean_dice"].get<double>(), sum / n, 1e-9);
  }
  EXPECT_NE(r.out.find("mean Dice"), std::string::npos) << r.out;
  // A checkpoint without a head or U-Net: one clear line naming it.
  r = clitest::run_cli("eval --protocol semantic -m " + (dir / "unetr.json").string() + " --data " +
                       kCmr.string() + " --split val --limit 1 --out " + (dir / "r2").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unetr.json"), std::string::npos) << r.err;
}

}  // namespace
