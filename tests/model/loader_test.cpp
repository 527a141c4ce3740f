// Loading: every key matched by name; a checkpoint that does not fit gives one
// error listing all the problems.
#include <gtest/gtest.h>

#include "medicosam/core/error.hpp"
#include "medicosam/model/loader.hpp"

using namespace medicosam;
using namespace medicosam::model;

namespace {
const std::string kFixture =
    std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/sam_tiny_seed0.pth";

std::vector<std::pair<std::string, torch::Tensor>> fixture_tensors() {
  auto m = load_sam(kFixture);
  std::vector<std::pair<std::string, torch::Tensor>> v;
  for (const auto& [n, t] : sam_state_dict(*m.sam)) v.emplace_back(n, t.clone());
  return v;
}
}  // namespace

TEST(Loader, FixtureLoadsInEvalMode) {
  auto m = load_sam(kFixture);
  EXPECT_FALSE(m.sam->is_training());
  EXPECT_EQ(m.format, "pytorch-zip");
  EXPECT_EQ(m.stored_dtype, "float32");
  EXPECT_EQ(m.num_parameters, 5203056);
}

TEST(Loader, AllKeyProblemsAreListedInOneError) {
  auto tensors = fixture_tensors();
  const auto config = config_from_tensors(tensors, "x");
  // One missing, one unexpected, one mis-shaped key.
  tensors.erase(std::find_if(tensors.begin(), tensors.end(), [](const auto& p) {
    return p.first == "mask_decoder.iou_token.weight";
  }));
  tensors.emplace_back("mask_decoder.extra_head.weight", torch::zeros({2}));
  for (auto& [n, t] : tensors)
    if (n == "mask_decoder.mask_tokens.weight") t = torch::zeros({4, 3});
  Sam sam(config);
  try {
    load_state_dict(*sam, tensors, "bad.pth");
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("bad.pth"), std::string::npos);
    EXPECT_NE(w.find("1 missing key(s) (mask_decoder.iou_token.weight)"), std::string::npos) << w;
    EXPECT_NE(w.find("1 unexpected key(s) (mask_decoder.extra_head.weight)"), std::string::npos)
        << w;
    EXPECT_NE(w.find("mask_decoder.mask_tokens.weight (file [4,3], model [4,256])"),
              std::string::npos)
        << w;
  }
}

TEST(Loader, Float16WeightsLoadAsFloat32) {
  auto tensors = fixture_tensors();
  for (auto& [n, t] : tensors) t = t.to(torch::kFloat16);
  Sam sam(config_from_tensors(tensors, "x"));
  load_state_dict(*sam, tensors, "half.safetensors");
  for (const auto& [n, t] : sam_state_dict(*sam)) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << n;
}

TEST(Loader, MissingFileIsAnInputError) {
  EXPECT_THROW(load_sam("/nonexistent/model.pth"), InputError);
}
