// ViT image encoder of Segment Anything (windowed + global attention with
// decomposed relative positions), written for CPU throughput: global attention
// runs in head chunks so the (heads x N x N) score tensor never exists at once.
#include <cmath>

#include "medicosam/model/sam.hpp"

namespace medicosam::model {
namespace F = torch::nn::functional;
using torch::Tensor;

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

Tensor LayerNorm2dImpl::forward(const Tensor& x) {
  const auto u = x.mean(1, /*keepdim=*/true);
  const auto centered = x - u;
  const auto s = centered.pow(2).mean(1, true);
  const auto normed = centered / torch::sqrt(s + eps);
  return weight.view({-1, 1, 1}) * normed + bias.view({-1, 1, 1});
}

MLPBlockImpl::MLPBlockImpl(int64_t dim, int64_t hidden, bool gelu_) : gelu(gelu_) {
  lin1 = register_module("lin1", torch::nn::Linear(dim, hidden));
  lin2 = register_module("lin2", torch::nn::Linear(hidden, dim));
}

Tensor MLPBlockImpl::forward(const Tensor& x) {
  auto h = lin1->forward(x);
  h = gelu ? torch::gelu(h) : torch::relu(h);  // exact (erf) GELU, as the reference
  return lin2->forward(h);
}

namespace {

// Relative position table for q_size queries and k_size keys (q, k, C),
// linearly interpolated when the stored table has another length.
Tensor get_rel_pos(int64_t q_size, int64_t k_size, const Tensor& rel_pos) {
  const int64_t max_rel_dist = 2 * std::max(q_size, k_size) - 1;
  Tensor table = rel_pos;
  if (rel_pos.size(0) != max_rel_dist) {
    table = F::interpolate(rel_pos.reshape({1, rel_pos.size(0), -1}).permute({0, 2, 1}),
                           F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{max_rel_dist})
                               .mode(torch::kLinear)
                               .align_corners(false));
    table = table.reshape({-1, max_rel_dist}).permute({1, 0});
  }
  const double qs = std::max(static_cast<double>(k_size) / q_size, 1.0);
  const double ks = std::max(static_cast<double>(q_size) / k_size, 1.0);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(rel_pos.device());
  auto q_coords = torch::arange(q_size, opts).unsqueeze(1) * qs;
  auto k_coords = torch::arange(k_size, opts).unsqueeze(0) * ks;
  auto relative = (q_coords - k_coords) + (k_size - 1) * ks;
  return table.index({relative.to(torch::kLong)});
}

// (B,H,W,C) -> windows (B*nW, ws, ws, C), zero-padding H,W up to multiples of ws.
Tensor window_partition(const Tensor& x, int64_t ws, int64_t& hp, int64_t& wp) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t pad_h = (ws - H % ws) % ws, pad_w = (ws - W % ws) % ws;
  Tensor xp = x;
  if (pad_h > 0 || pad_w > 0) xp = F::pad(x, F::PadFuncOptions({0, 0, 0, pad_w, 0, pad_h}));
  hp = H + pad_h;
  wp = W + pad_w;
  return xp.view({B, hp / ws, ws, wp / ws, ws, C}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, ws, ws, C});
}

Tensor window_unpartition(const Tensor& windows, int64_t ws, int64_t hp, int64_t wp, int64_t H, int64_t W) {
  const int64_t B = windows.size(0) / (hp * wp / ws / ws);
  auto x = windows.view({B, hp / ws, wp / ws, ws, ws, -1}).permute({0, 1, 3, 2, 4, 5}).reshape({B, hp, wp, -1});
  if (hp > H || wp > W) x = x.slice(1, 0, H).slice(2, 0, W).contiguous();
  return x;
}

// Largest attention score block we allow at once (bytes); bounds peak memory.
constexpr int64_t kAttentionChunkBytes = 64ll << 20;
// Score block of the reduced-precision path: small enough to stay in cache.
constexpr int64_t kScoreBlockBytes = 2ll << 20;

}  // namespace

EncoderAttentionImpl::EncoderAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias, bool rel, int64_t input_size)
    : num_heads(heads), use_rel_pos(rel) {
  const int64_t head_dim = dim / heads;
  scale = std::pow(static_cast<double>(head_dim), -0.5);
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, dim * 3).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  if (use_rel_pos) {
    rel_pos_h = register_parameter("rel_pos_h", torch::zeros({2 * input_size - 1, head_dim}));
    rel_pos_w = register_parameter("rel_pos_w", torch::zeros({2 * input_size - 1, head_dim}));
  }
}

Tensor EncoderAttentionImpl::forward(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), N = H * W;
  // (3, B*heads, N, head_dim)
  auto qkv_out = qkv->forward(x).reshape({B, N, 3, num_heads, -1}).permute({2, 0, 3, 1, 4});
  const int64_t BH = B * num_heads;
  auto q = qkv_out[0].reshape({BH, N, -1});
  auto k = qkv_out[1].reshape({BH, N, -1});
  auto v = qkv_out[2].reshape({BH, N, -1});
  const int64_t hd = q.size(2);

  Tensor Rh, Rw;
  if (use_rel_pos) {
    Rh = get_rel_pos(H, H, rel_pos_h);  // (H, H, hd)
    Rw = get_rel_pos(W, W, rel_pos_w);  // (W, W, hd)
  }

  // Process (batch*head) slices in chunks to bound the N x N score memory.
  const int64_t per_slice = N * N * static_cast<int64_t>(x.element_size());
  const int64_t chunk = std::max<int64_t>(1, kAttentionChunkBytes / std::max<int64_t>(per_slice, 1));
  std::vector<Tensor> outs;
  outs.reserve((BH + chunk - 1) / chunk);
  for (int64_t s = 0; s < BH; s += chunk) {
    const int64_t e = std::min(BH, s + chunk);
    auto qc = q.slice(0, s, e);
    auto attn = torch::matmul(qc * scale, k.slice(0, s, e).transpose(-2, -1));  // (c, N, N)
    if (use_rel_pos) {
      const int64_t c = e - s;
      auto r_q = qc.reshape({c, H, W, hd});
      // rel_h[b,h,w,k] = sum_c q[b,h,w,c] * Rh[h,k,c]   (batched over h)
      auto rel_h = torch::matmul(r_q.permute({1, 0, 2, 3}).reshape({H, c * W, hd}), Rh.transpose(1, 2))
                       .reshape({H, c, W, H})
                       .permute({1, 0, 2, 3});
      // rel_w[b,h,w,k] = sum_c q[b,h,w,c] * Rw[w,k,c]   (batched over w)
      auto rel_w = torch::matmul(r_q.permute({2, 0, 1, 3}).reshape({W, c * H, hd}), Rw.transpose(1, 2))
                       .reshape({W, c, H, W})
                       .permute({1, 2, 0, 3});
      attn = attn.view({c, H, W, H, W}).add(rel_h.unsqueeze(-1)).add_(rel_w.unsqueeze(-2)).view({c, N, N});
    }
    attn = torch::softmax(attn, -1);
    outs.push_back(torch::matmul(attn, v.slice(0, s, e)));
  }
  auto out = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  out = out.view({B, num_heads, H, W, hd}).permute({0, 2, 3, 1, 4}).reshape({B, H, W, -1});
  return proj->forward(out);
}

EncoderBlockImpl::EncoderBlockImpl(const EncoderConfig& c, int64_t ws, int64_t input_size) : window_size(ws) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embed_dim}).eps(c.layer_norm_eps)));
  attn = register_module("attn", EncoderAttention(c.embed_dim, c.num_heads, c.qkv_bias, c.use_rel_pos, input_size));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embed_dim}).eps(c.layer_norm_eps)));
  mlp = register_module("mlp", MLPBlock(c.embed_dim, c.mlp_dim, /*gelu=*/true));
}

Tensor EncoderBlockImpl::forward(const Tensor& x) {
  auto h = norm1->forward(x);
  if (window_size > 0) {
    const int64_t H = x.size(1), W = x.size(2);
    int64_t hp, wp;
    h = window_partition(h, window_size, hp, wp);
    h = attn->forward(h);
    h = window_unpartition(h, window_size, hp, wp, H, W);
  } else {
    h = attn->forward(h);
  }
  auto y = x + h;
  return y + mlp->forward(norm2->forward(y));
}

PatchEmbedImpl::PatchEmbedImpl(int64_t patch, int64_t in_chans, int64_t dim) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_chans, dim, patch).stride(patch)));
}

Tensor PatchEmbedImpl::forward(const Tensor& x) { return proj->forward(x).permute({0, 2, 3, 1}); }

ImageEncoderImpl::ImageEncoderImpl(const EncoderConfig& c) : config(c) {
  const int64_t g = c.grid_size();
  patch_embed = register_module("patch_embed", PatchEmbed(c.patch_size, c.in_chans, c.embed_dim));
  if (c.use_abs_pos) pos_embed = register_parameter("pos_embed", torch::zeros({1, g, g, c.embed_dim}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.depth; ++i) {
    const bool global = std::find(c.global_attn_indexes.begin(), c.global_attn_indexes.end(), i) !=
                        c.global_attn_indexes.end();
    const int64_t ws = global ? 0 : c.window_size;
    blocks->push_back(EncoderBlock(c, ws, ws == 0 ? g : ws));
  }
  neck = register_module(
      "neck", torch::nn::Sequential(
                  torch::nn::Conv2d(torch::nn::Conv2dOptions(c.embed_dim, c.out_chans, 1).bias(false)),
                  LayerNorm2d(c.out_chans),
                  torch::nn::Conv2d(torch::nn::Conv2dOptions(c.out_chans, c.out_chans, 3).padding(1).bias(false)),
                  LayerNorm2d(c.out_chans)));
}

Tensor ImageEncoderImpl::forward(const Tensor& input) {
  if (precision_ != Precision::kFloat32) return forward_reduced(input);
  auto x = patch_embed->forward(input);
  if (pos_embed.defined()) x = x + pos_embed;
  for (const auto& blk : *blocks) x = blk->as<EncoderBlockImpl>()->forward(x);
  return neck->forward(x.permute({0, 3, 1, 2}));
}

}  // namespace medicosam::model

// ------------------------------------------------------------ reduced precision
//
// Same function as the float32 path above, with bfloat16 operands for every
// matrix product (oneDNN accumulates them in float32) and float32 where the
// values are sensitive or cheap: layer norms, the residual stream, the
// relative-position tables' interpolation, the softmax's accumulation (done
// in float32 inside the kernel) and the neck's layer norms and output.

namespace medicosam::model {

namespace {

// (rows..., in) @ weight^T + bias as one 2-D GEMM (bias added inside it).
Tensor linear_2d(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t in = x.size(-1);
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return torch::nn::functional::linear(x.reshape({-1, in}), weight, bias).view(sizes);
}

// Resizes a reusable buffer without giving back its storage: fresh multi-MB
// tensors in every block made the kernel page in new memory each time (glibc
// returns large blocks to the OS), which cost as much as the GEMMs.
Tensor& take(Tensor& buffer, c10::IntArrayRef shape, const torch::TensorOptions& opts) {
  if (!buffer.defined()) buffer = torch::empty({0}, opts);
  buffer.resize_(shape);
  return buffer;
}

// linear_2d into a reusable buffer.
Tensor linear_into(Tensor& buffer, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const auto x2 = x.reshape({-1, x.size(-1)});
  auto& out = take(buffer, {x2.size(0), weight.size(0)}, x.options());
  if (bias.defined()) {
    torch::addmm_out(out, bias, x2, weight.t());
  } else {
    torch::mm_out(out, x2, weight.t());
  }
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return out.view(sizes);
}

}  // namespace

Tensor EncoderAttentionImpl::forward_reduced(const Tensor& x, EncoderWorkspace& ws) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), N = H * W, C = x.size(3);
  const int64_t hd = C / num_heads, BH = B * num_heads;
  const auto opts = x.options();
  // (3, B, heads, N, hd) views of the projection, no copy yet.
  auto qkv_out = linear_into(ws.qkv, x, qkv->weight, qkv->bias).view({B, N, 3, num_heads, hd}).permute({2, 0, 3, 1, 4});

  // scores = [q*scale | rel_h | rel_w] . [k | onehot(key row) | onehot(key column)]^T:
  // the decomposed relative-position bias becomes H + W extra columns of the
  // score GEMM (accumulated in float32 with the rest) instead of elementwise
  // passes over the N x N scores.
  const int64_t extra = use_rel_pos ? H + W : 0;
  const int64_t D = hd + extra;
  auto& qa = take(ws.q, {B, num_heads, N, D}, opts);
  auto& ka = take(ws.k, {B, num_heads, N, D}, opts);
  auto qs = qa.narrow(3, 0, hd);
  torch::mul_out(qs, qkv_out[0], torch::scalar_tensor(scale, torch::kFloat32));
  ka.narrow(3, 0, hd).copy_(qkv_out[1]);
  auto& v = take(ws.v, {BH, N, hd}, opts);
  v.view({B, num_heads, N, hd}).copy_(qkv_out[2]);
  if (use_rel_pos) {
    // rel_h = q . Rh = (q * scale) . (Rh / scale), from the scaled copy.
    auto Rh = (get_rel_pos(H, H, rel_pos_h) / scale).to(x.scalar_type());  // (H, H, hd)
    auto Rw = (get_rel_pos(W, W, rel_pos_w) / scale).to(x.scalar_type());  // (W, W, hd)
    auto r_q = qs.reshape({BH, H, W, hd});
    // rel_h[b,h,w,k] = sum_c q[b,h,w,c] * Rh[h,k,c]   (batched over h)
    auto rel_h = torch::matmul(r_q.permute({1, 0, 2, 3}).reshape({H, BH * W, hd}), Rh.transpose(1, 2))
                     .view({H, BH, W, H})
                     .permute({1, 0, 2, 3});
    // rel_w[b,h,w,k] = sum_c q[b,h,w,c] * Rw[w,k,c]   (batched over w)
    auto rel_w = torch::matmul(r_q.permute({2, 0, 1, 3}).reshape({W, BH * H, hd}), Rw.transpose(1, 2))
                     .view({W, BH, H, W})
                     .permute({1, 2, 0, 3});
    qa.view({BH, N, D}).narrow(2, hd, H).view({BH, H, W, H}).copy_(rel_h);
    qa.view({BH, N, D}).narrow(2, hd + H, W).view({BH, H, W, W}).copy_(rel_w);
    // Key (kh, kw) gets a one in column kh of the first block and kw of the second.
    auto eye_h = torch::eye(H).to(opts), eye_w = torch::eye(W).to(opts);  // eye has no bf16 kernel in 1.13
    ka.narrow(3, hd, H).copy_(eye_h.view({H, 1, H}).expand({H, W, H}).reshape({N, H}));
    ka.narrow(3, hd + H, W).copy_(eye_w.view({1, W, W}).expand({H, W, W}).reshape({N, W}));
  }
  auto qf = qa.view({BH, N, D});
  auto kf = ka.view({BH, N, D});

  // Scores and probabilities are produced in blocks of about kScoreBlockBytes so
  // that they stay in cache between the three passes (score GEMM, softmax,
  // value GEMM), in buffers reused across heads and blocks.
  const int64_t elem = static_cast<int64_t>(x.element_size());
  const int64_t per_slice = N * N * elem;
  // Output in (B, N, heads, hd) order, so the heads merge without a copy.
  auto& out = take(ws.out, {B, N, num_heads, hd}, opts);
  if (per_slice <= kScoreBlockBytes) {
    // Many small windows: batched over (window, head).
    const int64_t chunk = std::max<int64_t>(1, kScoreBlockBytes / per_slice);
    auto& heads_out = take(ws.heads, {BH, N, hd}, opts);
    for (int64_t s = 0; s < BH; s += chunk) {
      const int64_t e = std::min(BH, s + chunk), c = e - s;
      auto& scores = take(ws.scores, {c, N, N}, opts);
      auto& probs = take(ws.probs, {c, N, N}, opts);
      torch::bmm_out(scores, qf.slice(0, s, e), kf.slice(0, s, e).transpose(1, 2));
      torch::softmax_out(probs, scores, -1);
      auto o = heads_out.slice(0, s, e);
      torch::bmm_out(o, probs, v.slice(0, s, e));
    }
    out.copy_(heads_out.view({B, num_heads, N, hd}).permute({0, 2, 1, 3}));
  } else {
    // Global attention: one head at a time, in blocks of query rows.
    const int64_t rows = std::max<int64_t>(1, kScoreBlockBytes / (N * elem));
    for (int64_t bh = 0; bh < BH; ++bh) {
      const int64_t b = bh / num_heads, h = bh % num_heads;
      auto kt = kf[bh].t();
      auto vh = v[bh];
      auto oh = out[b].select(1, h);  // (N, hd), row stride C
      for (int64_t r = 0; r < N; r += rows) {
        const int64_t re = std::min(N, r + rows);
        auto& scores = take(ws.scores, {re - r, N}, opts);
        auto& probs = take(ws.probs, {re - r, N}, opts);
        torch::mm_out(scores, qf[bh].slice(0, r, re), kt);
        torch::softmax_out(probs, scores, -1);
        auto o = oh.slice(0, r, re);
        torch::mm_out(o, probs, vh);
      }
    }
  }
  return linear_2d(out.view({B, H, W, C}), proj->weight, proj->bias);
}

Tensor EncoderBlockImpl::forward_reduced(const Tensor& x, torch::ScalarType dtype, EncoderWorkspace& ws) {
  // x is the float32 residual stream, owned by the caller and updated in place.
  // (Mixed float32 + bfloat16 arithmetic takes a slow elementwise path in
  // libtorch: the bfloat16 terms are converted first, which is vectorised.)
  auto h = norm1->forward(x).to(dtype);
  if (window_size > 0) {
    const int64_t H = x.size(1), W = x.size(2);
    int64_t hp, wp;
    h = window_partition(h, window_size, hp, wp);
    h = attn->forward_reduced(h, ws);
    h = window_unpartition(h, window_size, hp, wp, H, W);
  } else {
    h = attn->forward_reduced(h, ws);
  }
  Tensor y = x;
  y.add_(h.to(torch::kFloat32));
  auto m = linear_into(ws.hidden, norm2->forward(y).to(dtype), mlp->lin1->weight, mlp->lin1->bias);
  torch::gelu_(m);
  return y.add_(linear_2d(m, mlp->lin2->weight, mlp->lin2->bias).to(torch::kFloat32));
}

void ImageEncoderImpl::set_precision(Precision p) {
  if (p == precision_) return;
  if (p == Precision::kFloat32) throw std::logic_error("image encoder: cannot return to float32 after conversion");
  torch::NoGradGuard no_grad;
  auto convert = [](torch::Tensor& t) {
    if (t.defined()) t.set_data(t.to(torch::kBFloat16));
  };
  convert(patch_embed->proj->weight);
  convert(patch_embed->proj->bias);
  for (const auto& m : *blocks) {
    auto& b = *m->as<EncoderBlockImpl>();
    for (auto* lin : {b.attn->qkv.get(), b.attn->proj.get(), b.mlp->lin1.get(), b.mlp->lin2.get()}) {
      convert(lin->weight);
      convert(lin->bias);
    }
  }
  convert(neck[0]->as<torch::nn::Conv2dImpl>()->weight);
  convert(neck[2]->as<torch::nn::Conv2dImpl>()->weight);
  precision_ = p;
}

Tensor ImageEncoderImpl::forward_reduced(const Tensor& input) {
  const auto dt = torch::kBFloat16;
  const int64_t B = input.size(0), p = config.patch_size, g = input.size(2) / p, g2 = input.size(3) / p;
  // Patch embedding: a stride-p, p x p convolution is one GEMM over the patches
  // laid out as rows (c, ky, kx), which also yields channels-last output.
  const int64_t cin = input.size(1);
  auto patches = torch::empty({B, g, g2, cin * p * p}, input.options().dtype(dt));
  patches.view({B, g, g2, cin, p, p}).copy_(input.view({B, cin, g, p, g2, p}).permute({0, 2, 4, 1, 3, 5}));
  const auto& pw = patch_embed->proj->weight;
  auto x = linear_2d(patches, pw.reshape({pw.size(0), -1}), patch_embed->proj->bias).to(torch::kFloat32);
  if (pos_embed.defined()) x.add_(pos_embed);
  EncoderWorkspace ws;
  for (const auto& blk : *blocks) x = blk->as<EncoderBlockImpl>()->forward_reduced(x, dt, ws);
  ws = {};
  // Neck: 1x1 convolution as a GEMM on channels-last pixels, LayerNorm2d over
  // channels in float32, 3x3 convolution in the compute dtype.
  const auto& c1 = *neck[0]->as<torch::nn::Conv2dImpl>();
  const auto& ln1 = *neck[1]->as<LayerNorm2dImpl>();
  const auto& c2 = *neck[2]->as<torch::nn::Conv2dImpl>();
  auto y = linear_2d(x.to(dt), c1.weight.reshape({c1.weight.size(0), -1}), {}).to(torch::kFloat32);
  y = torch::nn::functional::layer_norm(
      y, torch::nn::functional::LayerNormFuncOptions({y.size(-1)}).weight(ln1.weight).bias(ln1.bias).eps(ln1.eps));
  y = torch::conv2d(y.to(dt).permute({0, 3, 1, 2}), c2.weight, {}, 1, 1).to(torch::kFloat32);
  return neck[3]->as<LayerNorm2dImpl>()->forward(y).contiguous();
}

}  // namespace medicosam::model
