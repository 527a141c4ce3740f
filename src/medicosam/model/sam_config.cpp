#include "medicosam/model/sam_config.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "medicosam/core/error.hpp"

namespace medicosam::model {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

class ShapeReader {
 public:
  ShapeReader(const ShapeMap& shapes, const std::string& source) : shapes_(shapes), source_(source) {}

  bool has(const std::string& key) const { return shapes_.count(key) > 0; }

  const std::vector<int64_t>& get(const std::string& key, size_t rank) const {
    auto it = shapes_.find(key);
    if (it == shapes_.end()) {
      throw CheckpointError("'" + source_ + "' is not a SAM checkpoint: tensor '" + key + "' is missing");
    }
    if (it->second.size() != rank) {
      throw CheckpointError("'" + source_ + "': tensor '" + key + "' has shape " + shape_str(it->second) +
                            ", expected " + std::to_string(rank) + " dimensions");
    }
    return it->second;
  }

  // Number of consecutive indices i for which `prefix + i + suffix` exists.
  int64_t count(const std::string& prefix, const std::string& suffix) const {
    int64_t n = 0;
    while (has(prefix + std::to_string(n) + suffix)) ++n;
    return n;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError("'" + source_ + "': " + why);
  }

 private:
  const ShapeMap& shapes_;
  const std::string& source_;
};

SamConfig with_encoder(int64_t dim, int64_t depth, int64_t heads, std::vector<int64_t> globals) {
  SamConfig c;
  c.encoder.embed_dim = dim;
  c.encoder.depth = depth;
  c.encoder.num_heads = heads;
  c.encoder.mlp_dim = 4 * dim;
  c.encoder.global_attn_indexes = std::move(globals);
  return c;
}

}  // namespace

SamConfig SamConfig::vit_b() { return with_encoder(768, 12, 12, {2, 5, 8, 11}); }
SamConfig SamConfig::vit_l() { return with_encoder(1024, 24, 16, {5, 11, 17, 23}); }
SamConfig SamConfig::vit_h() { return with_encoder(1280, 32, 16, {7, 15, 23, 31}); }

std::string SamConfig::architecture_name() const {
  for (auto [name, ref] : {std::pair{"vit_b", vit_b()}, {"vit_l", vit_l()}, {"vit_h", vit_h()}}) {
    const auto& a = encoder;
    const auto& b = ref.encoder;
    if (a.embed_dim == b.embed_dim && a.depth == b.depth && a.num_heads == b.num_heads &&
        a.img_size == b.img_size && a.patch_size == b.patch_size &&
        a.global_attn_indexes == b.global_attn_indexes && a.window_size == b.window_size) {
      return name;
    }
  }
  std::ostringstream s;
  s << "vit(d=" << encoder.embed_dim << ",depth=" << encoder.depth << ",heads=" << encoder.num_heads
    << ",img=" << encoder.img_size << ",patch=" << encoder.patch_size << ")";
  return s.str();
}

SamConfig derive_config(const ShapeMap& shapes, const std::string& source,
                        const std::map<std::string, std::string>& hints) {
  ShapeReader r(shapes, source);
  SamConfig c;
  auto& e = c.encoder;

  // Patch embedding: Conv2d(in_chans, D, k=patch, s=patch).
  const auto& pe = r.get("image_encoder.patch_embed.proj.weight", 4);
  e.embed_dim = pe[0];
  e.in_chans = pe[1];
  e.patch_size = pe[2];
  if (pe[2] != pe[3]) r.fail("non-square patch embedding " + shape_str(pe) + " is not supported");

  // Absolute position embedding (1, G, G, D) gives the grid and so the image size.
  e.use_abs_pos = r.has("image_encoder.pos_embed");
  if (e.use_abs_pos) {
    const auto& pos = r.get("image_encoder.pos_embed", 4);
    if (pos[1] != pos[2] || pos[3] != e.embed_dim) r.fail("unexpected pos_embed shape " + shape_str(pos));
    e.img_size = pos[1] * e.patch_size;
  }

  e.depth = r.count("image_encoder.blocks.", ".norm1.weight");
  if (e.depth == 0) r.fail("no image encoder blocks (image_encoder.blocks.0.*) found");

  const auto& lin1 = r.get("image_encoder.blocks.0.mlp.lin1.weight", 2);
  e.mlp_dim = lin1[0];
  e.qkv_bias = r.has("image_encoder.blocks.0.attn.qkv.bias");
  e.use_rel_pos = r.has("image_encoder.blocks.0.attn.rel_pos_h");

  // Heads from the rel-pos head dim; window vs global from the rel-pos length.
  const int64_t grid = e.img_size / e.patch_size;
  e.global_attn_indexes.clear();
  int64_t window = -1;
  if (e.use_rel_pos) {
    const auto& rp = r.get("image_encoder.blocks.0.attn.rel_pos_h", 2);
    const int64_t head_dim = rp[1];
    if (head_dim <= 0 || e.embed_dim % head_dim != 0) {
      r.fail("rel_pos head dim " + std::to_string(head_dim) + " does not divide embed dim " +
             std::to_string(e.embed_dim));
    }
    e.num_heads = e.embed_dim / head_dim;
    for (int64_t i = 0; i < e.depth; ++i) {
      const auto& rh = r.get("image_encoder.blocks." + std::to_string(i) + ".attn.rel_pos_h", 2);
      const int64_t size = (rh[0] + 1) / 2;
      if (rh[0] % 2 == 0 || rh[1] != head_dim) r.fail("inconsistent rel_pos_h shape in block " + std::to_string(i));
      if (size == grid) {
        e.global_attn_indexes.push_back(i);
      } else if (window < 0) {
        window = size;
      } else if (window != size) {
        r.fail("blocks use different window sizes (" + std::to_string(window) + " and " + std::to_string(size) + ")");
      }
    }
  } else {
    // Without rel-pos the head count is not visible in the shapes; SAM uses 64-dim heads.
    e.num_heads = std::max<int64_t>(1, e.embed_dim / 64);
    window = 14;
  }
  e.window_size = window < 0 ? 0 : window;
  if (auto it = hints.find("encoder_num_heads"); it != hints.end()) e.num_heads = std::stoll(it->second);
  if (auto it = hints.find("encoder_global_attn_indexes"); it != hints.end() && !e.use_rel_pos) {
    e.global_attn_indexes.clear();
    std::stringstream ss(it->second);
    for (std::string tok; std::getline(ss, tok, ',');) e.global_attn_indexes.push_back(std::stoll(tok));
  }

  const auto& neck0 = r.get("image_encoder.neck.0.weight", 4);
  e.out_chans = neck0[0];

  // Prompt encoder.
  const auto& pe_gauss = r.get("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2);
  c.prompt_embed_dim = pe_gauss[1] * 2;
  if (c.prompt_embed_dim != e.out_chans) {
    r.fail("prompt embedding dim " + std::to_string(c.prompt_embed_dim) + " differs from encoder output " +
           std::to_string(e.out_chans));
  }
  const auto& md3 = r.get("prompt_encoder.mask_downscaling.3.weight", 4);
  c.mask_in_chans = md3[0];

  // Mask decoder.
  auto& d = c.decoder;
  d.transformer_dim = c.prompt_embed_dim;
  d.transformer_depth = r.count("mask_decoder.transformer.layers.", ".norm1.weight");
  if (d.transformer_depth == 0) r.fail("no mask decoder transformer layers found");
  d.mlp_dim = r.get("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)[0];
  const auto& cross_q = r.get("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 2);
  if (cross_q[0] <= 0 || d.transformer_dim % cross_q[0] != 0) r.fail("unexpected cross-attention shape");
  d.attention_downsample_rate = d.transformer_dim / cross_q[0];
  d.num_multimask_outputs = r.get("mask_decoder.mask_tokens.weight", 2)[0] - 1;
  d.iou_head_depth = r.count("mask_decoder.iou_prediction_head.layers.", ".weight");
  d.iou_head_hidden_dim = r.get("mask_decoder.iou_prediction_head.layers.0.weight", 2)[0];
  if (auto it = hints.find("decoder_num_heads"); it != hints.end()) d.num_heads = std::stoll(it->second);
  if (cross_q[0] % d.num_heads != 0) r.fail("decoder heads do not divide the attention dim");
  return c;
}

}  // namespace medicosam::model

namespace medicosam::model {
double encoder_flops(const EncoderConfig& c) {
  const double g = static_cast<double>(c.grid_size());
  const double n = g * g, d = static_cast<double>(c.embed_dim), hd = d / c.num_heads;
  double f = 2 * n * d * (c.in_chans * c.patch_size * c.patch_size);  // patch embedding
  for (int64_t i = 0; i < c.depth; ++i) {
    const bool global = std::find(c.global_attn_indexes.begin(), c.global_attn_indexes.end(), i) !=
                        c.global_attn_indexes.end();
    f += 2 * n * d * (3 * d) + 2 * n * d * d + 2 * 2 * n * d * c.mlp_dim;  // qkv, proj, mlp
    // Attention over windows (padded) or the whole grid: QK^T and AV, plus rel-pos terms.
    const double ws = global || c.window_size == 0 ? g : static_cast<double>(c.window_size);
    const double windows = global || c.window_size == 0 ? 1 : std::ceil(g / ws) * std::ceil(g / ws);
    const double tokens = ws * ws;
    f += windows * c.num_heads * (2 * 2 * tokens * tokens * hd + 2 * 2 * tokens * ws * hd);
  }
  f += 2 * n * d * c.out_chans + 2 * n * c.out_chans * c.out_chans * 9;  // neck
  return f;
}
}  // namespace medicosam::model
