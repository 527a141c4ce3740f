// The U-Net baseline: output shapes, parameters, file round trips (the
// safetensors our trainer exports), detection and clear errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/unet.hpp"

namespace fs = std::filesystem;
using namespace medicosam;
using namespace medicosam::model;

namespace {

fs::path scratch_file(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("medicosam_unet_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

TEST(Unet, OutputShapesForClassesDepthsAndSizes) {
  torch::manual_seed(0);
  for (int64_t classes : {1, 3}) {
    for (int64_t depth : {2, 4}) {
      UnetConfig c;
      c.num_classes = classes;
      c.depth = depth;
      c.features = 4;
      c.input_size = 64;
      Unet2d net(c);
      net->eval();
      torch::NoGradGuard ng;
      auto y = net->forward(torch::randn({2, 3, 64, 48}));
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, classes, 64, 48})) << classes << " " << depth;
    }
  }
  UnetConfig c;
  c.depth = 3;
  Unet2d net(c);
  EXPECT_THROW(net->forward(torch::randn({1, 3, 60, 64})), c10::Error);  // not a multiple of 8
}

TEST(Unet, ParametersAndNames) {
  UnetConfig c;
  c.num_classes = 2;
  c.features = 8;
  c.depth = 2;
  Unet2d net(c);
  const auto sd = unet_state_dict(*net);
  // 2 encoders + bottleneck + 2 decoders, 2 convs (w, b) + 2 norms (w, b) each = 8 per block;
  // 2 upsamplers (w, b); out_conv (w, b).
  EXPECT_EQ(sd.size(), 5u * 8 + 2 * 2 + 2);
  EXPECT_EQ(sd.front().first, "encoders.0.block.0.weight");
  int64_t n = 0;
  for (const auto& p : net->parameters()) n += p.numel();
  // first conv 3->8 (3x3): 216 + 8
  EXPECT_EQ(sd.front().second.sizes(), (std::vector<int64_t>{8, 3, 3, 3}));
  EXPECT_GT(n, 0);
  EXPECT_NE(c.describe().find("2 classes"), std::string::npos);
}

TEST(Unet, SafetensorsRoundTripIsExact) {
  torch::manual_seed(1);
  UnetConfig c;
  c.num_classes = 3;
  c.features = 4;
  c.depth = 2;
  c.input_size = 32;
  Unet2d net(c);
  net->eval();
  const auto path = scratch_file("u.safetensors").string();
  save_unet(path, *net, {{"medicosam.iteration", "7"}});
  EXPECT_TRUE(is_unet_file(path));
  auto back = load_unet(path);
  EXPECT_EQ(back->config.to_json(), c.to_json());
  torch::NoGradGuard ng;
  const auto x = torch::randn({1, 3, 32, 32});
  EXPECT_TRUE(torch::equal(net->forward(x), back->forward(x)));
  // A normalised uint8 image: SAM's mean / std.
  const auto u = torch::full({1, 3, 2, 2}, 123, torch::kUInt8);
  EXPECT_NEAR(unet_normalize(u)[0][0][0][0].item<float>(), (123 - 123.675) / 58.395, 1e-5);
}

TEST(Unet, OtherFilesAreRecognisedAndRefusedClearly) {
  EXPECT_FALSE(is_unet_file("/nonexistent/u.safetensors"));
  const auto plain = scratch_file("plain.safetensors").string();
  checkpoint::write_safetensors(plain, {{"w", torch::zeros({2})}});
  EXPECT_FALSE(is_unet_file(plain));
  try {
    load_unet(plain);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(plain), std::string::npos);
  }
  // A U-Net file missing a tensor: file and key named.
  UnetConfig c;
  c.features = 4;
  c.depth = 2;
  c.input_size = 32;
  Unet2d net(c);
  checkpoint::StateDict sd;
  for (const auto& [k, t] : unet_state_dict(*net))
    if (k != "out_conv.bias") sd.push_back({k, t.detach().contiguous()});
  const auto broken = scratch_file("broken.safetensors").string();
  checkpoint::write_safetensors(broken, sd, {{kUnetMetadataKey, c.to_json().dump()}});
  EXPECT_TRUE(is_unet_file(broken));
  try {
    load_unet(broken);
    FAIL();
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(broken), std::string::npos) << m;
    EXPECT_NE(m.find("out_conv.bias"), std::string::npos) << m;
  }
  EXPECT_THROW(UnetConfig::from_json({{"num_classes", 2}}, "x"), CheckpointError);
}

}  // namespace
