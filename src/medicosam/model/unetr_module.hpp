#pragma once
// The UNETR head as libtorch modules (see unetr.hpp). Registered names mirror
// torch_em's state dict keys, so micro_sam's `decoder_state` loads by plain
// name matching and saves by a plain dump:
//
//   deconvK.block.0.conv.*     Upsampler2d: bilinear x2 (align_corners False), 1x1 conv
//   deconvK.block.0.block.*    (conv-transpose variant: ConvTranspose2d k2 s2)
//   deconvK.block.1.block.*    3x3 conv
//   deconvK.block.2.*          BatchNorm2d (running stats, num_batches_tracked)
//   base.block.{1,4}.*         ConvBlock2d: InstanceNorm, 3x3 conv, ReLU, InstanceNorm, 3x3 conv, ReLU
//   decoder.blocks.{0,1,2}.block.{1,4}.*, decoder.samplers.{0,1,2}.{conv|block}.*
//   out_conv.*, deconv_out.{conv|block}.*, decoder_head.block.{1,4}.*
//
// Data flow on the neck output z12 (B, E, g, g):
//   z9 = deconv1(z12) (8f, 2g), z6 = deconv2(z9) (4f, 4g), z3 = deconv3(z6) (2f, 8g),
//   z0 = deconv4(z3) (f, 16g); x = base(z12) (8f, g); three decoder stages
//   x = block(cat(sampler(x), centre_crop(skip))) with skips z9, z6, z3 - the
//   crop is torch_em's Decoder._crop, which centre-crops every dimension that
//   differs, channels included (8f -> 4f etc.); x = deconv_out(x) (f, 16g);
//   x = decoder_head(cat(x, z0)); logits = out_conv(x) (C, 16g, 16g).
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "medicosam/model/unetr.hpp"

namespace medicosam::model {

// Upsampler2d (bilinear x2 + 1x1 conv, key "conv") or SingleDeconv2DBlock
// (ConvTranspose2d k2 s2, key "block").
struct UnetrUpsamplerImpl : torch::nn::Module {
  UnetrUpsamplerImpl(int64_t in, int64_t out, bool transpose);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::ConvTranspose2d deconv{nullptr};
};
TORCH_MODULE(UnetrUpsampler);

// torch_em SingleConv2DBlock: a conv under the name "block".
struct UnetrSingleConvImpl : torch::nn::Module {
  UnetrSingleConvImpl(int64_t in, int64_t out, int64_t kernel);
  torch::Tensor forward(const torch::Tensor& x) { return block->forward(x); }
  torch::nn::Conv2d block{nullptr};
};
TORCH_MODULE(UnetrSingleConv);

// Deconv2DBlock: [upsampler, 3x3 conv, BatchNorm2d, ReLU].
struct UnetrDeconvBlockImpl : torch::nn::Module {
  UnetrDeconvBlockImpl(int64_t in, int64_t out, bool transpose);
  torch::Tensor forward(const torch::Tensor& x) { return block->forward(x); }
  torch::nn::Sequential block;
};
TORCH_MODULE(UnetrDeconvBlock);

// ConvBlock2d: [InstanceNorm2d, 3x3 conv, ReLU, InstanceNorm2d, 3x3 conv, ReLU].
struct UnetrConvBlockImpl : torch::nn::Module {
  UnetrConvBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x) { return block->forward(x); }
  torch::nn::Sequential block;
};
TORCH_MODULE(UnetrConvBlock);

// torch_em Decoder: per stage, x = block(cat(sampler(x), crop(skip))).
struct UnetrDecoderImpl : torch::nn::Module {
  UnetrDecoderImpl(const std::vector<int64_t>& features, bool transpose);
  torch::Tensor forward(torch::Tensor x, const std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList blocks, samplers;
};
TORCH_MODULE(UnetrDecoder);

struct UnetrImpl : torch::nn::Module {
  explicit UnetrImpl(const UnetrConfig& c);
  // Neck output (B, E, g, g) -> logits (B, C, 16g, 16g), no final activation.
  torch::Tensor forward(const torch::Tensor& z12);
  // torch_em UNETR.postprocess_masks: bilinear to (img_size, img_size), crop to
  // the resized image (input_h, input_w), bilinear to the original size.
  static torch::Tensor postprocess(const torch::Tensor& logits, int64_t img_size, int64_t input_h,
                                   int64_t input_w, int64_t original_h, int64_t original_w);
  UnetrConfig config;
  UnetrDecoder decoder{nullptr};
  UnetrDeconvBlock deconv1{nullptr}, deconv2{nullptr}, deconv3{nullptr}, deconv4{nullptr};
  UnetrConvBlock base{nullptr};
  torch::nn::Conv2d out_conv{nullptr};
  UnetrUpsampler deconv_out{nullptr};
  UnetrConvBlock decoder_head{nullptr};
};
TORCH_MODULE(Unetr);

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Parameters and buffers (BatchNorm running stats) in torch_em's order and names.
NamedTensors unetr_state_dict(UnetrImpl& head);

// Derives the configuration from the tensors' names and shapes. CheckpointError
// naming `source` if a key it needs is missing or the shapes do not describe a
// UNETR decoder (e.g. the skip-connection variant).
UnetrConfig unetr_config_from_tensors(const NamedTensors& tensors, const std::string& source);

// Builds the head from its tensors (eval mode, float32). CheckpointError
// listing every missing, unexpected or mis-shaped key, naming `source`.
Unetr unetr_from_tensors(const NamedTensors& tensors, const std::string& source);

// Reads the head's tensors of a file (see unetr.hpp for the layouts); an empty
// list if the file has none. `decoder_file`: the file is a separate decoder
// file (its whole state dict is the head).
NamedTensors read_unetr_tensors(const std::string& path, bool decoder_file);

// The semantic loss of MedicoSAM's UNETR training (CustomCombinedLoss):
// dice_weight * Dice + ce_weight * cross-entropy. logits (B, C, H, W), labels
// (B, H, W) class indices (int64). Dice is torch_em's DiceLoss: per class over
// the whole batch, 1 - mean_c 2 sum(p t) / max(sum(p^2) + sum(t^2), eps), with
// p = softmax over the classes and t one-hot (one class: p = sigmoid, t =
// labels > 0, and binary cross-entropy).
torch::Tensor semantic_loss(const torch::Tensor& logits, const torch::Tensor& labels, double dice_weight = 0.5,
                            double ce_weight = 0.5);

// Writes a separate decoder file (micro_sam's decoder_path): a plain state dict
// (.pth) or safetensors (bare keys) by extension, atomically.
void save_unetr(const std::string& path, UnetrImpl& head);

}  // namespace medicosam::model
