// The plain 2D U-Net baseline (unet.hpp): modules, state dict, files.
#include "medicosam/model/unet.hpp"

#include <filesystem>
#include <fstream>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"

namespace medicosam::model {
namespace F = torch::nn::functional;
using torch::Tensor;

nlohmann::json UnetConfig::to_json() const {
  return {{"in_channels", in_channels}, {"num_classes", num_classes}, {"features", features},
          {"depth", depth},             {"input_size", input_size}};
}

UnetConfig UnetConfig::from_json(const nlohmann::json& j, const std::string& source) {
  UnetConfig c;
  try {
    c.in_channels = j.at("in_channels").get<int64_t>();
    c.num_classes = j.at("num_classes").get<int64_t>();
    c.features = j.at("features").get<int64_t>();
    c.depth = j.at("depth").get<int64_t>();
    c.input_size = j.at("input_size").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError("'" + source + "': U-Net configuration is incomplete: " + e.what());
  }
  if (c.in_channels < 1 || c.num_classes < 1 || c.features < 1 || c.depth < 1 || c.depth > 8 ||
      c.input_size < 1 || c.input_size % (int64_t{1} << c.depth) != 0) {
    throw CheckpointError("'" + source + "': invalid U-Net configuration " + c.to_json().dump());
  }
  return c;
}

std::string UnetConfig::describe() const {
  return "2D U-Net, " + std::to_string(num_classes) + " class" + (num_classes == 1 ? "" : "es") +
         ", depth " + std::to_string(depth) + ", features " + std::to_string(features) + ".." +
         std::to_string(features << depth) + ", input " + std::to_string(input_size) + " x " +
         std::to_string(input_size);
}

UnetConvBlockImpl::UnetConvBlockImpl(int64_t in, int64_t out) {
  auto conv = [](int64_t i, int64_t o) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(i, o, 3).padding(1));
  };
  auto norm = [](int64_t c) {
    return torch::nn::InstanceNorm2d(torch::nn::InstanceNorm2dOptions(c).affine(true));
  };
  auto act = [] {
    return torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.01).inplace(true));
  };
  block = register_module("block", torch::nn::Sequential(conv(in, out), norm(out), act(),
                                                         conv(out, out), norm(out), act()));
}

Unet2dImpl::Unet2dImpl(const UnetConfig& c) : config(c) {
  encoders = register_module("encoders", torch::nn::ModuleList());
  upsamplers = register_module("upsamplers", torch::nn::ModuleList());
  decoders = register_module("decoders", torch::nn::ModuleList());
  int64_t in = c.in_channels;
  for (int64_t l = 0; l < c.depth; ++l) {
    encoders->push_back(UnetConvBlock(in, c.features << l));
    in = c.features << l;
  }
  bottleneck = register_module("bottleneck", UnetConvBlock(in, c.features << c.depth));
  for (int64_t l = c.depth - 1; l >= 0; --l) {
    const int64_t f = c.features << l;
    upsamplers->push_back(
        torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(2 * f, f, 2).stride(2)));
    decoders->push_back(UnetConvBlock(2 * f, f));
  }
  out_conv = register_module("out_conv",
                             torch::nn::Conv2d(torch::nn::Conv2dOptions(c.features, c.num_classes, 1)));
}

Tensor Unet2dImpl::forward(const Tensor& input) {
  const int64_t m = int64_t{1} << config.depth;
  TORCH_CHECK(input.dim() == 4 && input.size(1) == config.in_channels && input.size(2) % m == 0 &&
                  input.size(3) % m == 0,
              "U-Net input must be (B, ", config.in_channels, ", H, W) with H and W multiples of ", m);
  std::vector<Tensor> skips;
  Tensor x = input;
  for (size_t l = 0; l < encoders->size(); ++l) {
    x = encoders[l]->as<UnetConvBlock>()->forward(x);
    skips.push_back(x);
    x = F::max_pool2d(x, F::MaxPool2dFuncOptions(2));
  }
  x = bottleneck->forward(x);
  for (size_t k = 0; k < decoders->size(); ++k) {
    x = upsamplers[k]->as<torch::nn::ConvTranspose2d>()->forward(x);
    x = decoders[k]->as<UnetConvBlock>()->forward(torch::cat({x, skips[skips.size() - 1 - k]}, 1));
  }
  return out_conv->forward(x);
}

Tensor unet_normalize(const Tensor& images_u8) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(images_u8.device());
  const auto mean = torch::tensor({123.675f, 116.28f, 103.53f}, opts).view({1, 3, 1, 1});
  const auto std = torch::tensor({58.395f, 57.12f, 57.375f}, opts).view({1, 3, 1, 1});
  return (images_u8.to(torch::kFloat32) - mean) / std;
}

NamedTensors unet_state_dict(Unet2dImpl& net) {
  NamedTensors out;
  for (const auto& p : net.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : net.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

void save_unet(const std::string& path, Unet2dImpl& net,
               const std::map<std::string, std::string>& metadata) {
  checkpoint::StateDict sd;
  for (const auto& [name, t] : unet_state_dict(net))
    sd.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous()});
  auto meta = metadata;
  meta["format"] = "pt";
  meta[kUnetMetadataKey] = net.config.to_json().dump();
  checkpoint::write_safetensors(path, sd, meta);
}

namespace {

bool is_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, 9);
  // 8-byte little-endian header length, then '{'.
  return in.gcount() == 9 && head[8] == '{';
}

}  // namespace

bool is_unet_file(const std::string& path) {
  try {
    if (is_safetensors(path)) {
      const auto ck = checkpoint::read_sam_checkpoint(path);
      return ck.metadata.contains(kUnetMetadataKey);
    }
    const auto root = checkpoint::read_pytorch_checkpoint(path);
    const auto* d = root.get_if<checkpoint::PyValue::Dict>();
    return d && d->find("unet_state");
  } catch (const std::exception&) {
    return false;
  }
}

Unet2d unet_from_tensors(const UnetConfig& c, const NamedTensors& tensors,
                         const std::string& source) {
  Unet2d net(c);
  copy_state_strict(unet_state_dict(*net), tensors, "'" + source + "' U-Net");
  net->eval();
  return net;
}

Unet2d load_unet(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError("'" + path + "': no such file");
  UnetConfig c;
  NamedTensors tensors;
  if (is_safetensors(path)) {
    const auto ck = checkpoint::read_sam_checkpoint(path);
    if (!ck.metadata.contains(kUnetMetadataKey))
      throw CheckpointError("'" + path + "' is not a medicosam U-Net (no '" +
                            std::string(kUnetMetadataKey) + "' metadata)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ck.metadata[kUnetMetadataKey].get<std::string>());
    } catch (const std::exception& e) {
      throw CheckpointError("'" + path + "': U-Net metadata is not JSON: " + e.what());
    }
    c = UnetConfig::from_json(j, path);
    for (const auto& nt : ck.model_state) tensors.emplace_back(nt.name, nt.tensor);
  } else {
    const auto root = checkpoint::read_pytorch_checkpoint(path);
    const auto* d = root.get_if<checkpoint::PyValue::Dict>();
    if (!d || !d->find("unet_state") || !d->find("unet_config"))
      throw CheckpointError("'" + path + "' is not a medicosam U-Net checkpoint (no unet_state / unet_config)");
    const auto* text = d->find("unet_config")->get_if<std::string>();
    if (!text) throw CheckpointError("'" + path + "': unet_config is not a string");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(*text);
    } catch (const std::exception& e) {
      throw CheckpointError("'" + path + "': unet_config is not JSON: " + e.what());
    }
    c = UnetConfig::from_json(j, path);
    for (auto& nt : checkpoint::value_to_state_dict(*d->find("unet_state"), "'" + path + "' unet_state"))
      tensors.emplace_back(nt.name, nt.tensor);
  }
  auto net = unet_from_tensors(c, tensors, path);
  net->to(device);
  return net;
}

}  // namespace medicosam::model
