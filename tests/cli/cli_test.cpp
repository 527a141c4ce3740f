// The `medicosam` command line as users and other tools call it: outputs that
// appear, and bad input that ends in one clear line on stderr, a non-zero exit
// and no output file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "medicosam/core/npy.hpp"
#include "cli_runner.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {

const std::string kFix = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/";
const std::string kModel = kFix + "sam_tiny_seed0.pth";
const std::string kImage =
    std::string(MEDICOSAM_SOURCE_DIR) + "/samples/ct_abdomen_amos_0004_75.png";

using Result = clitest::CliResult;

fs::path scratch() { return clitest::cli_scratch(); }

Result cli(const std::string& args) { return clitest::run_cli(args); }

// One line on stderr naming `what`, exit code 1, and `output` not created.
void expect_clear_error(const Result& r, const std::string& what, const fs::path& output) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("medicosam: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(output)) << output;
  // No temporary files either.
  for (const auto& e : fs::directory_iterator(output.parent_path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}

bool python_torch() {
  return std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0;
}

}  // namespace

TEST(Cli, SegmentWritesMaskOverlayLogitsAndJson) {
  const auto mask = scratch() / "mask.png", overlay = scratch() / "overlay.png",
             logits = scratch() / "low.npy";
  auto r = cli("segment -m " + kModel + " -i " + kImage + " --point 190,265,1 --multimask --out " +
               mask.string() + " --overlay " + overlay.string() + " --logits-out " +
               logits.string() + " --json --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["iou_predictions"].size(), 3u);
  EXPECT_EQ(j["height"], 512);
  EXPECT_TRUE(j["timings_ms"].contains("encode"));
  EXPECT_TRUE(fs::exists(mask));
  EXPECT_TRUE(fs::exists(overlay));
  const auto low = read_npy(logits.string());
  EXPECT_EQ(low.shape, (std::vector<int64_t>{1, 1, 256, 256}));
  // The logits go back in as a mask prompt.
  r = cli("segment -m " + kModel + " -i " + kImage +
          " --point 190,265,1 --point 200,250,1 --mask-input " + logits.string() + " --out " +
          (scratch() / "refined.png").string() + " --threads 2");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, EmbedWritesTheEmbeddingAndSegmentReusesIt) {
  const auto emb = scratch() / "emb.npy";
  auto r =
      cli("embed -m " + kModel + " --image " + kImage + " --out " + emb.string() + " --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto a = read_npy(emb.string());
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 256, 64, 64}));
  EXPECT_EQ(a.type, NpyType::kFloat32);
  const auto m1 = scratch() / "m1.png", m2 = scratch() / "m2.png";
  ASSERT_EQ(
      cli("segment -m " + kModel + " -i " + kImage + " --box 150,234,225,298 --out " + m1.string())
          .code,
      0);
  ASSERT_EQ(cli("segment -m " + kModel + " -i " + kImage + " --box 150,234,225,298 --embedding " +
                emb.string() + " --out " + m2.string())
                .code,
            0);
  std::ifstream f1(m1, std::ios::binary), f2(m2, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f1), {}),
            std::string(std::istreambuf_iterator<char>(f2), {}));
}

TEST(Cli, InfoDescribesCheckpointsAndImages) {
  auto r = cli("info " + kModel + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 5203056);
  EXPECT_EQ(j["encoder"]["depth"], 4);
  r = cli("info " + kImage);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("512"), std::string::npos);
}

TEST(Cli, EmptyPromptSetIsRejected) {
  const auto out = scratch() / "empty.png";
  expect_clear_error(cli("segment -m " + kModel + " -i " + kImage + " --out " + out.string()),
                     "no prompt given", out);
}

TEST(Cli, PromptsOutsideTheImageAreRejected) {
  const auto out = scratch() / "outside.png";
  expect_clear_error(
      cli("segment -m " + kModel + " -i " + kImage + " --point 900,10,1 --out " + out.string()),
      "outside the 512x512 image", out);
  expect_clear_error(
      cli("segment -m " + kModel + " -i " + kImage + " --box 10,10,600,50 --out " + out.string()),
      "outside", out);
  expect_clear_error(
      cli("segment -m " + kModel + " -i " + kImage + " --point 10,abc,1 --out " + out.string()),
      "--point '10,abc,1'", out);
}

TEST(Cli, UnreadableImageIsRejected) {
  const auto fake = scratch() / "not_an_image.png", out = scratch() / "unreadable.png";
  std::ofstream(fake) << "this is text, not a PNG";
  expect_clear_error(
      cli("segment -m " + kModel + " -i " + fake.string() + " --point 1,1,1 --out " + out.string()),
      fake.string(), out);
  expect_clear_error(
      cli("segment -m " + kModel + " -i /nonexistent.png --point 1,1,1 --out " + out.string()),
      "/nonexistent.png", out);
}

TEST(Cli, TruncatedCheckpointIsRejected) {
  const auto bad = scratch() / "truncated.pth", out = scratch() / "trunc.png";
  {
    std::ifstream in(kModel, std::ios::binary);
    std::string bytes(std::istreambuf_iterator<char>(in), {});
    std::ofstream(bad, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_clear_error(
      cli("segment -m " + bad.string() + " -i " + kImage + " --point 1,1,1 --out " + out.string()),
      bad.string(), out);
}

TEST(Cli, CheckpointNamingAForeignGlobalIsRefusedWithoutRunningIt) {
  if (!python_torch()) GTEST_SKIP() << "python3-torch missing";
  const auto evil = scratch() / "evil.pth", marker = scratch() / "pwned",
             out = scratch() / "evil.png";
  const std::string py =
      "/usr/bin/python3 -c \"import os, torch\nclass E:\n def __reduce__(self): return (os.system, "
      "('touch " +
      marker.string() + "',))\ntorch.save({'image_encoder.pos_embed': E()}, '" + evil.string() +
      "')\"";
  ASSERT_EQ(std::system(py.c_str()), 0);
  ASSERT_FALSE(fs::exists(marker));
  expect_clear_error(
      cli("segment -m " + evil.string() + " -i " + kImage + " --point 1,1,1 --out " + out.string()),
      "system", out);
  EXPECT_FALSE(fs::exists(marker)) << "loading the checkpoint executed code";
}

TEST(Cli, WrongTensorShapesAreListed) {
  if (!python_torch()) GTEST_SKIP() << "python3-torch missing";
  const auto bad = scratch() / "reshaped.pth", out = scratch() / "reshaped.png";
  const std::string py = "/usr/bin/python3 -c \"import torch\nsd = torch.load('" + kModel +
                         "')\nsd['mask_decoder.iou_token.weight'] = torch.zeros(1, 255)\ndel "
                         "sd['mask_decoder.mask_tokens.weight']\ntorch.save(sd, '" +
                         bad.string() + "')\"";
  ASSERT_EQ(std::system(py.c_str()), 0);
  const auto r =
      cli("segment -m " + bad.string() + " -i " + kImage + " --point 1,1,1 --out " + out.string());
  expect_clear_error(r, bad.string(), out);
  EXPECT_NE(r.err.find("mask_decoder.mask_tokens.weight"), std::string::npos) << r.err;
}

TEST(Cli, UnsupportedOutputExtensionIsRejectedBeforeAnyWork) {
  const auto out = scratch() / "mask.xyz";
  expect_clear_error(
      cli("segment -m " + kModel + " -i " + kImage + " --point 1,1,1 --out " + out.string()),
      "unsupported extension", out);
}
