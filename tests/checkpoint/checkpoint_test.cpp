// The public API on the reference fixture and on files we write ourselves.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/zip_reader.hpp"
#include "medicosam/core/error.hpp"
#include "torch_test_util.hpp"

namespace medicosam::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::fixture;
using testing::message_of;
using testing::same_tensor;
using testing::TempDir;

bool is_sam_key(const std::string& k) {
  return k.rfind("image_encoder.", 0) == 0 || k.rfind("prompt_encoder.", 0) == 0 ||
         k.rfind("mask_decoder.", 0) == 0;
}

// The fixture is read once: 20 MB, and several tests use it.
const SamCheckpoint& tiny() {
  static const SamCheckpoint ck = read_sam_checkpoint(fixture("sam_tiny_seed0.pth"));
  return ck;
}

TEST(SamTinyFixture, LoadsAllTensorsOfTheOfficialCheckpoint) {
  const SamCheckpoint& ck = tiny();
  EXPECT_EQ(ck.format, "pytorch-zip");
  EXPECT_EQ(ck.layout, "state_dict");
  EXPECT_EQ(ck.stripped_prefix, "");
  EXPECT_TRUE(ck.decoder_state.empty());
  ASSERT_EQ(ck.model_state.size(), 202u);
  std::int64_t params = 0;
  std::set<std::string> names;
  for (const auto& nt : ck.model_state) {
    EXPECT_TRUE(is_sam_key(nt.name)) << nt.name;
    EXPECT_EQ(nt.tensor.scalar_type(), at::kFloat) << nt.name;
    EXPECT_TRUE(nt.tensor.is_contiguous()) << nt.name;
    EXPECT_EQ(nt.tensor.device().type(), c10::DeviceType::CPU);
    params += nt.tensor.numel();
    names.insert(nt.name);
  }
  EXPECT_EQ(names.size(), 202u);
  EXPECT_EQ(params, 5203056);
  // File order: the state dict starts with the image encoder's position embedding.
  EXPECT_EQ(ck.model_state.front().name, "image_encoder.pos_embed");
  EXPECT_EQ(ck.model_state.front().tensor.sizes(), (at::IntArrayRef{1, 64, 64, 64}));
}

TEST(SamTinyFixture, IdenticalToTheSafetensorsCopy) {
  const SamCheckpoint st = read_sam_checkpoint(fixture("extra/sam_tiny_seed0.safetensors"));
  EXPECT_EQ(st.format, "safetensors");
  ASSERT_EQ(st.model_state.size(), tiny().model_state.size());
  for (const auto& nt : tiny().model_state) {
    const at::Tensor* other = testing::find_tensor(st.model_state, nt.name);
    ASSERT_NE(other, nullptr) << nt.name;
    EXPECT_TRUE(same_tensor(nt.tensor, *other)) << nt.name;
  }
  EXPECT_EQ(read_state_dict_any(fixture("extra/sam_tiny_seed0.safetensors")).size(), 202u);
}

TEST(SamTinyFixture, GenericReadGivesTheOrderedDict) {
  const PyValue v = read_pytorch_checkpoint(fixture("sam_tiny_seed0.pth"));
  const auto* d = v.get_if<PyValue::Dict>();
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->ordered);
  EXPECT_EQ(d->size(), 202u);
  const StateDict sd = value_to_state_dict(v, "fixture");
  EXPECT_TRUE(same_tensor(sd.back().tensor, tiny().model_state.back().tensor));
}

TEST(RoundTrip, StateDictPthKeepsNamesOrderAndValues) {
  TempDir dir;
  const std::string path = dir.file("sam_copy.pth");
  write_state_dict_pth(path, tiny().model_state);
  const SamCheckpoint back = read_sam_checkpoint(path);
  EXPECT_EQ(back.layout, "state_dict");
  ASSERT_EQ(back.model_state.size(), tiny().model_state.size());
  for (std::size_t k = 0; k < back.model_state.size(); ++k) {
    EXPECT_EQ(back.model_state[k].name, tiny().model_state[k].name);
    EXPECT_TRUE(same_tensor(back.model_state[k].tensor, tiny().model_state[k].tensor));
  }
  // torch.save's layout: <stem>/data.pkl first, storages STORED and 64-byte aligned.
  const MappedFile file(path);
  const ZipReader zip(path, file.data(), file.size());
  EXPECT_EQ(zip.entries().front().name, "sam_copy/data.pkl");
  ASSERT_NE(zip.find("sam_copy/version"), nullptr);
  std::string scratch;
  EXPECT_EQ(zip.read(*zip.find("sam_copy/version"), scratch), "3\n");
  int storages = 0;
  for (const auto& e : zip.entries()) {
    if (e.name.rfind("sam_copy/data/", 0) != 0) continue;
    ++storages;
    EXPECT_EQ(e.method, 0) << e.name;
    EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
  }
  EXPECT_EQ(storages, 202);
}

StateDict every_dtype() {
  StateDict sd;
  sd.push_back({"f32", torch::randn({3, 2})});
  sd.push_back({"f16", torch::randn({5}).to(at::kHalf)});
  sd.push_back({"bf16", torch::randn({2, 3}).to(at::kBFloat16)});
  sd.push_back({"f64", torch::randn({4}, at::kDouble)});
  sd.push_back(
      {"i64", torch::tensor({-(std::int64_t{1} << 40), std::int64_t{0}, std::int64_t{1} << 40})});
  sd.push_back({"i32", torch::tensor({-7, 8}, at::kInt)});
  sd.push_back({"i16", torch::tensor({-300, 300}, at::kShort)});
  sd.push_back({"i8", torch::tensor({-128, 127}, at::kChar)});
  sd.push_back({"u8", torch::tensor({0, 255}, at::kByte)});
  sd.push_back({"bool", torch::tensor({true, false, true})});
  sd.push_back({"scalar", torch::tensor(3.5)});
  sd.push_back({"empty", torch::zeros({0, 4})});
  return sd;
}

TEST(RoundTrip, SafetensorsEveryDtypeWithMetadata) {
  TempDir dir;
  const std::string path = dir.file("all.weights");  // the extension does not matter
  const StateDict sd = every_dtype();
  write_safetensors(path, sd, {{"format", "pt"}, {"epoch", "3"}});
  const SamCheckpoint back = read_sam_checkpoint(path);
  EXPECT_EQ(back.format, "safetensors");
  EXPECT_EQ(back.metadata.at("epoch"), "3");
  EXPECT_EQ(back.metadata.at("format"), "pt");
  ASSERT_EQ(back.model_state.size(), sd.size());
  for (std::size_t k = 0; k < sd.size(); ++k) {
    EXPECT_EQ(back.model_state[k].name, sd[k].name);
    EXPECT_TRUE(same_tensor(back.model_state[k].tensor, sd[k].tensor)) << sd[k].name;
  }
}

TEST(RoundTrip, PthEveryDtype) {
  TempDir dir;
  const std::string path = dir.file("all.pth");
  const StateDict sd = every_dtype();
  write_state_dict_pth(path, sd);
  const StateDict back = read_state_dict_any(path);
  ASSERT_EQ(back.size(), sd.size());
  for (std::size_t k = 0; k < sd.size(); ++k) {
    EXPECT_TRUE(same_tensor(back[k].tensor, sd[k].tensor)) << sd[k].name;
  }
}

// What our trainer saves: nested dicts with tensors, ints, floats, strings.
PyValue trainer_object(const StateDict& model) {
  PyValue::Dict state0;
  state0.set("step", PyValue(torch::tensor(12.0)));
  state0.set("exp_avg", PyValue(torch::randn({4, 2})));
  state0.set("exp_avg_sq", PyValue(torch::rand({4, 2})));
  PyValue::Dict state;
  state.append(PyValue(0), PyValue(state0));
  PyValue::Dict group;
  group.set("lr", PyValue(1e-5));
  group.set("betas", PyValue::tuple({PyValue(0.9), PyValue(0.999)}));
  group.set("weight_decay", PyValue(0.0));
  group.set("amsgrad", PyValue(false));
  group.set("foreach", PyValue());
  group.set("params", PyValue(PyValue::List{PyValue(0)}));
  PyValue::Dict optimizer;
  optimizer.set("state", PyValue(state));
  optimizer.set("param_groups", PyValue(PyValue::List{PyValue(group)}));

  StateDict prefixed = model;
  for (auto& nt : prefixed) nt.name = "sam." + nt.name;
  PyValue::Dict root;
  root.set("model_state", state_dict_to_value(prefixed));
  root.set("optimizer_state", PyValue(optimizer));
  root.set("iteration", PyValue(12));
  root.set("epoch", PyValue(3));
  root.set("best_metric", PyValue(0.12));
  root.set("config", PyValue(R"({"lr": 1e-05, "model_type": "vit_b"})"));
  root.set("rng", PyValue(PyValue::Bytes{std::string("\x00\x01\xfe\xff", 4)}));
  return PyValue(root);
}

StateDict small_sam() {
  StateDict sd;
  sd.push_back({"image_encoder.pos_embed", torch::randn({1, 4, 4, 8})});
  sd.push_back({"prompt_encoder.no_mask_embed.weight", torch::randn({1, 8})});
  sd.push_back({"mask_decoder.iou_token.weight", torch::randn({1, 8})});
  return sd;
}

void expect_trainer_object(const PyValue& back, const PyValue& original) {
  const auto& d = *back.get_if<PyValue::Dict>();
  const auto& o = *original.get_if<PyValue::Dict>();
  ASSERT_EQ(d.size(), o.size());
  EXPECT_FALSE(d.ordered);
  EXPECT_EQ(*d.find("iteration")->get_if<std::int64_t>(), 12);
  EXPECT_EQ(*d.find("best_metric")->get_if<double>(), 0.12);
  EXPECT_EQ(*d.find("config")->get_if<std::string>(), *o.find("config")->get_if<std::string>());
  EXPECT_EQ(d.find("rng")->get_if<PyValue::Bytes>()->data, std::string("\x00\x01\xfe\xff", 4));
  const StateDict ms = value_to_state_dict(*d.find("model_state"), "model_state");
  const StateDict want = value_to_state_dict(*o.find("model_state"), "model_state");
  ASSERT_EQ(ms.size(), want.size());
  for (std::size_t k = 0; k < ms.size(); ++k) {
    EXPECT_EQ(ms[k].name, want[k].name);
    EXPECT_TRUE(same_tensor(ms[k].tensor, want[k].tensor));
  }
  EXPECT_TRUE(d.find("model_state")->get_if<PyValue::Dict>()->ordered);
  for (const char* name : {"step", "exp_avg", "exp_avg_sq"}) {
    const nlohmann::json path = {"optimizer_state", "state", 0, name};
    const PyValue* got = testing::navigate(back, path);
    const PyValue* exp = testing::navigate(original, path);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_TRUE(same_tensor(*got->get_if<at::Tensor>(), *exp->get_if<at::Tensor>())) << name;
  }
  const PyValue* betas = testing::navigate(back, {"optimizer_state", "param_groups", 0, "betas"});
  ASSERT_NE(betas, nullptr);
  ASSERT_TRUE(betas->is<PyValue::Tuple>());
  EXPECT_EQ(*betas->get_if<PyValue::Tuple>()->items[1].get_if<double>(), 0.999);
  EXPECT_TRUE(
      testing::navigate(back, {"optimizer_state", "param_groups", 0, "foreach"})->is_none());
}

TEST(RoundTrip, TrainerCheckpointGenericAndUnwrapped) {
  TempDir dir;
  const std::string path = dir.file("latest.pt");
  const StateDict model = small_sam();
  const PyValue original = trainer_object(model);
  write_pytorch_checkpoint(path, original);
  expect_trainer_object(read_pytorch_checkpoint(path), original);

  const SamCheckpoint ck = read_sam_checkpoint(path);
  EXPECT_EQ(ck.layout, "trainer checkpoint (model_state)");
  EXPECT_EQ(ck.stripped_prefix, "sam.");
  ASSERT_EQ(ck.model_state.size(), model.size());
  for (std::size_t k = 0; k < model.size(); ++k) {
    EXPECT_EQ(ck.model_state[k].name, model[k].name);
    EXPECT_TRUE(same_tensor(ck.model_state[k].tensor, model[k].tensor));
  }
  EXPECT_EQ(ck.metadata.at("iteration"), 12);
  EXPECT_EQ(ck.metadata.at("epoch"), 3);
  EXPECT_DOUBLE_EQ(ck.metadata.at("best_metric").get<double>(), 0.12);
  EXPECT_EQ(ck.metadata.at("config").get<std::string>(), R"({"lr": 1e-05, "model_type": "vit_b"})");
  EXPECT_FALSE(ck.metadata.contains("optimizer_state"));
}

TEST(RoundTrip, ForcedZip64Archive) {
  TempDir dir;
  const std::string path = dir.file("z64.pt");
  const PyValue original = trainer_object(small_sam());
  write_pytorch_checkpoint(path, original, WriteOptions{true});
  EXPECT_NE(testing::read_bytes(path).find("PK\x06\x06"), std::string::npos);
  expect_trainer_object(read_pytorch_checkpoint(path), original);
}

TEST(RoundTrip, SharedNonContiguousAndScalarTensors) {
  TempDir dir;
  const std::string path = dir.file("views.pth");
  const at::Tensor base = torch::arange(24, at::kFloat).reshape({4, 6});
  StateDict sd;
  sd.push_back({"base", base});
  sd.push_back({"same_object", base});  // the same tensor twice shares one storage
  sd.push_back({"sliced", base.slice(0, 1).slice(1, 0, 6, 2)});
  sd.push_back({"transposed", base.t()});
  sd.push_back({"expanded", torch::arange(3, at::kFloat).reshape({3, 1}).expand({3, 4})});
  sd.push_back({"scalar", torch::tensor(7, at::kLong)});
  sd.push_back({"empty", torch::zeros({2, 0, 3})});
  write_state_dict_pth(path, sd);
  const StateDict back = read_state_dict_any(path);
  ASSERT_EQ(back.size(), sd.size());
  for (std::size_t k = 0; k < sd.size(); ++k) {
    EXPECT_TRUE(back[k].tensor.is_contiguous()) << sd[k].name;
    EXPECT_TRUE(same_tensor(back[k].tensor, sd[k].tensor)) << sd[k].name;
  }
}

// Builds an in-memory checkpoint dict and reads it through a file.
SamCheckpoint unwrap_via_file(const PyValue& root) {
  TempDir dir;
  const std::string path = dir.file("c.pth");
  write_pytorch_checkpoint(path, root);
  return read_sam_checkpoint(path);
}

PyValue prefixed(const std::string& prefix, const StateDict& sd) {
  StateDict p = sd;
  for (auto& nt : p) nt.name = prefix + nt.name;
  return state_dict_to_value(p);
}

TEST(Unwrap, PrefixesAreStrippedWhenEverySamKeyCarriesThem) {
  const StateDict sd = small_sam();
  for (const std::string prefix : {"module.sam.", "sam.", "module."}) {
    const SamCheckpoint ck = unwrap_via_file(prefixed(prefix, sd));
    EXPECT_EQ(ck.stripped_prefix, prefix);
    ASSERT_EQ(ck.model_state.size(), sd.size());
    EXPECT_EQ(ck.model_state[0].name, "image_encoder.pos_embed") << prefix;
  }
}

TEST(Unwrap, SafetensorsKeysArePrefixStrippedToo) {
  TempDir dir;
  StateDict sd = small_sam();
  for (auto& nt : sd) nt.name = "module.sam." + nt.name;
  write_safetensors(dir.file("ddp.safetensors"), sd);
  const SamCheckpoint ck = read_sam_checkpoint(dir.file("ddp.safetensors"));
  EXPECT_EQ(ck.stripped_prefix, "module.sam.");
  EXPECT_EQ(ck.model_state[0].name, "image_encoder.pos_embed");
}

TEST(Unwrap, NothingIsStrippedWhenSomeSamKeyIsBare) {
  StateDict sd = small_sam();
  sd[1].name = "sam." + sd[1].name;
  sd.push_back({"extra.bias", torch::zeros({2})});
  const SamCheckpoint ck = unwrap_via_file(state_dict_to_value(sd));
  EXPECT_EQ(ck.stripped_prefix, "");
  EXPECT_EQ(ck.model_state[1].name, "sam.prompt_encoder.no_mask_embed.weight");
  EXPECT_EQ(ck.model_state[3].name, "extra.bias");  // non-SAM keys are kept as they are
}

TEST(Unwrap, NonSamKeysWithoutThePrefixAreKept) {
  StateDict sd;
  for (const auto& nt : small_sam()) sd.push_back({"sam." + nt.name, nt.tensor});
  sd.push_back({"iou_head_extra.weight", torch::zeros({1})});
  const SamCheckpoint ck = unwrap_via_file(state_dict_to_value(sd));
  EXPECT_EQ(ck.stripped_prefix, "sam.");
  EXPECT_EQ(ck.model_state.back().name, "iou_head_extra.weight");
}

TEST(Unwrap, ExportWithDecoderState) {
  StateDict decoder;
  decoder.push_back({"base.conv.weight", torch::randn({2, 2})});
  decoder.push_back({"out_conv.bias", torch::randn({3})});
  PyValue::Dict root;
  root.set("model_state", state_dict_to_value(small_sam()));
  root.set("decoder_state", state_dict_to_value(decoder));
  const SamCheckpoint ck = unwrap_via_file(PyValue(root));
  EXPECT_EQ(ck.layout, "model_state + decoder_state");
  ASSERT_EQ(ck.decoder_state.size(), 2u);
  EXPECT_EQ(ck.decoder_state[0].name, "base.conv.weight");
  EXPECT_TRUE(same_tensor(ck.decoder_state[1].tensor, decoder[1].tensor));
  EXPECT_EQ(ck.model_state.size(), 3u);
}

TEST(Unwrap, StateDictAndModelWrappers) {
  for (const char* key : {"state_dict", "model"}) {
    PyValue::Dict root;
    root.set(key, prefixed("module.", small_sam()));
    root.set("epoch", PyValue(7));
    const SamCheckpoint ck = unwrap_via_file(PyValue(root));
    EXPECT_EQ(ck.layout, std::string("wrapper (") + key + ")");
    EXPECT_EQ(ck.stripped_prefix, "module.");
    EXPECT_EQ(ck.metadata.at("epoch"), 7);
    EXPECT_EQ(ck.model_state.size(), 3u);
  }
}

TEST(Unwrap, NonTensorEntriesAreFormatErrors) {
  TempDir dir;
  const std::string path = dir.file("odd.pth");
  PyValue::Dict ms;
  ms.set("image_encoder.x", PyValue(torch::zeros({1})));
  ms.set("image_encoder.y", PyValue(3));
  PyValue::Dict root;
  root.set("model_state", PyValue(ms));
  write_pytorch_checkpoint(path, PyValue(root));
  const std::string msg = message_of<FormatError>([&] { read_sam_checkpoint(path); });
  EXPECT_NE(msg.find("odd.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'image_encoder.y'"), std::string::npos) << msg;

  write_pytorch_checkpoint(path, PyValue(PyValue::List{PyValue(1)}));
  const std::string list_msg = message_of<FormatError>([&] { read_sam_checkpoint(path); });
  EXPECT_NE(list_msg.find("holds a list"), std::string::npos) << list_msg;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

TEST(Writer, FailuresLeaveNoFileBehind) {
  TempDir dir;
  const std::string path = dir.file("out.pth");
  PyValue::Dict root;
  root.set("weights", PyValue(torch::zeros({2})));
  root.set("dtype", PyValue(PyValue::Opaque{"torch.float32"}));
  EXPECT_NE(message_of<InputError>([&] {
              write_pytorch_checkpoint(path, PyValue(root));
            }).find("out.pth"),
            std::string::npos);
  StateDict complex_sd;
  complex_sd.push_back({"c", torch::zeros({2}, at::kComplexFloat)});
  EXPECT_NE(message_of<InputError>([&] {
              write_state_dict_pth(path, complex_sd);
            }).find("unsupported dtype"),
            std::string::npos);
  EXPECT_NE(message_of<InputError>([&] { write_safetensors(path, complex_sd); }).find("'c'"),
            std::string::npos);
  StateDict dup = small_sam();
  dup.push_back(dup.front());
  EXPECT_NE(message_of<InputError>([&] { write_state_dict_pth(path, dup); }).find("twice"),
            std::string::npos);
  EXPECT_TRUE(files_in(dir.path()).empty()) << "no partial or temporary files";

  const std::string unwritable = dir.file("missing_dir/out.pth");
  message_of<IoError>([&] { write_state_dict_pth(unwritable, small_sam()); });
  EXPECT_TRUE(files_in(dir.path()).empty());
}

TEST(Writer, OverwritesAtomically) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, small_sam());
  StateDict other = small_sam();
  other.pop_back();
  write_safetensors(path, other);
  EXPECT_EQ(read_state_dict_any(path).size(), 2u);
  EXPECT_EQ(files_in(dir.path()).size(), 1u);
}

}  // namespace
}  // namespace medicosam::checkpoint
