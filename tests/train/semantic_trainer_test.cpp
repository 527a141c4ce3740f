// Semantic and joint training (objective "semantic" / "joint") on a tiny SAM
// and a small subset of a real multi-class dataset (MS-CMRSeg cardiac MRI:
// LV myocardium, LV pool, RV): the loss drops, the checkpoints carry the head
// in micro_sam's layout and load back for inference, resume continues, the
// U-Net baseline trains through the same trainer, clear errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/unet.hpp"
#include "medicosam/model/unetr.hpp"
#include "medicosam/train/semantic_net.hpp"
#include "medicosam/train/trainer.hpp"

namespace fs = std::filesystem;
using namespace medicosam;
using namespace medicosam::train;

namespace {

const fs::path kCmr = fs::path(MEDICOSAM_SHARED_DIR) / "data" / "mscmr_bssfp_mri";

struct ScratchFolders {
  std::vector<fs::path> dirs;
  ~ScratchFolders() {
    if (std::getenv("MEDICOSAM_KEEP_SCRATCH")) return;
    for (const auto& d : dirs) fs::remove_all(d);
  }
} scratch_folders;

fs::path scratch(const std::string& name) {
  auto d = fs::temp_directory_path() / ("medicosam_semtrain_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  scratch_folders.dirs.push_back(d);
  return d;
}

// A tiny SAM (128 px input, 8 x 8 grid: the head's output is 16 x 8 = 128 px)
// with a small UNETR head (features 64/32/16/8), 4 classes incl. background.
nlohmann::json semantic_config(const fs::path& out, int64_t iterations) {
  return {{"objective", "semantic"},
          {"semantic", {{"model", "unetr"}, {"num_classes", 4}, {"features", 8}}},
          {"architecture",
           {{"img_size", 128},
            {"patch_size", 16},
            {"embed_dim", 32},
            {"depth", 2},
            {"num_heads", 2},
            {"window_size", 4},
            {"global_attn_indexes", {1}},
            {"out_chans", 32},
            {"decoder_mlp_dim", 64},
            {"decoder_heads", 2}}},
          {"train_data",
           {{{"type", "folder"}, {"path", kCmr.string()}, {"split", "train"}, {"classes", "ids"},
             {"limit", 8}, {"normalize", "minmax"}}}},
          {"val_data",
           {{{"type", "folder"}, {"path", kCmr.string()}, {"split", "val"}, {"classes", "ids"},
             {"limit", 3}, {"normalize", "minmax"}}}},
          {"augment", {{"scale_min", 1.0}, {"scale_max", 1.0}}},
          {"batch_size", 2},
          {"objects_per_image", 1},
          {"iterations", iterations},
          {"epoch_length", 10},
          {"val_images", 3},
          {"lr", 3e-3},
          {"schedule", "constant"},
          {"threads", 1},
          {"seed", 3},
          {"out_dir", out.string()}};
}

// Rows of a CSV as name -> column values.
std::map<std::string, std::vector<std::string>> read_csv(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  std::stringstream hs(line);
  for (std::string h; std::getline(hs, h, ',');) header.push_back(h);
  std::map<std::string, std::vector<std::string>> cols;
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    size_t i = 0;
    for (std::string v; std::getline(ls, v, ',') && i < header.size(); ++i) cols[header[i]].push_back(v);
    for (; i < header.size(); ++i) cols[header[i]].push_back("");
  }
  return cols;
}

double mean_of(const std::vector<std::string>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += std::stod(v.at(i));
  return s / static_cast<double>(to - from);
}

TrainSample first_val_sample() {
  DatasetSpec spec;
  spec.type = "folder";
  spec.path = kCmr.string();
  spec.split = "val";
  spec.classes = "ids";
  spec.normalize = "minmax";
  return open_dataset(spec)->get(0);
}

void expect_loss_drops(const fs::path& out, int64_t steps) {
  const auto log = read_csv(out / "train_log.csv");
  ASSERT_EQ(log.at("loss").size(), static_cast<size_t>(steps));
  const double start = mean_of(log.at("loss"), 0, 5), end = mean_of(log.at("loss"), steps - 5, steps);
  EXPECT_LT(end, 0.7 * start) << "loss " << start << " -> " << end;
}

TEST(SemanticTrainer, UnetrLearnsTheClassesAndItsCheckpointsCarryTheHead) {
  const auto out = scratch("unetr");
  const int64_t steps = 40;
  const auto cfg = TrainConfig::from_json(semantic_config(out, steps), "");
  const auto s = run_training(cfg);
  EXPECT_EQ(s.iterations_done, steps);
  expect_loss_drops(out, steps);
  for (const char* f : {"latest.pt", "best.pt", "best.safetensors", "latest.safetensors", "train_log.csv",
                        "validation.csv", "config.json", "loss.png", "validation.png"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto val = read_csv(out / "validation.csv");
  ASSERT_EQ(val.at("iteration").size(), 4u);
  for (const char* c : {"dice_class1", "dice_class2", "dice_class3", "semantic_metric"})
    EXPECT_TRUE(val.count(c)) << c;
  // Learning shows in validation too: the last mean Dice beats the first.
  EXPECT_GT(std::stod(val.at("dice_mean").back()), std::stod(val.at("dice_mean").front()));

  // micro_sam's layout: "model_state" (sam.*) + "decoder_state"; the head is what `semantic` reads.
  const auto ck = checkpoint::read_sam_checkpoint((out / "best.pt").string());
  EXPECT_EQ(ck.stripped_prefix, "sam.");
  EXPECT_FALSE(ck.decoder_state.empty());
  const auto head = model::SemanticHead::load((out / "best.pt").string());
  EXPECT_EQ(head.config().num_classes, 4);
  EXPECT_EQ(head.config().initial_features, 8);
  EXPECT_EQ(head.config().embed_dim, 32);
  EXPECT_EQ(model::SemanticHead::load((out / "best.safetensors").string()).config().num_classes, 4);

  // Inference: the same weights from latest.pt and latest.safetensors give the same labels.
  const auto sample = first_val_sample();
  const auto net = SemanticNet::load((out / "latest.pt").string());
  EXPECT_FALSE(net.is_unet());
  EXPECT_EQ(net.num_classes(), 4);
  EXPECT_EQ(net.input_size(), 128);
  const auto labels = net.segment(sample.image.data(), sample.height, sample.width);
  ASSERT_EQ(labels.size(), static_cast<size_t>(sample.height) * sample.width);
  EXPECT_LT(*std::max_element(labels.begin(), labels.end()), 4);
  EXPECT_GT(*std::max_element(labels.begin(), labels.end()), 0);  // it found something
  const auto again = SemanticNet::load((out / "latest.safetensors").string());
  EXPECT_EQ(again.segment(sample.image.data(), sample.height, sample.width), labels);
}

TEST(SemanticTrainer, ResumeContinuesFromLatest) {
  const auto out = scratch("resume");
  auto cfg = TrainConfig::from_json(semantic_config(out, 6), "");
  cfg.epoch_length = 3;
  cfg.stop_after = 4;
  auto s = run_training(cfg);
  EXPECT_TRUE(s.stopped_early);
  EXPECT_EQ(s.iterations_done, 4);
  cfg.stop_after = 0;
  s = run_training(cfg);
  EXPECT_FALSE(s.stopped_early);
  EXPECT_EQ(s.iterations_done, 6);
  EXPECT_EQ(read_csv(out / "train_log.csv").at("iteration").size(), 6u);
  EXPECT_EQ(read_csv(out / "validation.csv").at("iteration").size(), 2u);
}

TEST(SemanticTrainer, UnetBaselineTrainsThroughTheSameTrainer) {
  const auto out = scratch("unet");
  const int64_t steps = 40;
  auto j = semantic_config(out, steps);
  j.erase("architecture");
  j["semantic"] = {{"model", "unet"}, {"num_classes", 4}, {"features", 8}, {"depth", 3}, {"input_size", 128}};
  const auto s = run_training(TrainConfig::from_json(j, ""));
  EXPECT_EQ(s.iterations_done, steps);
  expect_loss_drops(out, steps);
  EXPECT_TRUE(model::is_unet_file((out / "best.safetensors").string()));
  EXPECT_TRUE(model::is_unet_file((out / "best.pt").string()));
  const auto net = SemanticNet::load((out / "best.safetensors").string());
  EXPECT_TRUE(net.is_unet());
  EXPECT_EQ(net.num_classes(), 4);
  const auto sample = first_val_sample();
  const auto labels = net.segment(sample.image.data(), sample.height, sample.width);
  ASSERT_EQ(labels.size(), static_cast<size_t>(sample.height) * sample.width);
  EXPECT_LT(*std::max_element(labels.begin(), labels.end()), 4);
  // A U-Net file is not a SAM with a head.
  EXPECT_THROW(model::SemanticHead::load((out / "best.safetensors").string()), InputError);
}

TEST(SemanticTrainer, JointStepsTrainThePromptDecoderAndTheHead) {
  const auto out = scratch("joint");
  auto j = semantic_config(out, 4);
  j["objective"] = "joint";
  j["epoch_length"] = 2;
  j["sub_iterations"] = 2;
  j["val_images"] = 2;
  const auto s = run_training(TrainConfig::from_json(j, ""));
  EXPECT_EQ(s.iterations_done, 4);
  const auto log = read_csv(out / "train_log.csv");
  for (const auto& v : log.at("interactive_loss")) EXPECT_GT(std::stod(v), 0.0);
  for (const auto& v : log.at("semantic_loss")) EXPECT_GT(std::stod(v), 0.0);
  const auto val = read_csv(out / "validation.csv");
  ASSERT_TRUE(val.count("interactive_metric"));
  EXPECT_FALSE(val.at("dice_box").front().empty());
  // metric = interactive + semantic / 3 (micro_sam JointSamTrainer)
  EXPECT_NEAR(std::stod(val.at("metric")[0]),
              std::stod(val.at("interactive_metric")[0]) + std::stod(val.at("semantic_metric")[0]) / 3, 1e-5);
  const auto ck = checkpoint::read_sam_checkpoint((out / "latest.pt").string());
  EXPECT_FALSE(ck.decoder_state.empty());
  EXPECT_EQ(model::SemanticHead::load((out / "latest.pt").string()).config().num_classes, 4);
}

TEST(SemanticTrainer, ClearErrors) {
  const auto out = scratch("errors");
  // Class ids beyond the head: the mask file is named.
  auto j = semantic_config(out, 2);
  j["semantic"]["num_classes"] = 3;
  try {
    run_training(TrainConfig::from_json(j, ""));
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("instances/mscmr_"), std::string::npos) << m;
    EXPECT_NE(m.find("class id 3"), std::string::npos) << m;
  }
  auto bad = [&](const std::function<void(nlohmann::json&)>& change, const std::string& expect) {
    auto c = semantic_config(out, 2);
    change(c);
    try {
      TrainConfig::from_json(c, "cfg.json");
      ADD_FAILURE() << "no error for " << expect;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  bad([](auto& c) { c["objective"] = "semantik"; }, "\"objective\" must be");
  bad([](auto& c) { c["semantic"]["model"] = "segformer"; }, "unetr or unet");
  bad([](auto& c) { c["semantic"]["classes"] = 3; }, "unknown setting \"classes\"");
  bad([](auto& c) { c["semantic"]["num_classes"] = 0; }, "num_classes");
  bad([](auto& c) {
        c["objective"] = "joint";
        c["semantic"]["model"] = "unet";
      },
      "joint objective");
  bad([](auto& c) { c["train_data"][0]["classes"] = "organs"; }, "\"classes\" must be");
  // A decoder_init without a head.
  auto d = semantic_config(out, 2);
  d["semantic"]["decoder_init"] = (kCmr / "split.json").string();
  EXPECT_THROW(run_training(TrainConfig::from_json(d, "")), InputError);
}

}  // namespace
