#pragma once
// A plain 2D U-Net: the baseline of the semantic experiments (the role
// nnU-Net plays in MedicoSAM's paper), trained by the same semantic trainer
// and evaluated by the same protocol as the UNETR head on SAM's encoder.
//
// Per level: two [3x3 conv, InstanceNorm (affine), LeakyReLU(0.01)] (nnU-Net's
// building block), 2x2 max pooling down, ConvTranspose2d(k2, s2) up,
// concatenation with the skip, two convs again; a 1x1 conv to the classes.
// Input: an 8-bit RGB image resized (longest side) and zero-padded to an
// input_size square, normalised with SAM's pixel mean / std - the same input
// the SAM encoder gets, so both models see the same pixels.
//
// Files (our own format): safetensors with the tensors under their module
// names and the configuration as JSON in the metadata key "medicosam.unet";
// the trainer's latest.pt / best.pt hold {"unet_state": ..., "unet_config":
// JSON string, "optimizer_state": ...}.
#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace medicosam::model {

inline constexpr const char* kUnetMetadataKey = "medicosam.unet";

struct UnetConfig {
  int64_t in_channels = 3;
  int64_t num_classes = 2;  // incl. background; 1 = one sigmoid channel
  int64_t features = 32;    // first level; doubled per level
  int64_t depth = 4;        // number of 2x downsamplings
  int64_t input_size = 256; // model input side (a multiple of 2^depth)

  nlohmann::json to_json() const;
  // InputError naming `source` for missing / invalid fields.
  static UnetConfig from_json(const nlohmann::json& j, const std::string& source);
  // "2D U-Net, 3 classes, depth 4, features 32..512, input 256 x 256"
  std::string describe() const;
};

struct UnetConvBlockImpl : torch::nn::Module {
  UnetConvBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x) { return block->forward(x); }
  torch::nn::Sequential block;
};
TORCH_MODULE(UnetConvBlock);

struct Unet2dImpl : torch::nn::Module {
  explicit Unet2dImpl(const UnetConfig& c);
  // Normalised image (B, in_channels, S, S), S a multiple of 2^depth ->
  // logits (B, num_classes, S, S).
  torch::Tensor forward(const torch::Tensor& x);
  UnetConfig config;
  torch::nn::ModuleList encoders, upsamplers, decoders;
  UnetConvBlock bottleneck{nullptr};
  torch::nn::Conv2d out_conv{nullptr};
};
TORCH_MODULE(Unet2d);

// uint8 images (B, 3, S, S) -> float (x - SAM mean) / SAM std, on x's device.
torch::Tensor unet_normalize(const torch::Tensor& images_u8);

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
NamedTensors unet_state_dict(Unet2dImpl& net);

// Writes the U-Net as safetensors (config in the metadata, plus `metadata`),
// atomically.
void save_unet(const std::string& path, Unet2dImpl& net,
               const std::map<std::string, std::string>& metadata = {});

// True when `path` holds a U-Net of ours (safetensors with the metadata key,
// or a trainer checkpoint with "unet_state"). Never throws for other files.
bool is_unet_file(const std::string& path);

// Reads a U-Net (safetensors or trainer checkpoint), eval mode, on `device`.
// CheckpointError naming the file for another kind of file, a missing
// configuration, or missing / unexpected / mis-shaped tensors.
Unet2d load_unet(const std::string& path, const torch::Device& device = torch::kCPU);

// Builds a U-Net from a configuration and tensors (strict); `source` names the
// file in errors.
Unet2d unet_from_tensors(const UnetConfig& c, const NamedTensors& tensors,
                         const std::string& source);

}  // namespace medicosam::model
