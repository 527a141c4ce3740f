#pragma once
// Segment Anything as libtorch modules. Registered names mirror the reference
// state_dict keys exactly (image_encoder.blocks.3.attn.qkv.weight, ...), so a
// checkpoint loads by plain name matching and saves by a plain dump.
//
// This header includes torch; code that only needs shapes uses sam_config.hpp.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "medicosam/model/precision.hpp"
#include "medicosam/model/sam_config.hpp"

namespace medicosam::model {

// Channel-wise LayerNorm over NCHW tensors (per pixel, biased variance).
struct LayerNorm2dImpl : torch::nn::Module {
  LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm2d);

// ---------------------------------------------------------------- image encoder

// Reusable buffers of one reduced-precision encoder pass (attention scores and
// probabilities): allocated once per forward instead of per block and head, so
// the kernel does not page in fresh multi-MB buffers every time. Local to a
// call, so concurrent forwards do not share it.
struct EncoderWorkspace {
  torch::Tensor qkv, q, k, v, heads, out, hidden, scores, probs;
};

struct MLPBlockImpl : torch::nn::Module {
  MLPBlockImpl(int64_t dim, int64_t hidden, bool gelu);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear lin1{nullptr}, lin2{nullptr};
  bool gelu;
};
TORCH_MODULE(MLPBlock);

struct EncoderAttentionImpl : torch::nn::Module {
  EncoderAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias, bool use_rel_pos,
                       int64_t input_size);
  // x: (B, H, W, C)
  torch::Tensor forward(const torch::Tensor& x);
  // Reduced-precision path (set_precision): x (B, H, W, C) in the compute
  // dtype; the relative position terms enter the score matmul as extra columns.
  torch::Tensor forward_reduced(const torch::Tensor& x, EncoderWorkspace& ws);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor rel_pos_h, rel_pos_w;
  int64_t num_heads;
  double scale;
  bool use_rel_pos;
};
TORCH_MODULE(EncoderAttention);

struct EncoderBlockImpl : torch::nn::Module {
  EncoderBlockImpl(const EncoderConfig& c, int64_t window_size, int64_t input_size);
  torch::Tensor forward(const torch::Tensor& x);  // (B, H, W, C)
  // x: float32 residual stream (B, H, W, C), updated in place and returned;
  // matmuls in `dtype`.
  torch::Tensor forward_reduced(const torch::Tensor& x, torch::ScalarType dtype, EncoderWorkspace& ws);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  EncoderAttention attn{nullptr};
  MLPBlock mlp{nullptr};
  int64_t window_size;
};
TORCH_MODULE(EncoderBlock);

struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl(int64_t patch, int64_t in_chans, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);  // (B,3,S,S) -> (B, S/p, S/p, D)
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

struct ImageEncoderImpl : torch::nn::Module {
  explicit ImageEncoderImpl(const EncoderConfig& c);
  // x: normalised, padded (B, 3, img_size, img_size) -> (B, out_chans, grid, grid)
  // float32 whatever the precision.
  torch::Tensor forward(const torch::Tensor& x);
  // Converts the matmul and convolution weights to bfloat16 once (halving
  // their memory) and makes forward() use them; layer norms, the residual
  // stream and the output stay float32. kFloat32 is the exact reference path
  // and must be set before any conversion (there is no way back).
  void set_precision(Precision p);
  Precision precision() const { return precision_; }
  EncoderConfig config;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor pos_embed;
  torch::nn::ModuleList blocks;
  torch::nn::Sequential neck;

 private:
  torch::Tensor forward_reduced(const torch::Tensor& x);
  Precision precision_ = Precision::kFloat32;
};
TORCH_MODULE(ImageEncoder);

// --------------------------------------------------------------- prompt encoder

struct PositionEmbeddingRandomImpl : torch::nn::Module {
  explicit PositionEmbeddingRandomImpl(int64_t num_pos_feats);
  // Dense positional encoding of an (h, w) grid -> (C, h, w).
  torch::Tensor grid(int64_t h, int64_t w);
  // coords (B, N, 2) in input-frame pixels (already +0.5) -> (B, N, C).
  torch::Tensor with_coords(const torch::Tensor& coords, int64_t img_h, int64_t img_w);
  torch::Tensor encode(const torch::Tensor& normalized);
  torch::Tensor positional_encoding_gaussian_matrix;
};
TORCH_MODULE(PositionEmbeddingRandom);

struct PromptEncoderImpl : torch::nn::Module {
  explicit PromptEncoderImpl(const SamConfig& c);
  // points: coords (B,N,2) in the model's input frame, labels (B,N) int (1 fg, 0 bg, -1 padding).
  // boxes (B,4) x0,y0,x1,y1 in the input frame; masks (B,1,4g,4g) logits. Any may be undefined.
  // Returns (sparse (B,M,C), dense (B,C,g,g)).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& point_coords,
                                                  const torch::Tensor& point_labels,
                                                  const torch::Tensor& boxes,
                                                  const torch::Tensor& masks);
  torch::Tensor dense_pe();  // (1, C, g, g), cached per device
  PositionEmbeddingRandom pe_layer{nullptr};
  torch::nn::ModuleList point_embeddings;
  torch::nn::Embedding not_a_point_embed{nullptr}, no_mask_embed{nullptr};
  torch::nn::Sequential mask_downscaling;
  int64_t embed_dim, grid, img_size;

 private:
  torch::Tensor dense_pe_cache_;
};
TORCH_MODULE(PromptEncoder);

// ----------------------------------------------------------------- mask decoder

struct DecoderAttentionImpl : torch::nn::Module {
  DecoderAttentionImpl(int64_t dim, int64_t num_heads, int64_t downsample_rate);
  // Float32 result. In the factored forms the image-token operands may be
  // bfloat16 (MaskDecoderImpl::set_precision): the products over image tokens
  // then run in bfloat16 with float32 accumulation, the rest in float32.
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
  // Exact factored forms used by forward() when they need fewer operations.
  torch::Tensor forward_few_queries(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v);
  torch::Tensor forward_few_keys(const torch::Tensor& q, const torch::Tensor& k,
                                 const torch::Tensor& v);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t num_heads, internal_dim;
};
TORCH_MODULE(DecoderAttention);

struct TwoWayAttentionBlockImpl : torch::nn::Module {
  TwoWayAttentionBlockImpl(const DecoderConfig& c, bool skip_first_layer_pe);
  // Updates queries (B,T,C) and keys (B,HW,C) in place of the returned pair.
  std::pair<torch::Tensor, torch::Tensor> forward(torch::Tensor queries, torch::Tensor keys,
                                                  const torch::Tensor& query_pe,
                                                  const torch::Tensor& key_pe);
  DecoderAttention self_attn{nullptr}, cross_attn_token_to_image{nullptr},
      cross_attn_image_to_token{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, norm4{nullptr};
  MLPBlock mlp{nullptr};
  bool skip_first_layer_pe;
  // dtype of the image-token operands of the cross-attention products
  // (float32, or bfloat16 with MaskDecoderImpl::set_precision).
  torch::ScalarType image_dtype = torch::kFloat32;
};
TORCH_MODULE(TwoWayAttentionBlock);

struct TwoWayTransformerImpl : torch::nn::Module {
  explicit TwoWayTransformerImpl(const DecoderConfig& c);
  // image (B,C,h,w), image_pe (B|1,C,h,w), tokens (B,T,C) -> (queries (B,T,C), keys (B,hw,C))
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image,
                                                  const torch::Tensor& image_pe,
                                                  const torch::Tensor& tokens);
  torch::nn::ModuleList layers;
  DecoderAttention final_attn_token_to_image{nullptr};
  torch::nn::LayerNorm norm_final_attn{nullptr};
  torch::ScalarType image_dtype = torch::kFloat32;  // as in TwoWayAttentionBlockImpl
};
TORCH_MODULE(TwoWayTransformer);

struct HeadMLPImpl : torch::nn::Module {
  HeadMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t num_layers);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList layers;
};
TORCH_MODULE(HeadMLP);

struct MaskDecoderImpl : torch::nn::Module {
  explicit MaskDecoderImpl(const DecoderConfig& c);
  // Returns (low-res mask logits (B, 1|K, 4g, 4g), iou predictions (B, 1|K)).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image_embeddings,
                                                  const torch::Tensor& image_pe,
                                                  const torch::Tensor& sparse,
                                                  const torch::Tensor& dense,
                                                  bool multimask_output);
  // All mask tokens, before the multimask slice.
  std::pair<torch::Tensor, torch::Tensor> predict_masks(const torch::Tensor& image_embeddings,
                                                        const torch::Tensor& image_pe,
                                                        const torch::Tensor& sparse,
                                                        const torch::Tensor& dense);
  // output_upscaling + hypernetwork product: keys (B, h*w, C) -> masks (B, M, 4h, 4w).
  torch::Tensor upscale_and_project(const torch::Tensor& keys, const torch::Tensor& hyper_in,
                                    int64_t h, int64_t w);
  // Inference only (after loading; training stays float32): kBFloat16 runs the
  // products over the image tokens (the two-way transformer's cross-attention
  // with the image, the upscaling's transposed convolutions) with bfloat16
  // operands and float32 accumulation; prompt tokens, layer norms, softmax,
  // residuals, the hypernetwork product and the logits stay float32.
  void set_precision(Precision p);
  Precision precision() const { return precision_; }
  TwoWayTransformer transformer{nullptr};
  torch::nn::Embedding iou_token{nullptr}, mask_tokens{nullptr};
  torch::nn::Sequential output_upscaling;
  torch::nn::ModuleList output_hypernetworks_mlps;
  HeadMLP iou_prediction_head{nullptr};
  int64_t num_mask_tokens;

 private:
  Precision precision_ = Precision::kFloat32;
  // bfloat16 (Cin, 4 Cout) matrices of the two transposed convolutions.
  torch::Tensor upscale_w1_, upscale_w2_;
};
TORCH_MODULE(MaskDecoder);

// ------------------------------------------------------------------------- SAM

struct SamImpl : torch::nn::Module {
  explicit SamImpl(const SamConfig& c);
  SamConfig config;
  ImageEncoder image_encoder{nullptr};
  PromptEncoder prompt_encoder{nullptr};
  MaskDecoder mask_decoder{nullptr};
  torch::Tensor pixel_mean, pixel_std;  // (3,1,1), not part of the state dict

  // uint8 or float image (B,3,h,w) with h,w <= img_size -> normalised, zero-padded (B,3,S,S).
  torch::Tensor preprocess(const torch::Tensor& image);
  // Low-res logits (B,C,4g,4g) -> logits at the original size (B,C,H,W).
  torch::Tensor postprocess_masks(const torch::Tensor& low_res, int64_t input_h, int64_t input_w,
                                  int64_t original_h, int64_t original_w);
};
TORCH_MODULE(Sam);

// Names and tensors of the state dict (parameters and persistent buffers), in
// registration order, matching the reference's state_dict().
std::vector<std::pair<std::string, torch::Tensor>> sam_state_dict(SamImpl& sam);

}  // namespace medicosam::model
