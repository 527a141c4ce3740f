// The UNETR semantic head: shapes for any class count and embedding grid, the
// torch_em / micro_sam key layout, checkpoint round trips (micro_sam's joint
// .pth, safetensors, separate decoder files), clear errors for heads that do
// not fit, and numerical parity with a decoder written in plain torch.nn and
// run by Debian's python3-torch (tests/model/make_unetr_fixture.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/model/unetr_module.hpp"

namespace fs = std::filesystem;
using namespace medicosam;
using namespace medicosam::model;

namespace {

const std::string kSam = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/sam_tiny_seed0.pth";
const std::string kScript = std::string(MEDICOSAM_SOURCE_DIR) + "/tests/model/make_unetr_fixture.py";

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("medicosam_unetr_" + std::to_string(::getpid()) + "_" +
                                               std::to_string(counter()++));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

// A head with random weights and non-trivial BatchNorm statistics.
Unetr random_head(const UnetrConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  Unetr head(c);
  torch::NoGradGuard ng;
  for (auto& p : head->parameters()) p.normal_(0, 0.1);
  for (const auto& [name, t] : unetr_state_dict(*head)) {
    if (name.find("running_mean") != std::string::npos) t.normal_(0, 0.1);
    if (name.find("running_var") != std::string::npos) t.uniform_(0.5, 1.5);
    if (name.find("num_batches_tracked") != std::string::npos) t.fill_(17);
  }
  head->eval();
  return head;
}

NpyArray to_npy(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  return make_npy(NpyType::kFloat32, c.sizes().vec(), c.data_ptr<float>());
}

torch::Tensor from_npy(const NpyArray& a) {
  auto v = a.to_float();
  return torch::from_blob(v.data(), a.shape, torch::kFloat32).clone();
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a - b).abs().max().item<double>();
}

template <typename E, typename Fn>
std::string message_of(Fn fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

bool python_torch() { return std::system("/usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1") == 0; }

struct PyCase {
  const char* name;
  int64_t embed, features, classes, grid;
  bool transpose;
  int input_h, input_w, original_h, original_w;
};

std::string py_args(const PyCase& c) {
  std::string s = " --embed " + std::to_string(c.embed) + " --features " + std::to_string(c.features) +
                  " --classes " + std::to_string(c.classes) + " --grid " + std::to_string(c.grid) +
                  " --input " + std::to_string(c.input_h) + " " + std::to_string(c.input_w) + " --original " +
                  std::to_string(c.original_h) + " " + std::to_string(c.original_w);
  if (c.transpose) s += " --transpose";
  return s;
}

}  // namespace

TEST(Unetr, ShapesForClassCountsAndGrids) {
  torch::NoGradGuard ng;
  for (int64_t classes : {1, 2, 5}) {
    for (int64_t grid : {2, 4, 7}) {
      for (bool transpose : {false, true}) {
        UnetrConfig c;
        c.embed_dim = 16;
        c.initial_features = 4;
        c.num_classes = classes;
        c.conv_transpose = transpose;
        auto head = random_head(c, 1);
        const auto logits = head->forward(torch::randn({2, 16, grid, grid}));
        EXPECT_EQ(logits.sizes(), (c10::IntArrayRef{2, classes, 16 * grid, 16 * grid}))
            << classes << " classes, grid " << grid;
        // SAM-style postprocessing: model input square -> resized image -> original.
        const auto post = UnetrImpl::postprocess(logits, 16 * grid, 16 * grid, 10 * grid, 29, 17);
        EXPECT_EQ(post.sizes(), (c10::IntArrayRef{2, classes, 29, 17}));
      }
    }
  }
}

TEST(Unetr, StateDictHasTorchEmKeysAndShapes) {
  auto head = random_head(UnetrConfig{}, 2);  // the default: 256 channels, features 512/256/128/64
  const auto sd = unetr_state_dict(*head);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [n, t] : sd) shapes[n] = t.sizes().vec();
  EXPECT_EQ(sd.front().first, "decoder.blocks.0.block.1.weight");
  EXPECT_EQ(sd.back().first, "decoder_head.block.4.bias");
  EXPECT_EQ(sd.size(), 66u);
  const std::map<std::string, std::vector<int64_t>> expected{
      {"decoder.blocks.0.block.1.weight", {256, 512, 3, 3}},
      {"decoder.blocks.2.block.4.weight", {64, 64, 3, 3}},
      {"decoder.samplers.0.conv.weight", {256, 512, 1, 1}},
      {"deconv1.block.0.conv.weight", {512, 256, 1, 1}},
      {"deconv1.block.1.block.weight", {512, 512, 3, 3}},
      {"deconv1.block.2.running_var", {512}},
      {"deconv4.block.2.num_batches_tracked", {}},
      {"base.block.1.weight", {512, 256, 3, 3}},
      {"base.block.4.weight", {512, 512, 3, 3}},
      {"out_conv.weight", {1, 64, 1, 1}},
      {"deconv_out.conv.weight", {64, 64, 1, 1}},
      {"decoder_head.block.1.weight", {64, 128, 3, 3}}};
  for (const auto& [k, s] : expected) {
    ASSERT_TRUE(shapes.count(k)) << k;
    EXPECT_EQ(shapes[k], s) << k;
  }
  // InstanceNorm without affine parameters has nothing in the state dict.
  for (const auto& [n, t] : sd) {
    const bool conv_block = n.rfind("base.", 0) == 0 || n.rfind("decoder_head.", 0) == 0 ||
                            n.rfind("decoder.blocks.", 0) == 0;
    if (conv_block) {
      EXPECT_TRUE(n.find(".block.1.") != std::string::npos || n.find(".block.4.") != std::string::npos) << n;
    }
  }
  UnetrConfig t;
  t.conv_transpose = true;
  std::set<std::string> names;
  for (const auto& [n, _] : unetr_state_dict(*random_head(t, 3))) names.insert(n);
  EXPECT_TRUE(names.count("decoder.samplers.1.block.weight"));
  EXPECT_TRUE(names.count("deconv2.block.0.block.weight"));
  EXPECT_TRUE(names.count("deconv_out.block.weight"));
  const auto cfg = unetr_config_from_tensors(unetr_state_dict(*random_head(t, 3)), "x");
  EXPECT_TRUE(cfg.conv_transpose);
  EXPECT_EQ(cfg.num_classes, 1);
  EXPECT_EQ(cfg.initial_features, 64);
  EXPECT_EQ(cfg.embed_dim, 256);
}

TEST(Unetr, JointPthAndSafetensorsRoundTrip) {
  TempDir dir;
  auto sam = load_sam(kSam);
  UnetrConfig c;
  c.embed_dim = 256;  // the tiny SAM's neck
  c.initial_features = 4;
  c.num_classes = 3;
  auto head = random_head(c, 4);
  const auto neck = torch::randn({1, 256, 8, 8});
  torch::Tensor want;
  {
    torch::NoGradGuard ng;
    want = head->forward(neck);
  }
  for (const std::string name : {"joint.pth", "joint.safetensors"}) {
    SCOPED_TRACE(name);
    const auto path = dir.file(name);
    SaveOptions opt;
    opt.decoder_state = unetr_state_dict(*head);
    save_sam(path, *sam.sam, opt);
    const auto ck = checkpoint::read_sam_checkpoint(path);
    if (name == "joint.pth") {
      EXPECT_EQ(ck.layout, "model_state + decoder_state");  // micro_sam's export layout
      EXPECT_EQ(ck.decoder_state.size(), opt.decoder_state.size());
    } else {
      EXPECT_EQ(ck.metadata.value("medicosam.semantic_classes", ""), "3");
      EXPECT_EQ(ck.model_state.back().name, "decoder_state.decoder_head.block.4.bias");
    }
    // SAM still loads from it, and keeps the head's tensors aside.
    auto back = load_sam(path);
    EXPECT_EQ(back.num_parameters, sam.num_parameters);
    EXPECT_EQ(back.decoder_state.size(), opt.decoder_state.size());
    const auto info = describe_checkpoint(path);
    ASSERT_TRUE(info.contains("semantic_head")) << info.dump();
    EXPECT_EQ(info["semantic_head"]["num_classes"], 3);
    EXPECT_EQ(info["semantic_head"]["features"], (std::vector<int64_t>{32, 16, 8, 4}));
    // The loaded head computes what the saved one did, bit for bit.
    const auto loaded = SemanticHead::load(path);
    EXPECT_EQ(loaded.config().num_classes, 3);
    const auto got = from_npy(loaded.logits(to_npy(neck), 128, 128, 128, 128, 128));
    EXPECT_EQ(max_abs(got, want[0]), 0.0);
    const auto labels = loaded.segment(to_npy(neck), 128, 96, 50, 37, 128);
    ASSERT_EQ(labels.size(), 50u * 37u);
    std::set<uint16_t> seen(labels.begin(), labels.end());
    EXPECT_LT(*seen.rbegin(), 3);
    EXPECT_GT(seen.size(), 1u) << "random head gives one class everywhere";
    // The labels are the argmax of the postprocessed logits.
    const auto post = from_npy(loaded.logits(to_npy(neck), 128, 96, 50, 37, 128));
    const auto argmax = post.argmax(0).flatten();
    int64_t same = 0;
    for (int64_t i = 0; i < argmax.numel(); ++i) same += argmax[i].item<int64_t>() == labels[i];
    EXPECT_EQ(same, argmax.numel());
  }
  // A plain SAM checkpoint has no head.
  EXPECT_TRUE(load_sam(kSam).decoder_state.empty());
  EXPECT_FALSE(describe_checkpoint(kSam).contains("semantic_head"));
  const auto msg = message_of<CheckpointError>([&] { SemanticHead::load(kSam); });
  EXPECT_NE(msg.find(kSam), std::string::npos) << msg;
  EXPECT_NE(msg.find("has no semantic segmentation head"), std::string::npos) << msg;
}

TEST(Unetr, SeparateDecoderFileRoundTrip) {
  TempDir dir;
  UnetrConfig c;
  c.embed_dim = 32;
  c.initial_features = 8;
  c.num_classes = 1;
  c.conv_transpose = true;
  auto head = random_head(c, 5);
  const auto neck = torch::randn({1, 32, 5, 5});
  torch::Tensor want;
  {
    torch::NoGradGuard ng;
    want = UnetrImpl::postprocess(head->forward(neck), 80, 80, 60, 41, 30)[0];
  }
  for (const std::string name : {"decoder.pth", "decoder.safetensors"}) {
    SCOPED_TRACE(name);
    save_unetr(dir.file(name), *head);
    // The checkpoint argument is not read when a decoder file is given.
    const auto loaded = SemanticHead::load("/nonexistent/sam.pth", dir.file(name));
    EXPECT_TRUE(loaded.config().conv_transpose);
    EXPECT_EQ(loaded.source(), dir.file(name));
    EXPECT_EQ(max_abs(from_npy(loaded.logits(to_npy(neck), 80, 60, 41, 30, 80)), want), 0.0);
    // One class: logit > 0.
    const auto labels = loaded.segment(to_npy(neck), 80, 60, 41, 30, 80);
    const auto fg = (want[0] > 0).flatten();
    for (size_t i = 0; i < labels.size(); ++i) ASSERT_EQ(labels[i], fg[i].item<bool>() ? 1 : 0) << i;
  }
}

TEST(Unetr, HeadsThatDoNotFitGiveErrorsNamingFileAndKey) {
  TempDir dir;
  UnetrConfig c;
  c.embed_dim = 16;
  c.initial_features = 4;
  c.num_classes = 2;
  auto good = unetr_state_dict(*random_head(c, 6));
  auto write = [&](const NamedTensors& t, const std::string& name) {
    checkpoint::StateDict sd;
    for (const auto& [n, v] : t) sd.push_back({n, v.contiguous()});
    checkpoint::write_state_dict_pth(dir.file(name), sd);
    return dir.file(name);
  };
  {  // a missing key
    NamedTensors t;
    for (const auto& nt : good)
      if (nt.first != "deconv3.block.1.block.weight") t.push_back(nt);
    const auto path = write(t, "missing.pth");
    const auto msg = message_of<CheckpointError>([&] { SemanticHead::load("", path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 missing key(s) (deconv3.block.1.block.weight)"), std::string::npos) << msg;
  }
  {  // a mis-shaped key
    NamedTensors t = good;
    for (auto& nt : t)
      if (nt.first == "decoder.samplers.1.conv.weight") nt.second = torch::zeros({8, 16, 3, 3});
    const auto path = write(t, "misshaped.pth");
    const auto msg = message_of<CheckpointError>([&] { SemanticHead::load("", path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("mis-shaped key(s) (decoder.samplers.1.conv.weight (file [8,16,3,3], model [8,16,1,1]))"),
              std::string::npos)
        << msg;
  }
  {  // a key the shapes are derived from
    NamedTensors t;
    for (const auto& nt : good)
      if (nt.first != "out_conv.weight") t.push_back(nt);
    const auto path = write(t, "no_out_conv.pth");
    const auto msg = message_of<CheckpointError>([&] { SemanticHead::load("", path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("has no key 'out_conv.weight'"), std::string::npos) << msg;
  }
  {  // an extra key
    NamedTensors t = good;
    t.emplace_back("deconv5.block.1.block.weight", torch::zeros({1}));
    const auto msg = message_of<CheckpointError>([&] { SemanticHead::load("", write(t, "extra.pth")); });
    EXPECT_NE(msg.find("unexpected key(s) (deconv5.block.1.block.weight)"), std::string::npos) << msg;
  }
  {  // torch_em's skip-connection variant (deconv2 is a Sequential of two blocks)
    NamedTensors t = good;
    t.emplace_back("deconv2.0.block.0.conv.weight", torch::zeros({32, 16, 1, 1}));
    const auto msg = message_of<CheckpointError>([&] { SemanticHead::load("", write(t, "skip.pth")); });
    EXPECT_NE(msg.find("use_skip_connection=False"), std::string::npos) << msg;
  }
  {  // an embedding of another model
    const auto path = write(good, "good.pth");
    const auto head = SemanticHead::load("", path);
    const auto neck = to_npy(torch::zeros({1, 8, 4, 4}));
    const auto msg = message_of<InputError>([&] { head.segment(neck, 64, 64, 64, 64, 64); });
    EXPECT_NE(msg.find("(1, 16, g, g)"), std::string::npos) << msg;
  }
  {  // a joint checkpoint whose SAM is fine but whose head is not: load_sam works, info says why
    auto sam = load_sam(kSam);
    UnetrConfig c256 = c;
    c256.embed_dim = 256;
    SaveOptions opt;
    for (const auto& nt : unetr_state_dict(*random_head(c256, 7)))
      if (nt.first != "base.block.4.bias") opt.decoder_state.push_back(nt);
    const auto path = dir.file("joint_bad_head.safetensors");
    save_sam(path, *sam.sam, opt);
    EXPECT_NO_THROW(load_sam(path));
    const auto info = describe_checkpoint(path);
    EXPECT_NE(info["semantic_head"].value("error", "").find("base.block.4.bias"), std::string::npos) << info.dump();
  }
}

// Our head reproduces a decoder built from plain torch.nn modules (the §2.10
// layout written independently in Python), and Python loads what we write.
TEST(Unetr, MatchesPythonTorchDecoder) {
  if (!python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch and numpy is not available";
  TempDir dir;
  const PyCase cases[] = {
      {"default_features", 256, 64, 3, 4, false, 64, 48, 90, 67},  // MedicoSAM's decoder on a 4x4 grid
      {"transpose_one_class", 32, 8, 1, 6, true, 72, 96, 50, 66},
      {"five_classes", 16, 4, 5, 8, false, 128, 100, 300, 234},
  };
  // Python's side, in one process: the reference decoders, and our joint
  // checkpoint (the tiny SAM + a random head of ours) loaded strictly.
  auto sam = load_sam(kSam);
  const PyCase ours{"ours", 256, 4, 2, 4, false, 64, 64, 64, 64};
  auto head_ours = random_head({256, 4, 2, false}, 12);
  const auto neck_ours = torch::randn({1, 256, 4, 4});
  fs::create_directories(dir.file("ours"));
  write_npy(dir.file("ours/neck.npy"), to_npy(neck_ours));
  SaveOptions opt;
  opt.decoder_state = unetr_state_dict(*head_ours);
  save_sam(dir.file("joint.pth"), *sam.sam, opt);
  {
    std::ofstream lines(dir.file("lines.txt"));
    for (const auto& c : cases) lines << "make " << dir.file(c.name) << py_args(c) << " --seed 11\n";
    lines << "check " << dir.file("joint.pth") << " " << dir.file("ours") << py_args(ours) << "\n";
  }
  const std::string cmd = "/usr/bin/python3 " + kScript + " batch " + dir.file("lines.txt") +
                          " --embed 0 --features 0 --classes 0 --grid 0";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto out = dir.file(c.name);
    const auto neck = read_npy(out + "/neck.npy");
    const auto want_logits = from_npy(read_npy(out + "/logits.npy"));
    const auto want_post = from_npy(read_npy(out + "/post.npy"));
    // torch.save(state_dict) = micro_sam's separate decoder file.
    const auto head = SemanticHead::load("", out + "/decoder.pth");
    EXPECT_EQ(head.config().num_classes, c.classes);
    EXPECT_EQ(head.config().conv_transpose, c.transpose);
    const int side = static_cast<int>(16 * c.grid);
    const double e_logits = max_abs(from_npy(head.logits(neck, side, side, side, side, side)), want_logits[0]);
    const double e_post = max_abs(
        from_npy(head.logits(neck, c.input_h, c.input_w, c.original_h, c.original_w, side)), want_post[0]);
    std::printf("[ parity ] %s: max |logits - python| = %.3g, after postprocessing %.3g (logit std %.3g)\n",
                c.name, e_logits, e_post, want_logits.std().item<double>());
    EXPECT_LT(e_logits, 1e-4);
    EXPECT_LT(e_post, 1e-4);
  }
  // Python's load_state_dict(strict=True) took our decoder_state; its output
  // on our embedding matches ours.
  torch::Tensor want;
  {
    torch::NoGradGuard ng;
    want = head_ours->forward(neck_ours);
  }
  const double e_ours = max_abs(from_npy(read_npy(dir.file("ours/check_logits.npy"))), want);
  std::printf("[ parity ] our joint checkpoint in Python: max |logits - ours| = %.3g\n", e_ours);
  EXPECT_LT(e_ours, 1e-4);
}

// The semantic loss (0.5 Dice + 0.5 cross-entropy, torch_em's Dice over the
// batch per class) against values worked out by hand.
TEST(Unetr, SemanticLossValues) {
  // Uniform logits over 3 classes: p = 1/3 everywhere. Labels: 0 1 / 2 2.
  const auto labels = torch::tensor({0, 1, 2, 2}, torch::kLong).view({1, 2, 2});
  const auto loss = semantic_loss(torch::zeros({1, 3, 2, 2}), labels).item<double>();
  const double dice = (6.0 / 13 + 6.0 / 13 + 6.0 / 11) / 3;  // 2*sum(pt) / (sum p^2 + sum t^2) per class
  EXPECT_NEAR(loss, 0.5 * (1 - dice) + 0.5 * std::log(3.0), 1e-6);
  // Confident and right: close to 0; confident and wrong: large.
  const auto onehot = torch::nn::functional::one_hot(labels, 3).permute({0, 3, 1, 2}).to(torch::kFloat32);
  EXPECT_LT(semantic_loss(20 * onehot, labels).item<double>(), 1e-6);
  EXPECT_GT(semantic_loss(-20 * onehot, labels).item<double>(), 5.0);
  // Dice only / cross-entropy only.
  EXPECT_NEAR(semantic_loss(torch::zeros({1, 3, 2, 2}), labels, 1, 0).item<double>(), 1 - dice, 1e-6);
  EXPECT_NEAR(semantic_loss(torch::zeros({1, 3, 2, 2}), labels, 0, 1).item<double>(), std::log(3.0), 1e-6);
  // One class: sigmoid and binary cross-entropy; 1 foreground pixel of 4.
  const auto fg = torch::tensor({0, 0, 1, 0}, torch::kLong).view({1, 2, 2});
  const double dice1 = 2 * 0.5 / (4 * 0.25 + 1);
  EXPECT_NEAR(semantic_loss(torch::zeros({1, 1, 2, 2}), fg).item<double>(), 0.5 * (1 - dice1) + 0.5 * std::log(2.0),
              1e-6);
}

// Gradients flow through the whole head (BatchNorm in training mode, instance
// norms, in-place ReLUs, the channel crops): a small head learns a real
// segmentation mask (HC18 fetal head, 64 x 64) from a fixed embedding.
TEST(Unetr, HeadLearnsARealMaskWithTheSemanticLoss) {
  const std::string mask_path = std::string(MEDICOSAM_SHARED_DIR) + "/data/hc18_fetal_head/masks/hc18_000.png";
  const auto lm = io::read_label_map(mask_path);
  std::vector<float> values(lm.data(), lm.data() + lm.num_voxels());
  auto mask = torch::from_blob(values.data(), {1, 1, lm.size()[1], lm.size()[0]}, torch::kFloat32).clone();
  mask = torch::nn::functional::interpolate(
      mask, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{64, 64}).mode(torch::kNearest));
  const auto target = (mask[0] > 0).to(torch::kLong);  // (1, 64, 64)
  const double fg_fraction = target.to(torch::kFloat32).mean().item<double>();
  ASSERT_GT(fg_fraction, 0.05);
  ASSERT_LT(fg_fraction, 0.95);

  UnetrConfig c;
  c.embed_dim = 16;
  c.initial_features = 4;
  c.num_classes = 2;
  torch::manual_seed(8);
  Unetr head(c);
  head->train();
  const auto neck = torch::randn({1, 16, 4, 4});
  auto dice_of = [&] {
    torch::NoGradGuard ng;
    head->eval();
    const auto pred = head->forward(neck).argmax(1);
    head->train();
    const auto p = (pred == 1), t = (target == 1);
    return 2.0 * (p & t).sum().item<double>() / (p.sum().item<double>() + t.sum().item<double>() + 1e-9);
  };
  torch::optim::Adam opt(head->parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    const auto loss = semantic_loss(head->forward(neck), target);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  const double dice = dice_of();
  std::printf("[ train ] semantic loss %.3f -> %.3f in 150 Adam steps, Dice %.3f\n", first, last, dice);
  EXPECT_LT(last, 0.3 * first);
  EXPECT_GT(dice, 0.9);
}
