// `medicosam serve` offers a checkpoint's UNETR semantic head as a MONAI Label
// `segmentation` model ("<name>_semantic"): listed in /info/ only when the
// checkpoint has a head, and its result on a volume equals, voxel for voxel,
// what `medicosam semantic` writes for the same checkpoint and image.
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/model/unetr_module.hpp"
#include "server_process.hpp"

namespace medicosam {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kBrain = fs::path(MEDICOSAM_SHARED_DIR) / "data/mri_tumor_3d_pyradiomics/nrrd/brain1_image.nrrd";
const fs::path kDefaultModel = fs::path(MEDICOSAM_SOURCE_DIR) / "models/medicosam_default.safetensors";
constexpr int64_t kClasses = 3;

fs::path scratch() {
  const auto d = fs::temp_directory_path() / ("medicosam_server_semantic_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// The default model with a small random 3-class UNETR head beside it, as
// micro_sam's joint .pth ({"model_state", "decoder_state"}).
std::string joint_checkpoint() {
  auto loaded = model::load_sam(kDefaultModel.string());
  model::UnetrConfig c;
  c.embed_dim = loaded.sam->config.prompt_embed_dim;  // the neck's channels (128 for the default model)
  c.initial_features = 8;
  c.num_classes = kClasses;
  torch::manual_seed(7);
  model::Unetr head(c);
  {
    torch::NoGradGuard ng;
    for (auto& p : head->parameters()) p.normal_(0, 0.2);
  }
  model::SaveOptions opt;
  opt.decoder_state = model::unetr_state_dict(*head);
  const auto path = (scratch() / "joint.pth").string();
  model::save_sam(path, *loaded.sam, opt);
  return path;
}

TEST(ServerSemantic, HeadIsASegmentationModelAndMatchesTheCli) {
  const char* bin = std::getenv("MEDICOSAM_CLI");
  ASSERT_TRUE(bin && fs::exists(bin)) << "MEDICOSAM_CLI must point at the built CLI";
  const auto dir = scratch();
  const auto ckpt = joint_checkpoint();
  fs::create_directories(dir / "datastore");
  fs::copy_file(kBrain, dir / "datastore/brain1.nrrd", fs::copy_options::overwrite_existing);
  servertest::ServerProcess server(bin,
                                   {"--datastore", (dir / "datastore").string(), "--threads", "2", "--model",
                                    "sem=" + ckpt, "--model", "plain=" + kDefaultModel.string(), "--web-dir", "none",
                                    "--precision", "fp32"},  // as the CLI run below, so both compute the same embeddings
                                   (dir / "server.log").string());
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(600, 0);

  // Listed for the checkpoint with a head only.
  auto r = c.Get("/info/");
  ASSERT_TRUE(r && r->status == 200);
  const auto info = json::parse(r->body);
  ASSERT_TRUE(info["models"].contains("sem_semantic")) << info["models"].dump();
  EXPECT_EQ(info["models"]["sem_semantic"]["type"], "segmentation");
  EXPECT_EQ(info["models"]["sem_semantic"]["labels"].size(), static_cast<size_t>(kClasses - 1));
  EXPECT_FALSE(info["models"].contains("plain_semantic"));
  r = c.Post("/infer/plain_semantic?image=brain1", "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("has no semantic head"), std::string::npos) << r->body;

  // The whole volume through the head.
  r = c.Post("/infer/sem_semantic?image=brain1&output=image", "{}", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto served = (dir / "served.nii.gz").string();
  write_file_atomic(served, r->body);
  const auto from_server = io::read_label_map(served);

  // The CLI on the same checkpoint and file.
  const auto cli_out = (dir / "cli.nii.gz").string();
  const auto cmd = std::string(bin) + " semantic --quiet --threads 2 --precision fp32 -m " + ckpt + " " + kBrain.string() + " --out " +
                   cli_out + " > " + (dir / "cli.log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << (dir / "cli.log");
  const auto from_cli = io::read_label_map(cli_out);

  const auto image = io::read_image(kBrain.string());
  ASSERT_EQ(from_server.geometry().size, image.geometry().size);
  ASSERT_EQ(from_cli.geometry().size, image.geometry().size);
  int64_t differ = 0, labelled = 0;
  std::set<uint16_t> seen;
  for (int64_t i = 0; i < from_server.num_voxels(); ++i) {
    differ += from_server.data()[i] != from_cli.data()[i];
    labelled += from_server.data()[i] != 0;
    seen.insert(from_server.data()[i]);
  }
  EXPECT_EQ(differ, 0) << "server and CLI disagree on " << differ << " voxels";
  EXPECT_GT(labelled, 0) << "a random 3-class head labels nothing";
  EXPECT_LT(*seen.rbegin(), kClasses);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(from_server.geometry().spacing[i], image.geometry().spacing[i], 1e-4);
}

}  // namespace
}  // namespace medicosam
