// TrainConfig: every key from_json accepts survives to_json -> from_json, and
// the config.json a run writes (to_json, absolute paths) loads back from its
// own folder.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "medicosam/core/error.hpp"
#include "medicosam/train/config.hpp"

namespace medicosam::train {
namespace {

namespace fs = std::filesystem;

// A value for every known key, none of them the default.
nlohmann::json every_key() {
  return {
      {"objective", "joint"},
      {"semantic",
       {{"model", "unetr"}, {"num_classes", 3}, {"features", 16}, {"depth", 3},
        {"input_size", 128}, {"conv_transpose", true}, {"dice_weight", 0.7}, {"ce_weight", 0.3},
        {"decoder_init", "/models/dec.pth"}}},
      {"init", "/models/start.safetensors"},
      {"architecture", {{"img_size", 64}, {"embed_dim", 32}}},
      {"train_data",
       {{{"type", "folder"}, {"path", "/data/a"}, {"split", "train"}, {"normalize", "minmax"},
         {"weight", 2.0}, {"limit", 7}, {"classes", "ids"}},
        {{"type", "synthetic"}, {"count", 12}, {"seed", 3}, {"normalize", "percentile"},
         {"weight", 1.0}, {"min_side", 40}, {"max_side", 90}, {"max_objects", 4}}}},
      {"val_data",
       {{{"type", "volumes"}, {"pairs", {{{"image", "/v/a.nrrd"}, {"labels", "/v/a_l.nrrd"}}}},
         {"axis", "coronal"}, {"normalize", "minmax"}, {"weight", 1.0}}}},
      {"augment",
       {{"flips", false}, {"rotate90", false}, {"brightness", 0.3}, {"contrast", 0.4},
        {"gamma", 0.5}, {"scale_min", 0.7}, {"scale_max", 1.5}}},
      {"batch_size", 6},
      {"objects_per_image", 3},
      {"sub_iterations", 5},
      {"mask_prob", 0.25},
      {"box_distortion", 0.05},
      {"loss_size", 128},
      {"bce_weight", 3.0},
      {"iterations", 77},
      {"epoch_length", 11},
      {"val_images", 9},
      {"lr", 3e-5},
      {"weight_decay", 0.02},
      {"beta1", 0.8},
      {"beta2", 0.99},
      {"eps", 1e-6},
      {"grad_clip", 2.0},
      {"schedule", "step"},
      {"warmup", 5},
      {"min_lr_ratio", 0.1},
      {"step_size", 20},
      {"gamma", 0.5},
      {"freeze_image_encoder", true},
      {"freeze_prompt_encoder", true},
      {"seed", 42},
      {"threads", 3},
      {"device", "cuda"},
      {"mixed_precision", false},
      {"prefetch", 2},
      {"out_dir", "/runs/x"},
      {"resume", false},
      {"stop_after", 4},
      {"rank", 1},
      {"world_size", 2},
      {"master_addr", "10.0.0.2"},
      {"master_port", 30001},
      {"comment", "every key"},
  };
}

TEST(Config, EveryKnownKeyIsTested) {
  const nlohmann::json j = every_key();
  std::set<std::string> in_test;
  for (const auto& [k, v] : j.items()) in_test.insert(k);
  for (const std::string& k : TrainConfig::known_keys()) {
    EXPECT_TRUE(in_test.count(k)) << "every_key() lacks \"" << k << "\"";
  }
  EXPECT_EQ(in_test.size(), TrainConfig::known_keys().size());
}

TEST(Config, LossSizeIsAccepted) {
  const TrainConfig c = TrainConfig::from_json(every_key(), "/cfg/train.json");
  EXPECT_EQ(c.loss_size, 128);
  EXPECT_EQ(c.bce_weight, 3.0);
}

TEST(Config, RoundTripKeepsEveryKey) {
  const nlohmann::json in = every_key();
  const TrainConfig c = TrainConfig::from_json(in, "/cfg/train.json");
  const nlohmann::json out = c.to_json();
  // Per process / per run / free text: deliberately not written.
  for (const char* k : {"rank", "stop_after", "comment"}) EXPECT_FALSE(out.contains(k)) << k;
  for (const auto& [k, v] : in.items()) {
    if (k == "rank" || k == "stop_after" || k == "comment") continue;
    ASSERT_TRUE(out.contains(k)) << "to_json() drops \"" << k << "\"";
    EXPECT_EQ(out[k], v) << "\"" << k << "\" changes in the round trip";
  }
  EXPECT_EQ(out.size(), in.size() - 3);
  // And what was written reads back to the same configuration.
  const TrainConfig again = TrainConfig::from_json(out, "/elsewhere/config.json");
  EXPECT_EQ(again.to_json(), out);
}

TEST(Config, WrittenConfigLoadsBackFromTheRunFolder) {
  // Relative paths resolve against the config's folder; the written
  // config.json (in another folder) must still name the same files.
  const fs::path dir = fs::temp_directory_path() / ("medicosam_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir / "runs" / "x");
  nlohmann::json j = {{"init", "models/start.pt"},
                      {"train_data", {{{"type", "folder"}, {"path", "data/a"}}}},
                      {"val_data", {{{"type", "volumes"},
                                     {"pairs", {{{"image", "v/a.nrrd"}, {"labels", "v/l.nrrd"}}}}}}},
                      {"out_dir", "runs/x"},
                      {"loss_size", 64}};
  const TrainConfig c = TrainConfig::from_json(j, (dir / "train.json").string());
  const fs::path written = dir / "runs" / "x" / "config.json";
  std::ofstream(written) << c.to_json().dump(2) << "\n";
  const TrainConfig back = TrainConfig::from_file(written.string());
  EXPECT_EQ(back.init, (dir / "models/start.pt").string());
  ASSERT_EQ(back.train_data.size(), 1u);
  EXPECT_EQ(back.train_data[0].path, (dir / "data/a").string());
  ASSERT_EQ(back.val_data.size(), 1u);
  EXPECT_EQ(back.val_data[0].pairs[0].second, (dir / "v/l.nrrd").string());
  EXPECT_EQ(back.out_dir, (dir / "runs/x").string());
  EXPECT_EQ(back.loss_size, 64);
  EXPECT_EQ(back.to_json(), c.to_json());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medicosam::train
