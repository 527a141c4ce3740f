// Interoperability with Python's torch: files torch.save wrote (generated at
// test time by make_checkpoints.py) read by us, and files we wrote read by
// torch.load (also with weights_only=True) and by a plain-Python safetensors parser.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "torch_test_util.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::kPython;
using testing::same_tensor;
using testing::TempDir;

class PythonInterop : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::python_has_torch()) return;
    dir_ = std::make_unique<TempDir>();
    std::string out;
    status_ = testing::run_command(std::string(kPython) + " " + testing::helper_script() +
                                       " generate " + dir_->path().string(),
                                   &out);
    log_ = out;
    if (status_ == 0) {
      std::ifstream f(dir_->file("manifest.json"));
      manifest_ = nlohmann::json::parse(f);
    }
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    if (!testing::python_has_torch()) {
      GTEST_SKIP() << kPython << " cannot import torch and numpy; interop tests need it";
    }
    ASSERT_EQ(status_, 0) << "make_checkpoints.py generate failed:\n" << log_;
  }

  static std::string file(const std::string& name) { return dir_->file(name); }

  // Runs make_checkpoints.py with `args`; the test fails with its output if it fails.
  static void expect_python_ok(const std::string& args) {
    std::string out;
    const int rc = testing::run_command(
        std::string(kPython) + " " + testing::helper_script() + " " + args, &out);
    EXPECT_EQ(rc, 0) << args << "\n" << out;
  }

  static std::unique_ptr<TempDir> dir_;
  static int status_;
  static std::string log_;
  static nlohmann::json manifest_;
};

std::unique_ptr<TempDir> PythonInterop::dir_;
int PythonInterop::status_ = -1;
std::string PythonInterop::log_;
nlohmann::json PythonInterop::manifest_;

TEST_F(PythonInterop, EveryTensorTorchSavedReadsBackExactly) {
  ASSERT_GE(manifest_.size(), 9u);
  for (const auto& [name, entries] : manifest_.items()) {
    SCOPED_TRACE(name);
    const PyValue root = read_pytorch_checkpoint(file(name));
    for (const auto& e : entries) {
      SCOPED_TRACE(e["path"].dump());
      const PyValue* v = testing::navigate(root, e["path"]);
      ASSERT_NE(v, nullptr);
      const auto* t = v->get_if<at::Tensor>();
      ASSERT_NE(t, nullptr) << "a " << v->type_name();
      EXPECT_EQ(testing::dtype_string(t->scalar_type()), e["dtype"].get<std::string>());
      EXPECT_EQ(t->sizes().vec(), e["shape"].get<std::vector<std::int64_t>>());
      EXPECT_TRUE(t->is_contiguous());
      at::Tensor want = testing::tensor_from_npy(file(e["npy"].get<std::string>()));
      at::Tensor got = t->scalar_type() == at::kBFloat16 ? t->to(at::kFloat) : *t;
      EXPECT_TRUE(same_tensor(got, want.reshape(got.sizes())));
    }
  }
}

TEST_F(PythonInterop, TrainerCheckpointUnwrapsWithMetadata) {
  const SamCheckpoint ck = read_sam_checkpoint(file("trainer.pt"));
  EXPECT_EQ(ck.format, "pytorch-zip");
  EXPECT_EQ(ck.layout, "trainer checkpoint (model_state)");
  EXPECT_EQ(ck.stripped_prefix, "sam.");
  ASSERT_EQ(ck.model_state.size(), 6u);
  EXPECT_EQ(ck.model_state[0].name, "image_encoder.pos_embed");
  EXPECT_EQ(ck.metadata.at("iteration"), 5);
  EXPECT_EQ(ck.metadata.at("epoch"), 2);
  EXPECT_EQ(ck.metadata.at("best_metric"), 0.25);
  EXPECT_TRUE(std::isinf(ck.metadata.at("current_metric").get<double>()));
  EXPECT_EQ(ck.metadata.at("timestamp"), "2024-01-01T00:00:00");
  EXPECT_EQ(ck.metadata.at("big_number"), std::int64_t{1} << 40);
  EXPECT_EQ(ck.metadata.at("negative"), -70000);
  EXPECT_EQ(ck.metadata.at("flag"), true);
  EXPECT_TRUE(ck.metadata.at("nothing").is_null());
}

TEST_F(PythonInterop, TrainerCheckpointGenericValues) {
  const PyValue root = read_pytorch_checkpoint(file("trainer.pt"));
  EXPECT_EQ(testing::navigate(root, {"raw"})->get_if<PyValue::Bytes>()->data, std::string("\x00\xff"
                                                                                          "bytes",
                                                                                          7));
  EXPECT_EQ(*testing::navigate(root, {"init", "model_class"})->get_if<std::string>(),
            "micro_sam.training.trainable_sam.TrainableSAM");
  const PyValue* betas = testing::navigate(root, {"optimizer_state", "param_groups", 0, "betas"});
  ASSERT_NE(betas, nullptr);
  ASSERT_TRUE(betas->is<PyValue::Tuple>());
  EXPECT_EQ(*betas->get_if<PyValue::Tuple>()->items[0].get_if<double>(), 0.9);
  const PyValue* params = testing::navigate(root, {"optimizer_state", "param_groups", 0, "params"});
  ASSERT_NE(params, nullptr);
  ASSERT_EQ(params->get_if<PyValue::List>()->size(), 2u);
  EXPECT_EQ(*(*params->get_if<PyValue::List>())[1].get_if<std::int64_t>(), 1);
}

TEST_F(PythonInterop, PrefixesWrappersAndDecoder) {
  const SamCheckpoint ddp = read_sam_checkpoint(file("ddp.pt"));
  EXPECT_EQ(ddp.stripped_prefix, "module.sam.");
  EXPECT_EQ(ddp.model_state[0].name, "image_encoder.pos_embed");

  const SamCheckpoint lightning = read_sam_checkpoint(file("lightning.ckpt"));
  EXPECT_EQ(lightning.layout, "wrapper (state_dict)");
  EXPECT_EQ(lightning.stripped_prefix, "module.");
  EXPECT_EQ(lightning.metadata.at("epoch"), 7);

  const SamCheckpoint exp = read_sam_checkpoint(file("export_decoder.pth"));
  EXPECT_EQ(exp.layout, "model_state + decoder_state");
  ASSERT_EQ(exp.decoder_state.size(), 2u);
  EXPECT_EQ(exp.decoder_state[1].name, "out_conv.bias");
  EXPECT_EQ(exp.model_state.size(), 6u);
}

TEST_F(PythonInterop, DeflatedCopyMatchesTheStoredOriginal) {
  const StateDict a = read_state_dict_any(file("state_dict.pth"));
  const StateDict b = read_state_dict_any(file("deflated.pth"));
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].name, b[k].name);
    EXPECT_TRUE(same_tensor(a[k].tensor, b[k].tensor));
  }
}

TEST_F(PythonInterop, ParameterSavedDirectlyIsATensor) {
  const PyValue v = read_pytorch_checkpoint(file("parameter.pth"));
  ASSERT_TRUE(v.is_tensor());
  EXPECT_EQ(v.get_if<at::Tensor>()->sizes(), (at::IntArrayRef{2, 3}));
  const std::string msg =
      testing::message_of<FormatError>([&] { read_sam_checkpoint(file("parameter.pth")); });
  EXPECT_NE(msg.find("holds a tensor"), std::string::npos) << msg;
}

// Writes the expected values of `named` tensors for `make_checkpoints.py verify`.
void write_expected(const std::string& dir,
                    const std::vector<std::pair<nlohmann::json, at::Tensor>>& named) {
  nlohmann::json manifest = nlohmann::json::array();
  int k = 0;
  for (const auto& [path, t] : named) {
    const std::string npy = "e" + std::to_string(k++) + ".npy";
    testing::tensor_to_npy(t, dir + "/" + npy);
    manifest.push_back({{"path", path},
                        {"npy", npy},
                        {"dtype", testing::dtype_string(t.scalar_type())},
                        {"shape", t.sizes().vec()}});
  }
  std::ofstream(dir + "/manifest.json") << manifest.dump(1);
}

StateDict interop_state_dict() {
  StateDict sd;
  sd.push_back({"image_encoder.pos_embed", torch::randn({1, 4, 4, 8})});
  sd.push_back({"f16", torch::randn({5}).to(at::kHalf)});
  sd.push_back({"bf16", torch::randn({2, 3}).to(at::kBFloat16)});
  sd.push_back({"f64", torch::randn({4}, at::kDouble)});
  sd.push_back({"i64", torch::tensor({-(std::int64_t{1} << 40), std::int64_t{5}})});
  sd.push_back({"i32", torch::tensor({-7, 8}, at::kInt)});
  sd.push_back({"i16", torch::tensor({-300, 300}, at::kShort)});
  sd.push_back({"i8", torch::tensor({-128, 127}, at::kChar)});
  sd.push_back({"u8", torch::tensor({0, 255}, at::kByte)});
  sd.push_back({"bool", torch::tensor({true, false, true})});
  sd.push_back({"scalar", torch::tensor(3.5)});
  sd.push_back({"empty", torch::zeros({0, 4})});
  sd.push_back({"transposed", torch::arange(6, at::kFloat).reshape({2, 3}).t()});
  return sd;
}

std::vector<std::pair<nlohmann::json, at::Tensor>> expectations(const StateDict& sd,
                                                                const nlohmann::json& prefix) {
  std::vector<std::pair<nlohmann::json, at::Tensor>> out;
  for (const auto& nt : sd) {
    nlohmann::json path = prefix;
    path.push_back(nt.name);
    out.emplace_back(path, nt.tensor);
  }
  return out;
}

TEST_F(PythonInterop, TorchLoadReadsOurStateDictAlsoWithWeightsOnly) {
  TempDir dir;
  const StateDict sd = interop_state_dict();
  write_state_dict_pth(dir.file("ours.pth"), sd);
  write_expected(dir.path().string(), expectations(sd, nlohmann::json::array()));
  expect_python_ok("verify " + dir.file("ours.pth") + " " + dir.path().string());
  expect_python_ok("verify " + dir.file("ours.pth") + " " + dir.path().string() +
                   " --weights-only");
}

TEST_F(PythonInterop, TorchLoadReadsOurTrainerCheckpoint) {
  TempDir dir;
  const StateDict sd = interop_state_dict();
  PyValue::Dict state0;
  const at::Tensor exp_avg = torch::randn({3});
  state0.set("exp_avg", PyValue(exp_avg));
  state0.set("step", PyValue(torch::tensor(4.0)));
  PyValue::Dict state;
  state.append(PyValue(0), PyValue(state0));
  PyValue::Dict optimizer;
  optimizer.set("state", PyValue(state));
  PyValue::Dict root;
  root.set("model_state", state_dict_to_value(sd));
  root.set("optimizer_state", PyValue(optimizer));
  root.set("iteration", PyValue(12));
  root.set("epoch", PyValue(3));
  root.set("best_metric", PyValue(0.12));
  root.set("big", PyValue(std::int64_t{1} << 40));
  root.set("negative", PyValue(-70000));
  root.set("flag", PyValue(true));
  root.set("config", PyValue(R"({"lr": 1e-05})"));
  root.set("raw", PyValue(PyValue::Bytes{std::string("\x00\xff"
                                                     "ab",
                                                     4)}));
  for (bool zip64 : {false, true}) {
    SCOPED_TRACE(zip64 ? "zip64" : "plain");
    write_pytorch_checkpoint(dir.file("ours.pt"), PyValue(root), WriteOptions{zip64});
    auto expected = expectations(sd, nlohmann::json::array({"model_state"}));
    expected.emplace_back(nlohmann::json::array({"optimizer_state", "state", 0, "exp_avg"}),
                          exp_avg);
    write_expected(dir.path().string(), expected);
    std::ofstream(dir.file("scalars.json")) << nlohmann::json{
        {"iteration", 12},
        {"epoch", 3},
        {"best_metric", 0.12},
        {"big", std::int64_t{1} << 40},
        {"negative", -70000},
        {"flag", true},
        {"config", R"({"lr": 1e-05})"},
        {"raw", {{"bytes_hex", "00ff6162"}}}}.dump();
    expect_python_ok("verify " + dir.file("ours.pt") + " " + dir.path().string());
  }
}

TEST_F(PythonInterop, PythonParsesOurSafetensors) {
  TempDir dir;
  StateDict sd = interop_state_dict();
  write_safetensors(dir.file("ours.safetensors"), sd, {{"format", "pt"}, {"epoch", "3"}});
  write_expected(dir.path().string(), expectations(sd, nlohmann::json::array()));
  std::ofstream(dir.file("metadata.json")) << R"({"format": "pt", "epoch": "3"})";
  expect_python_ok("verify-safetensors " + dir.file("ours.safetensors") + " " +
                   dir.path().string());
}

}  // namespace
}  // namespace medicosam::checkpoint
