// The architecture is derived from a checkpoint's tensor shapes alone: every
// official SAM size, and other configurations, come out right.
#include <gtest/gtest.h>

#include "medicosam/core/error.hpp"
#include "medicosam/model/sam.hpp"

using namespace medicosam;
using namespace medicosam::model;

namespace {
ShapeMap shapes_of(const SamConfig& c) {
  torch::NoGradGuard ng;
  Sam sam(c);
  ShapeMap m;
  for (const auto& [name, t] : sam_state_dict(*sam)) m[name] = t.sizes().vec();
  return m;
}
}  // namespace

TEST(DeriveConfig, OfficialSamSizesRoundTrip) {
  for (const auto& ref : {SamConfig::vit_b(), SamConfig::vit_l(), SamConfig::vit_h()}) {
    const auto c = derive_config(shapes_of(ref), "test");
    EXPECT_EQ(c.encoder.embed_dim, ref.encoder.embed_dim);
    EXPECT_EQ(c.encoder.depth, ref.encoder.depth);
    EXPECT_EQ(c.encoder.num_heads, ref.encoder.num_heads);
    EXPECT_EQ(c.encoder.global_attn_indexes, ref.encoder.global_attn_indexes);
    EXPECT_EQ(c.encoder.window_size, 14);
    EXPECT_EQ(c.encoder.img_size, 1024);
    EXPECT_EQ(c.encoder.patch_size, 16);
    EXPECT_EQ(c.encoder.mlp_dim, 4 * ref.encoder.embed_dim);
    EXPECT_EQ(c.decoder.transformer_depth, 2);
    EXPECT_EQ(c.decoder.mlp_dim, 2048);
    EXPECT_EQ(c.decoder.num_multimask_outputs, 3);
    EXPECT_EQ(c.architecture_name(), ref.architecture_name());
  }
  EXPECT_EQ(SamConfig::vit_h().architecture_name(), "vit_h");
}

TEST(DeriveConfig, OtherConfigurationsComeFromTheShapes) {
  SamConfig ref;
  ref.encoder.img_size = 384;
  ref.encoder.patch_size = 16;
  ref.encoder.embed_dim = 96;
  ref.encoder.depth = 5;
  ref.encoder.num_heads = 3;
  ref.encoder.mlp_dim = 288;
  ref.encoder.window_size = 8;
  ref.encoder.global_attn_indexes = {1, 4};
  ref.encoder.out_chans = 128;
  ref.prompt_embed_dim = 128;
  ref.decoder.transformer_dim = 128;
  ref.decoder.mlp_dim = 512;
  ref.decoder.iou_head_hidden_dim = 128;
  const auto c = derive_config(shapes_of(ref), "test");
  EXPECT_EQ(c.encoder.img_size, 384);
  EXPECT_EQ(c.encoder.depth, 5);
  EXPECT_EQ(c.encoder.num_heads, 3);
  EXPECT_EQ(c.encoder.mlp_dim, 288);
  EXPECT_EQ(c.encoder.window_size, 8);
  EXPECT_EQ(c.encoder.global_attn_indexes, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(c.prompt_embed_dim, 128);
  EXPECT_EQ(c.decoder.mlp_dim, 512);
  EXPECT_EQ(c.image_embedding_size(), 24);
  EXPECT_EQ(c.low_res_size(), 96);
}

TEST(DeriveConfig, MissingOrBrokenTensorsAreNamed) {
  auto m = shapes_of(SamConfig::vit_b());
  m.erase("image_encoder.patch_embed.proj.weight");
  try {
    derive_config(m, "ckpt.pth");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt.pth"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("patch_embed.proj.weight"), std::string::npos);
  }
  auto n = shapes_of(SamConfig::vit_b());
  n["image_encoder.blocks.0.attn.rel_pos_h"] = {27, 60};  // 60 does not divide 768
  EXPECT_THROW(derive_config(n, "ckpt.pth"), CheckpointError);
}

TEST(EncoderFlops, VitBIsAboutNineHundredGflop) {
  const double gf = encoder_flops(SamConfig::vit_b().encoder) / 1e9;
  EXPECT_GT(gf, 850);
  EXPECT_LT(gf, 1000);
}
