// Prompt encoder, two-way transformer mask decoder and the SAM wrapper
// (pre/post-processing), following the reference implementation op for op
// where the order of floating point operations affects parity.
#include <algorithm>
#include <cmath>
#include <limits>

#include "medicosam/model/sam.hpp"

namespace medicosam::model {
namespace F = torch::nn::functional;
using torch::Tensor;
using torch::indexing::Slice;

// --------------------------------------------------------------- prompt encoder

PositionEmbeddingRandomImpl::PositionEmbeddingRandomImpl(int64_t num_pos_feats) {
  positional_encoding_gaussian_matrix =
      register_buffer("positional_encoding_gaussian_matrix", torch::randn({2, num_pos_feats}));
}

Tensor PositionEmbeddingRandomImpl::encode(const Tensor& normalized) {
  auto c = 2 * normalized - 1;
  c = torch::matmul(c, positional_encoding_gaussian_matrix);
  c = (2 * M_PI) * c;
  return torch::cat({torch::sin(c), torch::cos(c)}, -1);
}

Tensor PositionEmbeddingRandomImpl::grid(int64_t h, int64_t w) {
  auto opts = positional_encoding_gaussian_matrix.options();
  auto ones = torch::ones({h, w}, opts);
  auto y = (ones.cumsum(0) - 0.5) / h;
  auto x = (ones.cumsum(1) - 0.5) / w;
  return encode(torch::stack({x, y}, -1)).permute({2, 0, 1});
}

Tensor PositionEmbeddingRandomImpl::with_coords(const Tensor& coords, int64_t img_h,
                                                int64_t img_w) {
  auto c = coords.clone();
  c.select(-1, 0).div_(img_w);
  c.select(-1, 1).div_(img_h);
  return encode(c.to(torch::kFloat32));
}

PromptEncoderImpl::PromptEncoderImpl(const SamConfig& c)
    : embed_dim(c.prompt_embed_dim), grid(c.image_embedding_size()), img_size(c.encoder.img_size) {
  pe_layer = register_module("pe_layer", PositionEmbeddingRandom(embed_dim / 2));
  point_embeddings = register_module("point_embeddings", torch::nn::ModuleList());
  for (int i = 0; i < 4; ++i) point_embeddings->push_back(torch::nn::Embedding(1, embed_dim));
  not_a_point_embed = register_module("not_a_point_embed", torch::nn::Embedding(1, embed_dim));
  const int64_t m = c.mask_in_chans;
  mask_downscaling = register_module(
      "mask_downscaling",
      torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, m / 4, 2).stride(2)),
                            LayerNorm2d(m / 4), torch::nn::GELU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(m / 4, m, 2).stride(2)),
                            LayerNorm2d(m), torch::nn::GELU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(m, embed_dim, 1))));
  no_mask_embed = register_module("no_mask_embed", torch::nn::Embedding(1, embed_dim));
}

Tensor PromptEncoderImpl::dense_pe() {
  const auto& g = pe_layer->positional_encoding_gaussian_matrix;
  // The cache is invalid after weights change (training) or a device move.
  if (!dense_pe_cache_.defined() || dense_pe_cache_.device() != g.device() || is_training() ||
      torch::GradMode::is_enabled()) {
    auto pe = pe_layer->grid(grid, grid).unsqueeze(0);
    if (is_training() || torch::GradMode::is_enabled()) return pe;
    dense_pe_cache_ = pe;
  }
  return dense_pe_cache_;
}

std::pair<Tensor, Tensor> PromptEncoderImpl::forward(const Tensor& point_coords,
                                                     const Tensor& point_labels,
                                                     const Tensor& boxes, const Tensor& masks) {
  int64_t bs = 1;
  if (point_coords.defined())
    bs = point_coords.size(0);
  else if (boxes.defined())
    bs = boxes.size(0);
  else if (masks.defined())
    bs = masks.size(0);
  const auto opts = pe_layer->positional_encoding_gaussian_matrix.options();
  auto sparse = torch::empty({bs, 0, embed_dim}, opts);

  auto emb = [&](int i) { return point_embeddings[i]->as<torch::nn::EmbeddingImpl>()->weight; };

  if (point_coords.defined()) {
    auto points = point_coords.to(opts) + 0.5;
    auto labels = point_labels.to(torch::TensorOptions().dtype(torch::kLong).device(opts.device()));
    if (!boxes.defined()) {  // a padding point stands in for the missing box
      points = torch::cat({points, torch::zeros({bs, 1, 2}, opts)}, 1);
      labels = torch::cat({labels, -torch::ones({bs, 1}, labels.options())}, 1);
    }
    auto pe = pe_layer->with_coords(points, img_size, img_size);
    auto lab = labels.unsqueeze(-1);
    // Same arithmetic as the reference: zero the padding PE, then add the label embedding.
    pe = torch::where(lab == -1, torch::zeros_like(pe), pe);
    pe = pe + (lab == -1).to(pe.dtype()) * not_a_point_embed->weight +
         (lab == 0).to(pe.dtype()) * emb(0) + (lab == 1).to(pe.dtype()) * emb(1);
    sparse = torch::cat({sparse, pe}, 1);
  }
  if (boxes.defined()) {
    auto corners = (boxes.to(opts) + 0.5).reshape({-1, 2, 2});
    auto pe = pe_layer->with_coords(corners, img_size, img_size);
    pe = torch::cat(
        {pe.index({Slice(), Slice(0, 1)}) + emb(2), pe.index({Slice(), Slice(1, 2)}) + emb(3)}, 1);
    sparse = torch::cat({sparse, pe}, 1);
  }
  Tensor dense;
  if (masks.defined()) {
    dense = mask_downscaling->forward(masks.to(opts));
  } else {
    dense = no_mask_embed->weight.reshape({1, -1, 1, 1}).expand({bs, -1, grid, grid});
  }
  return {sparse, dense};
}

// ----------------------------------------------------------------- mask decoder

namespace {
// Softmax over a short last axis (a few prompt tokens): libtorch's kernel
// handles each row of a handful of values on its own and was ~20x slower than
// these four whole-tensor passes, which compute the same exp(x - max) / sum.
Tensor softmax_short_rows(const Tensor& x) {
  // Out of place: autograd (training) needs e for the backward pass.
  auto e = (x - std::get<0>(x.max(-1, /*keepdim=*/true))).exp();
  return e / e.sum(-1, /*keepdim=*/true);
}

// Softmax over groups of T consecutive values of each row of s (B, N, G*T)
// (bfloat16) after adding bias (B, G*T) (float32), in float32, written as
// bfloat16: one pass instead of converting the scores, adding, the four
// passes of softmax_short_rows and converting back (~5x less time).
Tensor short_softmax_bf16(const Tensor& s, const Tensor& bias, int64_t T) {
  auto sc = s.contiguous();
  auto bc = bias.to(torch::kFloat32).contiguous();
  auto out = torch::empty_like(sc);
  const int64_t B = sc.size(0), N = sc.size(1), W = sc.size(2), G = W / T;
  const auto* src = sc.data_ptr<at::BFloat16>();
  auto* dst = out.data_ptr<at::BFloat16>();
  const float* bb = bc.data_ptr<float>();
  at::parallel_for(0, B * N, 256, [&](int64_t r0, int64_t r1) {
    std::vector<float> v(static_cast<size_t>(T));
    for (int64_t r = r0; r < r1; ++r) {
      const auto* row = src + r * W;
      auto* orow = dst + r * W;
      const float* brow = bb + (r / N) * W;
      for (int64_t g = 0; g < G; ++g) {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t t = 0; t < T; ++t) {
          v[t] = static_cast<float>(row[g * T + t]) + brow[g * T + t];
          mx = std::max(mx, v[t]);
        }
        float sum = 0.f;
        for (int64_t t = 0; t < T; ++t) sum += (v[t] = std::exp(v[t] - mx));
        const float inv = 1.f / sum;
        for (int64_t t = 0; t < T; ++t) orow[g * T + t] = at::BFloat16(v[t] * inv);
      }
    }
  });
  return out;
}

// Batched product x (B,M,K) . y (B,K,N) over image tokens. In bfloat16 each
// batch entry goes through a 2-D mm: libtorch 1.13's CPU bmm took 4x as long
// as mm for the same (1, 56, 256) x (1, 256, 4096) product (transposed views
// are fine for mm). float32 keeps matmul, the reference path.
Tensor image_matmul(const Tensor& x, const Tensor& y) {
  if (x.scalar_type() != torch::kBFloat16 || !x.device().is_cpu() || x.dim() != 3 || y.dim() != 3) {
    return torch::matmul(x, y);
  }
  const int64_t B = std::max(x.size(0), y.size(0));
  auto pick = [](const Tensor& t, int64_t b) { return t.size(0) == 1 ? t[0] : t[b]; };
  if (B == 1) return torch::mm(x[0], y[0]).unsqueeze(0);
  std::vector<Tensor> out;
  for (int64_t b = 0; b < B; ++b) out.push_back(torch::mm(pick(x, b), pick(y, b)));
  return torch::stack(out);
}

}  // namespace

DecoderAttentionImpl::DecoderAttentionImpl(int64_t dim, int64_t heads, int64_t downsample_rate)
    : num_heads(heads), internal_dim(dim / downsample_rate) {
  q_proj = register_module("q_proj", torch::nn::Linear(dim, internal_dim));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, internal_dim));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, internal_dim));
  out_proj = register_module("out_proj", torch::nn::Linear(internal_dim, dim));
}

Tensor DecoderAttentionImpl::forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in) {
  // Cross-attention between a few prompt tokens and thousands of image tokens
  // is cheaper in factored form when heads x tokens < internal dim (see below):
  // the same function, only the order of the float operations differs.
  const int64_t nq = q_in.size(1), nk = k_in.size(1);
  if (nk > nq && num_heads * nq < internal_dim) return forward_few_queries(q_in, k_in, v_in);
  if (nq > nk && num_heads * nk < internal_dim) return forward_few_keys(q_in, k_in, v_in);
  auto split = [&](const Tensor& x) {
    return x.reshape({x.size(0), x.size(1), num_heads, x.size(2) / num_heads}).transpose(1, 2);
  };
  // The projections below are float32 (reduced-precision image operands are
  // only used by the factored forms).
  auto q = split(q_proj->forward(q_in.to(torch::kFloat32)));
  auto k = split(k_proj->forward(k_in.to(torch::kFloat32)));
  auto v = split(v_proj->forward(v_in.to(torch::kFloat32)));
  const int64_t c_per_head = q.size(3);
  auto attn = torch::matmul(q, k.permute({0, 1, 3, 2}));
  attn = attn / std::sqrt(static_cast<double>(c_per_head));
  attn = torch::softmax(attn, -1);
  auto out = torch::matmul(attn, v);
  out = out.transpose(1, 2).reshape({out.size(0), out.size(2), -1});
  return out_proj->forward(out);
}

// Few queries (prompt tokens, T) attending many keys (image tokens, N):
//   scores_h = Q_h (K W_k,h^T + b_k,h)^T = (Q_h W_k,h) K^T + const per row,
// and the constant cancels in the softmax; values enter only through
//   P_h (V W_v,h^T + b_v,h) = (P_h V) W_v,h^T + b_v,h   (rows of P_h sum to 1).
// So no N x internal projection of the image tokens is needed: two products
// of size (heads*T) x N x C instead of two of N x C x internal.
Tensor DecoderAttentionImpl::forward_few_queries(const Tensor& q_in, const Tensor& k_in,
                                                 const Tensor& v_in) {
  const int64_t B = q_in.size(0), T = q_in.size(1), C = k_in.size(2), hd = internal_dim / num_heads;
  auto q = q_proj->forward(q_in).view({B, T, num_heads, hd}).transpose(1, 2);  // (B,h,T,hd)
  auto wk = k_proj->weight.view({num_heads, hd, C});                           // (h,hd,C)
  auto a = torch::matmul(q, wk);                                               // (B,h,T,C)
  a = a / std::sqrt(static_cast<double>(hd));
  // The two products over the N image tokens take k_in's / v_in's dtype.
  auto scores = image_matmul(a.reshape({B, num_heads * T, C}).to(k_in.scalar_type()),
                              k_in.transpose(1, 2));  // (B,hT,N)
  auto p = torch::softmax(scores, -1, torch::kFloat32);
  auto z = image_matmul(p.to(v_in.scalar_type()), v_in).to(torch::kFloat32).view({B, num_heads, T, C});  // (B,h,T,C)
  auto wv = v_proj->weight.view({num_heads, hd, C});
  auto out =
      torch::matmul(z, wv.transpose(1, 2)) + v_proj->bias.view({num_heads, 1, hd});  // (B,h,T,hd)
  out = out.transpose(1, 2).reshape({B, T, internal_dim});
  return out_proj->forward(out);
}

// Many queries (image tokens, N) attending few keys (prompt tokens, T):
//   scores_h = (Q W_q,h^T + b_q,h) K_h^T = Q (W_q,h^T K_h^T) + b_q,h K_h^T,
//   out = sum_h P_h V_h W_o,h^T + b_o,
// two products of size N x C x (heads*T) instead of two of N x C x internal.
Tensor DecoderAttentionImpl::forward_few_keys(const Tensor& q_in, const Tensor& k_in,
                                              const Tensor& v_in) {
  const int64_t B = q_in.size(0), N = q_in.size(1), T = k_in.size(1), C = q_in.size(2);
  const int64_t hd = internal_dim / num_heads;
  auto k = k_proj->forward(k_in).view({B, T, num_heads, hd}).transpose(1, 2);  // (B,h,T,hd)
  auto v = v_proj->forward(v_in).view({B, T, num_heads, hd}).transpose(1, 2);  // (B,h,T,hd)
  auto wq = q_proj->weight.view({num_heads, hd, C});                           // (h,hd,C)
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // (B,h,C,T) -> (B, C, h*T)
  auto m = torch::matmul(wq.transpose(1, 2), k.transpose(2, 3)) * scale;
  auto c = torch::matmul(q_proj->bias.view({1, num_heads, 1, hd}), k.transpose(2, 3)) *
           scale;  // (B,h,1,T)
  // The two products over the N image tokens take q_in's dtype.
  const auto dt = q_in.scalar_type();
  if (dt == torch::kBFloat16 && q_in.device().is_cpu()) {
    auto s16 = image_matmul(q_in, m.permute({0, 2, 1, 3}).reshape({B, C, num_heads * T}).to(dt));  // (B,N,hT)
    auto p16 = short_softmax_bf16(s16, c.permute({0, 2, 1, 3}).reshape({B, num_heads * T}), T);
    auto wo = out_proj->weight.view({C, num_heads, hd}).permute({1, 2, 0});  // (h,hd,C)
    auto u = torch::matmul(v, wo).reshape({B, num_heads * T, C});            // (B,hT,C)
    return image_matmul(p16, u.to(dt)).to(torch::kFloat32).add_(out_proj->bias);
  }
  auto scores = image_matmul(q_in, m.permute({0, 2, 1, 3}).reshape({B, C, num_heads * T}).to(dt))
                    .to(torch::kFloat32);  // (B,N,hT)
  scores = scores.view({B, N, num_heads, T}) + c.permute({0, 2, 1, 3});
  auto p = softmax_short_rows(scores).reshape({B, N, num_heads * T});
  auto wo = out_proj->weight.view({C, num_heads, hd}).permute({1, 2, 0});  // (h,hd,C)
  auto u = torch::matmul(v, wo).reshape({B, num_heads * T, C});            // (B,hT,C)
  if (dt == torch::kFloat32) return torch::matmul(p, u) + out_proj->bias;
  return image_matmul(p.to(dt), u.to(dt)).to(torch::kFloat32).add_(out_proj->bias);
}

TwoWayAttentionBlockImpl::TwoWayAttentionBlockImpl(const DecoderConfig& c, bool skip)
    : skip_first_layer_pe(skip) {
  const int64_t d = c.transformer_dim;
  self_attn = register_module("self_attn", DecoderAttention(d, c.num_heads, 1));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  cross_attn_token_to_image = register_module(
      "cross_attn_token_to_image", DecoderAttention(d, c.num_heads, c.attention_downsample_rate));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  mlp = register_module("mlp", MLPBlock(d, c.mlp_dim, /*gelu=*/false));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  norm4 = register_module("norm4", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  cross_attn_image_to_token = register_module(
      "cross_attn_image_to_token", DecoderAttention(d, c.num_heads, c.attention_downsample_rate));
}

std::pair<Tensor, Tensor> TwoWayAttentionBlockImpl::forward(Tensor queries, Tensor keys,
                                                            const Tensor& query_pe,
                                                            const Tensor& key_pe) {
  if (skip_first_layer_pe) {
    queries = self_attn->forward(queries, queries, queries);  // no residual, as the reference
  } else {
    auto q = queries + query_pe;
    queries = queries + self_attn->forward(q, q, queries);
  }
  // float32 for the norm: under bf16 autocast (training) the attention output
  // is bf16, and libtorch 1.13's CPU layer norm needs input and weight alike.
  queries = norm1->forward(queries.to(torch::kFloat32));

  // Image-token operands in image_dtype (one conversion each, shared by both
  // cross-attentions); the residual stream `keys` stays float32.
  auto k = (keys + key_pe).to(image_dtype);
  auto v = keys.to(image_dtype);
  queries =
      norm2->forward(queries + cross_attn_token_to_image->forward(queries + query_pe, k, v));
  queries = norm3->forward(queries + mlp->forward(queries));
  auto q = queries + query_pe;
  keys = norm4->forward(keys + cross_attn_image_to_token->forward(k, q, queries));
  return {queries, keys};
}

TwoWayTransformerImpl::TwoWayTransformerImpl(const DecoderConfig& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.transformer_depth; ++i)
    layers->push_back(TwoWayAttentionBlock(c, i == 0));
  final_attn_token_to_image = register_module(
      "final_attn_token_to_image",
      DecoderAttention(c.transformer_dim, c.num_heads, c.attention_downsample_rate));
  norm_final_attn = register_module(
      "norm_final_attn", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.transformer_dim})));
}

std::pair<Tensor, Tensor> TwoWayTransformerImpl::forward(const Tensor& image,
                                                         const Tensor& image_pe,
                                                         const Tensor& tokens) {
  // Token-major (B, hw, C) copies: later elementwise ops then read both
  // operands in the same order (an add of an NCHW-strided view and a
  // contiguous tensor is a transposition, ~20x slower than a plain add).
  // image_pe may have batch 1 for any B (broadcast); a channels-last image_pe
  // (as the predictor passes it) needs no copy at all.
  auto keys = image.flatten(2).permute({0, 2, 1}).contiguous();
  auto key_pe = image_pe.flatten(2).permute({0, 2, 1}).contiguous();
  auto queries = tokens;
  for (const auto& layer : *layers) {
    std::tie(queries, keys) =
        layer->as<TwoWayAttentionBlockImpl>()->forward(queries, keys, tokens, key_pe);
  }
  auto attn_out = final_attn_token_to_image->forward(queries + tokens, (keys + key_pe).to(image_dtype),
                                                     keys.to(image_dtype));
  queries = norm_final_attn->forward(queries + attn_out);
  return {queries, keys};
}

HeadMLPImpl::HeadMLPImpl(int64_t in, int64_t hidden, int64_t out, int64_t num_layers) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    layers->push_back(torch::nn::Linear(i == 0 ? in : hidden, i == num_layers - 1 ? out : hidden));
  }
}

Tensor HeadMLPImpl::forward(Tensor x) {
  const size_t n = layers->size();
  for (size_t i = 0; i < n; ++i) {
    x = layers[i]->as<torch::nn::LinearImpl>()->forward(x);
    if (i + 1 < n) x = torch::relu(x);
  }
  return x;
}

MaskDecoderImpl::MaskDecoderImpl(const DecoderConfig& c)
    : num_mask_tokens(c.num_multimask_outputs + 1) {
  const int64_t d = c.transformer_dim;
  transformer = register_module("transformer", TwoWayTransformer(c));
  iou_token = register_module("iou_token", torch::nn::Embedding(1, d));
  mask_tokens = register_module("mask_tokens", torch::nn::Embedding(num_mask_tokens, d));
  output_upscaling = register_module(
      "output_upscaling",
      torch::nn::Sequential(
          torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(d, d / 4, 2).stride(2)),
          LayerNorm2d(d / 4), torch::nn::GELU(),
          torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(d / 4, d / 8, 2).stride(2)),
          torch::nn::GELU()));
  output_hypernetworks_mlps = register_module("output_hypernetworks_mlps", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_mask_tokens; ++i)
    output_hypernetworks_mlps->push_back(HeadMLP(d, d, d / 8, 3));
  iou_prediction_head = register_module(
      "iou_prediction_head", HeadMLP(d, c.iou_head_hidden_dim, num_mask_tokens, c.iou_head_depth));
}

namespace {

// ConvTranspose2d with kernel 2 and stride 2 on channels-last pixels: every
// input pixel (rows of x: (P, Cin)) yields a 2x2 block of output pixels, so the
// layer is one matmul; rows of the result are (P, 2, 2) pixels with Cout values.
Tensor conv_transpose_2x2(const Tensor& x, const torch::nn::ConvTranspose2dImpl& conv) {
  const auto& wt = conv.weight;  // (Cin, Cout, 2, 2)
  const int64_t cin = wt.size(0), cout = wt.size(1);
  auto w = wt.permute({0, 2, 3, 1}).reshape({cin, 4 * cout});
  return torch::matmul(x, w).view({-1, cout}).add_(conv.bias);
}

// LayerNorm2d over the channel (last) axis of channels-last pixels: the same
// normalisation (biased variance) as one fused kernel instead of eight
// elementwise passes.
Tensor layer_norm_channels_last(const Tensor& x, const LayerNorm2dImpl& ln) {
  return F::layer_norm(x, F::LayerNormFuncOptions({x.size(-1)}).weight(ln.weight).bias(ln.bias).eps(ln.eps));
}
}  // namespace

Tensor MaskDecoderImpl::upscale_and_project(const Tensor& keys, const Tensor& hyper_in, int64_t h,
                                            int64_t w) {
  // output_upscaling = [ConvT 2x2, LayerNorm2d, GELU, ConvT 2x2, GELU], computed
  // on the decoder's token-major keys (B, h*w, C) without going through NCHW:
  // each 2x2 transposed convolution is a single matmul.
  const int64_t B = keys.size(0);
  auto& up = *output_upscaling;
  const auto& ct1 = *up[0]->as<torch::nn::ConvTranspose2dImpl>();
  const auto& ln = *up[1]->as<LayerNorm2dImpl>();
  const auto& ct2 = *up[3]->as<torch::nn::ConvTranspose2dImpl>();
  Tensor x;
  if (precision_ == Precision::kFloat32) {
    x = conv_transpose_2x2(keys.reshape({-1, keys.size(2)}), ct1);  // (B*h*w*4, C/4)
    x = torch::gelu(layer_norm_channels_last(x.to(torch::kFloat32), ln));  // bf16 under autocast
    x = torch::gelu(conv_transpose_2x2(x, ct2));  // (B*h*w*16, C/8)
  } else {
    // bfloat16 operands, float32 bias, layer norm and GELU.
    const auto dt = upscale_w1_.scalar_type();
    x = torch::matmul(keys.reshape({-1, keys.size(2)}).to(dt), upscale_w1_).to(torch::kFloat32);
    x = torch::gelu(layer_norm_channels_last(x.view({-1, ct1.weight.size(1)}).add_(ct1.bias), ln));
    x = torch::matmul(x.to(dt), upscale_w2_).to(torch::kFloat32);
    x = torch::gelu(x.view({-1, ct2.weight.size(1)}).add_(ct2.bias));
  }
  const int64_t cu = x.size(1);
  // masks[b, m, pixel] = sum_c hyper[b, m, c] * upscaled[b, pixel, c], as a
  // (M x c) . (c x pixels) product: a GEMM with only M output columns was ~10x slower.
  auto masks = torch::matmul(hyper_in, x.view({B, -1, cu}).transpose(1, 2));  // (B, M, h*w*16)
  const int64_t M = hyper_in.size(1);
  // Pixel order is (i, j, di1, dj1, di2, dj2) with y = 4i + 2 di1 + di2, x = 4j + 2 dj1 + dj2.
  return masks.view({B, M, h, w, 2, 2, 2, 2})
      .permute({0, 1, 2, 4, 6, 3, 5, 7})
      .reshape({B, M, 4 * h, 4 * w});
}

void MaskDecoderImpl::set_precision(Precision p) {
  precision_ = p;
  const auto dt = p == Precision::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  transformer->image_dtype = dt;
  for (const auto& layer : *transformer->layers) layer->as<TwoWayAttentionBlockImpl>()->image_dtype = dt;
  upscale_w1_ = upscale_w2_ = Tensor();
  if (p == Precision::kFloat32) return;
  torch::NoGradGuard no_grad;
  auto matrix = [&](const torch::nn::ConvTranspose2dImpl& conv) {
    const auto& wt = conv.weight;  // (Cin, Cout, 2, 2) -> (Cin, 4 Cout), as conv_transpose_2x2
    return wt.permute({0, 2, 3, 1}).reshape({wt.size(0), 4 * wt.size(1)}).to(dt).contiguous();
  };
  upscale_w1_ = matrix(*output_upscaling[0]->as<torch::nn::ConvTranspose2dImpl>());
  upscale_w2_ = matrix(*output_upscaling[3]->as<torch::nn::ConvTranspose2dImpl>());
}

std::pair<Tensor, Tensor> MaskDecoderImpl::predict_masks(const Tensor& image_embeddings,
                                                         const Tensor& image_pe,
                                                         const Tensor& sparse,
                                                         const Tensor& dense) {
  const int64_t B = sparse.size(0);
  auto output_tokens =
      torch::cat({iou_token->weight, mask_tokens->weight}, 0).unsqueeze(0).expand({B, -1, -1});
  auto tokens = torch::cat({output_tokens, sparse}, 1);
  // One image embedding shared by B prompts: broadcast instead of copying.
  Tensor src = image_embeddings.size(0) == B ? image_embeddings + dense
                                             : image_embeddings.expand({B, -1, -1, -1}) + dense;
  // image_pe stays one (1, C, h, w) tensor: the transformer broadcasts it.
  const int64_t c = src.size(1), h = src.size(2), w = src.size(3);
  auto [hs, keys] = transformer->forward(src, image_pe, tokens);
  auto iou_token_out = hs.select(1, 0);
  auto mask_tokens_out = hs.slice(1, 1, 1 + num_mask_tokens);
  std::vector<Tensor> hyper;
  for (int64_t i = 0; i < num_mask_tokens; ++i) {
    hyper.push_back(
        output_hypernetworks_mlps[i]->as<HeadMLPImpl>()->forward(mask_tokens_out.select(1, i)));
  }
  auto hyper_in = torch::stack(hyper, 1);  // (B, masks, C/8)
  auto masks = upscale_and_project(keys, hyper_in, h, w);
  (void)c;
  auto iou_pred = iou_prediction_head->forward(iou_token_out);
  return {masks, iou_pred};
}

std::pair<Tensor, Tensor> MaskDecoderImpl::forward(const Tensor& image_embeddings,
                                                   const Tensor& image_pe, const Tensor& sparse,
                                                   const Tensor& dense, bool multimask) {
  auto [masks, iou] = predict_masks(image_embeddings, image_pe, sparse, dense);
  if (multimask) return {masks.slice(1, 1), iou.slice(1, 1)};
  return {masks.slice(1, 0, 1), iou.slice(1, 0, 1)};
}

// ------------------------------------------------------------------------- SAM

SamImpl::SamImpl(const SamConfig& c) : config(c) {
  image_encoder = register_module("image_encoder", ImageEncoder(c.encoder));
  prompt_encoder = register_module("prompt_encoder", PromptEncoder(c));
  mask_decoder = register_module("mask_decoder", MaskDecoder(c.decoder));
  // Registered as buffers so that .to(device) moves them, but left out of the
  // state dict (non-persistent in the reference).
  pixel_mean = register_buffer(
      "pixel_mean",
      torch::tensor(std::vector<float>(c.pixel_mean.begin(), c.pixel_mean.end())).view({-1, 1, 1}));
  pixel_std = register_buffer(
      "pixel_std",
      torch::tensor(std::vector<float>(c.pixel_std.begin(), c.pixel_std.end())).view({-1, 1, 1}));
}

Tensor SamImpl::preprocess(const Tensor& image) {
  auto x = (image.to(pixel_mean.device()).to(torch::kFloat32) - pixel_mean) / pixel_std;
  const int64_t S = config.encoder.img_size;
  const int64_t padh = S - x.size(-2), padw = S - x.size(-1);
  if (padh < 0 || padw < 0)
    throw std::invalid_argument("preprocess: image larger than the model input");
  if (padh == 0 && padw == 0) return x;
  return F::pad(x, F::PadFuncOptions({0, padw, 0, padh}));
}

namespace {

// Row o of the matrix that PyTorch's bilinear resize (align_corners=False, no
// antialias) applies along one axis from `in` to `out` samples, in PyTorch's
// float arithmetic for the source position: one or two (index, weight) taps
// (one at the border, where both taps fall on the same sample and add up).
int bilinear_taps(int64_t in, int64_t out, int64_t o, std::pair<int64_t, double> taps[2]) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  const int64_t i0 = static_cast<int64_t>(src);
  const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
  const float l1 = src - static_cast<float>(i0), l0 = 1.0f - l1;
  if (i0 == i1) {
    taps[0] = {i0, static_cast<double>(l0) + static_cast<double>(l1)};
    return 1;
  }
  taps[0] = {i0, l0};
  taps[1] = {i1, l1};
  return 2;
}

// The composition "bilinear L -> S, keep the first `keep` samples, bilinear
// keep -> out" along one axis, as an (out x L) matrix. Both factors have at
// most two taps per row, so the product is formed tap by tap: each entry is a
// sum of at most two products, as in the dense double product, without its
// out x keep x L operations on every call.
std::vector<double> composed_resize_dense(int64_t L, int64_t S, int64_t keep, int64_t out) {
  std::vector<double> m(static_cast<size_t>(out * L), 0.0);
  std::pair<int64_t, double> down[2], up[2];
  for (int64_t o = 0; o < out; ++o) {
    double* row = m.data() + o * L;
    const int nd = bilinear_taps(keep, out, o, down);
    for (int j = 0; j < nd; ++j) {
      const int nu = bilinear_taps(L, S, down[j].first, up);
      for (int k = 0; k < nu; ++k) row[up[k].first] += down[j].second * up[k].second;
    }
  }
  return m;
}

Tensor composed_resize_matrix(int64_t L, int64_t S, int64_t keep, int64_t out) {
  auto m = composed_resize_dense(L, S, keep, out);
  return torch::from_blob(m.data(), {out, L}, torch::kFloat64).to(torch::kFloat32);
}

// The same matrix as rows of at most kMaxTaps (index, weight) pairs: each row
// has a handful of neighbouring non-zeros (two taps of each bilinear step).
constexpr int kMaxTaps = 4;
struct ResizeTaps {
  std::vector<int64_t> index;  // out x kMaxTaps (unused taps: index 0, weight 0)
  std::vector<float> weight;
};

ResizeTaps composed_resize_taps(int64_t L, int64_t S, int64_t keep, int64_t out) {
  // Built tap by tap like composed_resize_dense, without the dense out x L
  // matrix: this runs on every click.
  ResizeTaps t{std::vector<int64_t>(static_cast<size_t>(out * kMaxTaps), 0),
               std::vector<float>(static_cast<size_t>(out * kMaxTaps), 0.f)};
  std::pair<int64_t, double> down[2], up[2];
  for (int64_t o = 0; o < out; ++o) {
    std::pair<int64_t, double> row[kMaxTaps];
    int n = 0;
    const int nd = bilinear_taps(keep, out, o, down);
    for (int j = 0; j < nd; ++j) {
      const int nu = bilinear_taps(L, S, down[j].first, up);
      for (int k = 0; k < nu; ++k) {
        int i = 0;
        while (i < n && row[i].first != up[k].first) ++i;
        if (i == n) row[n++] = {up[k].first, 0.0};
        row[i].second += down[j].second * up[k].second;
      }
    }
    for (int i = 0; i < n; ++i) {
      t.index[static_cast<size_t>(o * kMaxTaps + i)] = row[i].first;
      t.weight[static_cast<size_t>(o * kMaxTaps + i)] = static_cast<float>(row[i].second);
    }
  }
  return t;
}

// out[p] = My . low[p] . Mx^T for every plane p of a contiguous float32 CPU
// tensor (P, L, L), with the banded matrices as taps: first along x on the L
// low-res rows (a gather of <= 4 taps per output column), then along y as
// <= 4 contiguous row updates per output row. About 1/60 of the dense
// products' operations at SAM's sizes; same sums up to float rounding.
Tensor resize_planes_banded(const Tensor& low, const ResizeTaps& ty, const ResizeTaps& tx, int64_t H, int64_t W) {
  const int64_t P = low.size(0), L = low.size(1), Lw = low.size(2);
  auto out = torch::empty({P, H, W}, low.options());
  const float* src = low.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  std::vector<float> tmp(static_cast<size_t>(L * W));
  for (int64_t p = 0; p < P; ++p) {
    const float* plane = src + p * L * Lw;
    at::parallel_for(0, L, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = plane + r * Lw;
        float* t = tmp.data() + r * W;
        for (int64_t x = 0; x < W; ++x) {
          const int64_t* ix = tx.index.data() + x * kMaxTaps;
          const float* wx = tx.weight.data() + x * kMaxTaps;
          t[x] = wx[0] * row[ix[0]] + wx[1] * row[ix[1]] + wx[2] * row[ix[2]] + wx[3] * row[ix[3]];
        }
      }
    });
    float* o = dst + p * H * W;
    at::parallel_for(0, H, 16, [&](int64_t y0, int64_t y1) {
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t* iy = ty.index.data() + y * kMaxTaps;
        const float* wy = ty.weight.data() + y * kMaxTaps;
        const float* q0 = tmp.data() + iy[0] * W;
        const float* q1 = tmp.data() + iy[1] * W;
        const float* q2 = tmp.data() + iy[2] * W;
        const float* q3 = tmp.data() + iy[3] * W;
        float* orow = o + y * W;
        for (int64_t x = 0; x < W; ++x) orow[x] = wy[0] * q0[x] + wy[1] * q1[x] + wy[2] * q2[x] + wy[3] * q3[x];
      }
    });
  }
  return out;
}

}  // namespace

Tensor SamImpl::postprocess_masks(const Tensor& low_res, int64_t input_h, int64_t input_w,
                                  int64_t original_h, int64_t original_w) {
  const int64_t S = config.encoder.img_size;
  if (torch::GradMode::is_enabled() && low_res.requires_grad()) {
    // Training path: the reference's three steps.
    auto opts = F::InterpolateFuncOptions().mode(torch::kBilinear).align_corners(false);
    auto m = F::interpolate(low_res, opts.size(std::vector<int64_t>{S, S}));
    m = m.index({"...", Slice(0, input_h), Slice(0, input_w)});
    return F::interpolate(m, opts.size(std::vector<int64_t>{original_h, original_w}));
  }
  // Upsampling to S x S, cropping and resizing to the original size are all
  // linear and separable: one (H x L) and one (W x L) matrix replace the
  // S x S intermediate (16x fewer operations for SAM, same values up to float
  // rounding).
  const int64_t L = low_res.size(-1);
  if (low_res.device().is_cpu() && low_res.dim() == 4 && low_res.size(-2) == L) {
    // On the CPU the matrices are banded: apply them as taps (one plane per
    // mask, its rows in parallel).
    auto planes = low_res.to(torch::kFloat32).contiguous().view({-1, L, L});
    const auto ty = composed_resize_taps(L, S, input_h, original_h);
    const auto tx = composed_resize_taps(L, S, input_w, original_w);
    return resize_planes_banded(planes, ty, tx, original_h, original_w)
        .view({low_res.size(0), low_res.size(1), original_h, original_w});
  }
  auto my = composed_resize_matrix(L, S, input_h, original_h).to(low_res.device());
  auto mx = composed_resize_matrix(L, S, input_w, original_w).to(low_res.device());
  return torch::matmul(torch::matmul(my, low_res.to(torch::kFloat32)), mx.t());
}

std::vector<std::pair<std::string, Tensor>> sam_state_dict(SamImpl& sam) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : sam.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : sam.named_buffers(/*recurse=*/true)) {
    if (b.key() == "pixel_mean" || b.key() == "pixel_std") continue;
    out.emplace_back(b.key(), b.value());
  }
  return out;
}

}  // namespace medicosam::model
