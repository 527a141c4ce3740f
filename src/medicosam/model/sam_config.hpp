#pragma once
// The shape of a SAM model, derived from a checkpoint's tensor shapes so that
// any configuration (ViT-B/L/H, MedSAM, our small default model, the tiny
// parity fixtures) loads without a separate config file.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace medicosam::model {

struct EncoderConfig {
  int64_t img_size = 1024;    // square input side after resize + pad
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  int64_t mlp_dim = 3072;
  bool qkv_bias = true;
  bool use_rel_pos = true;
  bool use_abs_pos = true;
  int64_t window_size = 14;                  // 0 = all blocks global
  std::vector<int64_t> global_attn_indexes;  // blocks with global attention
  int64_t out_chans = 256;
  double layer_norm_eps = 1e-6;

  int64_t grid_size() const { return img_size / patch_size; }
};

struct DecoderConfig {
  int64_t transformer_dim = 256;
  int64_t transformer_depth = 2;
  int64_t num_heads = 8;  // not recoverable from shapes; SAM's constant
  int64_t mlp_dim = 2048;
  int64_t attention_downsample_rate = 2;
  int64_t num_multimask_outputs = 3;
  int64_t iou_head_depth = 3;
  int64_t iou_head_hidden_dim = 256;
};

struct SamConfig {
  EncoderConfig encoder;
  int64_t prompt_embed_dim = 256;
  int64_t mask_in_chans = 16;
  DecoderConfig decoder;
  std::vector<double> pixel_mean = {123.675, 116.28, 103.53};
  std::vector<double> pixel_std = {58.395, 57.12, 57.375};
  double mask_threshold = 0.0;

  int64_t image_embedding_size() const { return encoder.grid_size(); }
  // Side of the low-res mask logits (and of a mask prompt): 4x the embedding grid.
  int64_t low_res_size() const { return 4 * encoder.grid_size(); }

  // Official SAM configurations.
  static SamConfig vit_b();
  static SamConfig vit_l();
  static SamConfig vit_h();

  // A short name: "vit_b", "vit_l", "vit_h" when the encoder matches one of
  // SAM's, otherwise e.g. "vit(d=64,depth=4,heads=2,img=1024,patch=16)".
  std::string architecture_name() const;
};

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// Derives the configuration from the shapes of a state dict's tensors (keys as
// in SAM's state_dict, prefixes already stripped). `hints` may carry values the
// shapes cannot tell (key "decoder_num_heads"). Throws CheckpointError naming
// `source` when a required tensor is missing or shapes are inconsistent.
SamConfig derive_config(const ShapeMap& shapes, const std::string& source,
                        const std::map<std::string, std::string>& hints = {});

}  // namespace medicosam::model

namespace medicosam::model {
// Multiply-add count x2 of one image encoder forward pass (linear layers,
// attention products, convolutions), for GFLOP/s reporting.
double encoder_flops(const EncoderConfig& c);
}  // namespace medicosam::model
