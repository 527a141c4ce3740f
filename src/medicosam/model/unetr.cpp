// The UNETR semantic head (torch_em UNETR decoder without skip connections):
// modules, state dict, loading with per-key errors, the decoder-file writer,
// and the torch-free SemanticHead.
#include <map>
#include <set>
#include <sstream>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/model/unetr_module.hpp"

namespace medicosam::model {
namespace F = torch::nn::functional;
using torch::Tensor;

// ------------------------------------------------------------------- modules

UnetrUpsamplerImpl::UnetrUpsamplerImpl(int64_t in, int64_t out, bool transpose) {
  if (transpose) {
    deconv = register_module(
        "block", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, out, 2).stride(2)));
  } else {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
  }
}

Tensor UnetrUpsamplerImpl::forward(const Tensor& x) {
  if (deconv) return deconv->forward(x);
  auto up = F::interpolate(x, F::InterpolateFuncOptions()
                                  .scale_factor(std::vector<double>{2.0, 2.0})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
  return conv->forward(up);
}

UnetrSingleConvImpl::UnetrSingleConvImpl(int64_t in, int64_t out, int64_t kernel) {
  block = register_module(
      "block", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).padding((kernel - 1) / 2)));
}

UnetrDeconvBlockImpl::UnetrDeconvBlockImpl(int64_t in, int64_t out, bool transpose) {
  block = register_module(
      "block", torch::nn::Sequential(UnetrUpsampler(in, out, transpose), UnetrSingleConv(out, out, 3),
                                     torch::nn::BatchNorm2d(out), torch::nn::ReLU(torch::nn::ReLUOptions(true))));
}

UnetrConvBlockImpl::UnetrConvBlockImpl(int64_t in, int64_t out) {
  auto conv = [](int64_t i, int64_t o) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(i, o, 3).padding(1));
  };
  auto relu = [] { return torch::nn::ReLU(torch::nn::ReLUOptions(true)); };  // in place, as torch_em
  // InstanceNorm2d(affine=False): no parameters, as torch_em's default norm.
  block = register_module(
      "block", torch::nn::Sequential(torch::nn::InstanceNorm2d(in), conv(in, out), relu(),
                                     torch::nn::InstanceNorm2d(out), conv(out, out), relu()));
}

UnetrDecoderImpl::UnetrDecoderImpl(const std::vector<int64_t>& f, bool transpose) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  samplers = register_module("samplers", torch::nn::ModuleList());
  for (size_t i = 0; i + 1 < f.size(); ++i) blocks->push_back(UnetrConvBlock(f[i], f[i + 1]));
  for (size_t i = 0; i + 1 < f.size(); ++i) samplers->push_back(UnetrUpsampler(f[i], f[i + 1], transpose));
}

namespace {
// torch_em Decoder._crop: centre-crops every dimension of `x` that is larger
// than `shape` (channels too: the skips have twice the sampler's channels).
Tensor centre_crop(const Tensor& x, c10::IntArrayRef shape) {
  Tensor out = x;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t diff = (x.size(d) - shape[d]) / 2;
    if (diff > 0) out = out.narrow(d, diff, x.size(d) - 2 * diff);
  }
  return out;
}
}  // namespace

Tensor UnetrDecoderImpl::forward(Tensor x, const std::vector<Tensor>& skips) {
  for (size_t i = 0; i < blocks->size(); ++i) {
    x = samplers[i]->as<UnetrUpsamplerImpl>()->forward(x);
    x = blocks[i]->as<UnetrConvBlockImpl>()->forward(torch::cat({x, centre_crop(skips[i], x.sizes())}, 1));
  }
  return x;
}

UnetrImpl::UnetrImpl(const UnetrConfig& c) : config(c) {
  const auto f = c.features();
  const bool t = c.conv_transpose;
  // Registration order = torch_em's attribute order = its state dict order.
  decoder = register_module("decoder", UnetrDecoder(f, t));
  deconv1 = register_module("deconv1", UnetrDeconvBlock(c.embed_dim, f[0], t));
  deconv2 = register_module("deconv2", UnetrDeconvBlock(f[0], f[1], t));
  deconv3 = register_module("deconv3", UnetrDeconvBlock(f[1], f[2], t));
  deconv4 = register_module("deconv4", UnetrDeconvBlock(f[2], f[3], t));
  base = register_module("base", UnetrConvBlock(c.embed_dim, f[0]));
  out_conv = register_module("out_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(f[3], c.num_classes, 1)));
  deconv_out = register_module("deconv_out", UnetrUpsampler(f[3], f[3], t));
  decoder_head = register_module("decoder_head", UnetrConvBlock(2 * f[3], f[3]));
}

Tensor UnetrImpl::forward(const Tensor& z12) {
  const auto z9 = deconv1->forward(z12);
  const auto z6 = deconv2->forward(z9);
  const auto z3 = deconv3->forward(z6);
  const auto z0 = deconv4->forward(z3);
  auto x = base->forward(z12);
  x = decoder->forward(x, {z9, z6, z3});
  x = deconv_out->forward(x);
  x = decoder_head->forward(torch::cat({x, z0}, 1));
  return out_conv->forward(x);
}

Tensor UnetrImpl::postprocess(const Tensor& logits, int64_t img_size, int64_t input_h, int64_t input_w,
                              int64_t original_h, int64_t original_w) {
  auto resize = [](const Tensor& t, int64_t h, int64_t w) {
    if (t.size(-2) == h && t.size(-1) == w) return t;  // bilinear to the same size is the identity
    return F::interpolate(t, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{h, w})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
  };
  auto x = resize(logits, img_size, img_size);
  x = x.slice(-2, 0, input_h).slice(-1, 0, input_w);
  return resize(x, original_h, original_w);
}

// ---------------------------------------------------------------- state dict

std::string UnetrConfig::describe() const {
  std::ostringstream s;
  const auto f = features();
  s << "UNETR decoder, " << num_classes << (num_classes == 1 ? " class" : " classes") << ", features " << f[0]
    << "/" << f[1] << "/" << f[2] << "/" << f[3] << " on " << embed_dim << " channels, "
    << (conv_transpose ? "transposed-conv" : "bilinear") << " upsampling";
  return s.str();
}

NamedTensors unetr_state_dict(UnetrImpl& head) {
  // PyTorch's order: per module (pre-order), its parameters, then its buffers.
  NamedTensors out;
  for (const auto& m : head.named_modules("", /*include_self=*/true)) {
    const std::string prefix = m.key().empty() ? "" : m.key() + ".";
    for (const auto& p : m.value()->named_parameters(/*recurse=*/false))
      if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : m.value()->named_buffers(/*recurse=*/false))
      if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  }
  return out;
}

namespace {

const Tensor* find(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

}  // namespace

UnetrConfig unetr_config_from_tensors(const NamedTensors& tensors, const std::string& source) {
  const std::string where = "'" + source + "' semantic head (decoder_state)";
  for (const auto& [n, t] : tensors) {
    if (starts_with(n, "deconv2.0.")) {
      throw CheckpointError(where + " is a UNETR with skip connections from the encoder's blocks (key '" + n +
                            "'); only the decoder on the encoder output (use_skip_connection=False) is supported");
    }
  }
  auto need = [&](const std::string& key, size_t dims) -> const Tensor& {
    const Tensor* t = find(tensors, key);
    if (!t) throw CheckpointError(where + " has no key '" + key + "'");
    if (static_cast<size_t>(t->dim()) != dims) {
      throw CheckpointError(where + ": key '" + key + "' has shape " + shape_str(t->sizes()) + ", expected " +
                            std::to_string(dims) + " dimensions");
    }
    return *t;
  };
  const Tensor& base = need("base.block.1.weight", 4);     // (8f, E, 3, 3)
  const Tensor& out = need("out_conv.weight", 4);          // (C, f, 1, 1)
  UnetrConfig c;
  c.embed_dim = base.size(1);
  c.initial_features = out.size(1);
  c.num_classes = out.size(0);
  if (c.embed_dim < 1 || c.num_classes < 1 || c.initial_features < 1 || base.size(0) != 8 * c.initial_features) {
    throw CheckpointError(where + ": 'base.block.1.weight' " + shape_str(base.sizes()) + " and 'out_conv.weight' " +
                          shape_str(out.sizes()) +
                          " do not describe a UNETR decoder (features 8f/4f/2f/f, here f = " +
                          std::to_string(c.initial_features) + ")");
  }
  for (const auto& [n, t] : tensors) {
    if (starts_with(n, "decoder.samplers.") && n.find(".block.") != std::string::npos) c.conv_transpose = true;
  }
  return c;
}

Unetr unetr_from_tensors(const NamedTensors& tensors, const std::string& source) {
  const UnetrConfig c = unetr_config_from_tensors(tensors, source);
  Unetr head(c);
  copy_state_strict(unetr_state_dict(*head), tensors,
                    "'" + source + "' semantic head (decoder_state) does not fit a " + c.describe());
  head->eval();
  return head;
}

NamedTensors read_unetr_tensors(const std::string& path, bool decoder_file) {
  auto ck = checkpoint::read_sam_checkpoint(path);
  NamedTensors out;
  if (!ck.decoder_state.empty()) {
    for (auto& nt : ck.decoder_state) out.emplace_back(nt.name, nt.tensor);
    return out;
  }
  const std::string prefix = kDecoderStatePrefix;
  for (auto& nt : ck.model_state)
    if (starts_with(nt.name, prefix)) out.emplace_back(nt.name.substr(prefix.size()), nt.tensor);
  if (out.empty() && decoder_file)
    for (auto& nt : ck.model_state) out.emplace_back(nt.name, nt.tensor);
  return out;
}

void save_unetr(const std::string& path, UnetrImpl& head) {
  checkpoint::StateDict sd;
  for (const auto& [name, t] : unetr_state_dict(head))
    sd.push_back({name, t.detach().to(torch::kCPU).contiguous()});
  if (weights_format_for(path) == WeightsFormat::kSafetensors) {
    checkpoint::write_safetensors(path, sd,
                                  {{"format", "pt"},
                                   {"medicosam.semantic_classes", std::to_string(head.config.num_classes)}});
  } else {
    checkpoint::write_state_dict_pth(path, sd);
  }
}

Tensor semantic_loss(const Tensor& logits, const Tensor& labels, double dice_weight, double ce_weight) {
  TORCH_CHECK(logits.dim() == 4 && labels.dim() == 3 && logits.size(0) == labels.size(0) &&
                  logits.size(2) == labels.size(1) && logits.size(3) == labels.size(2),
              "semantic_loss: logits (B,C,H,W) and labels (B,H,W) do not match");
  const int64_t C = logits.size(1);
  Tensor p, t, ce;
  if (C == 1) {
    t = (labels > 0).to(logits.dtype()).unsqueeze(1);
    p = torch::sigmoid(logits);
    ce = F::binary_cross_entropy_with_logits(logits, t);
  } else {
    p = torch::softmax(logits, 1);
    t = F::one_hot(labels.to(torch::kLong), C).permute({0, 3, 1, 2}).to(logits.dtype());
    ce = F::cross_entropy(logits, labels.to(torch::kLong));
  }
  // (C, B*H*W): every class over the whole batch, as torch_em's flatten_samples.
  const auto pf = p.transpose(0, 1).reshape({C, -1}), tf = t.transpose(0, 1).reshape({C, -1});
  const auto num = (pf * tf).sum(-1);
  const auto den = ((pf * pf).sum(-1) + (tf * tf).sum(-1)).clamp_min(1e-7);
  const auto dice = 1 - (2 * num / den).mean();
  return dice_weight * dice + ce_weight * ce;
}

// ------------------------------------------------------------- SemanticHead

struct SemanticHead::Impl {
  Unetr head{nullptr};
  torch::Device device{torch::kCPU};
  std::string source;
  bool channels_last = false;
};

SemanticHead::SemanticHead() = default;
SemanticHead::~SemanticHead() = default;
SemanticHead::SemanticHead(SemanticHead&&) noexcept = default;
SemanticHead& SemanticHead::operator=(SemanticHead&&) noexcept = default;

SemanticHead SemanticHead::load(const std::string& checkpoint, const std::string& decoder_file,
                                const std::string& device) {
  const std::string path = decoder_file.empty() ? checkpoint : decoder_file;
  const auto tensors = read_unetr_tensors(path, !decoder_file.empty());
  if (tensors.empty()) {
    throw CheckpointError("'" + path +
                          "' has no semantic segmentation head (no 'decoder_state' entry and no '" +
                          std::string(kDecoderStatePrefix) +
                          "*' keys); use a checkpoint trained with one or pass its decoder file");
  }
  SemanticHead h;
  h.impl_ = std::make_unique<Impl>();
  h.impl_->head = unetr_from_tensors(tensors, path);
  h.impl_->device = torch::Device(device);
  h.impl_->head->to(h.impl_->device);
  // Channels-last convolutions: with the released feature sizes (f = 64) oneDNN
  // runs the high-resolution 3x3 convolutions of the last stages faster that
  // way (whole head 1.4x on a 2-core CPU); tiny heads stay in plain layout.
  h.impl_->channels_last = h.impl_->head->config.initial_features >= 32;
  torch::NoGradGuard ng;
  if (h.impl_->channels_last) {
    for (auto& p : h.impl_->head->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  h.impl_->source = path;
  return h;
}

const UnetrConfig& SemanticHead::config() const { return impl_->head->config; }
const std::string& SemanticHead::source() const { return impl_->source; }

namespace {

Tensor run_head(const SemanticHead::Impl& impl, const NpyArray& features, int input_h, int input_w,
                int original_h, int original_w, int img_size) {
  const auto& c = impl.head->config;
  if (features.shape.size() != 4 || features.shape[0] != 1 || features.shape[1] != c.embed_dim ||
      features.shape[2] != features.shape[3] || features.shape[2] < 1) {
    throw InputError("image embedding " + features.shape_string() + " does not fit the semantic head, which reads (1, " +
                     std::to_string(c.embed_dim) + ", g, g)");
  }
  if (features.type != NpyType::kFloat32 && features.type != NpyType::kFloat16)
    throw InputError(std::string("image embedding must be float32 or float16, got ") + npy_type_name(features.type));
  const int64_t out_side = features.shape[2] * UnetrConfig::kUpscale;
  const int64_t side = img_size > 0 ? img_size : out_side;
  if (input_h < 1 || input_w < 1 || input_h > side || input_w > side || original_h < 1 || original_w < 1) {
    throw InputError("semantic head: image sizes (input " + std::to_string(input_h) + "x" + std::to_string(input_w) +
                     ", original " + std::to_string(original_h) + "x" + std::to_string(original_w) +
                     ") do not fit a " + std::to_string(side) + " model input");
  }
  const auto dtype = features.type == NpyType::kFloat32 ? torch::kFloat32 : torch::kFloat16;
  auto x = torch::from_blob(const_cast<uint8_t*>(features.data.data()), features.shape, dtype)
               .to(impl.device, torch::kFloat32)
               .contiguous(impl.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  Unetr head = impl.head;  // shares the module; forward is not const
  auto logits = head->forward(x);
  return UnetrImpl::postprocess(logits, side, input_h, input_w, original_h, original_w)[0];
}

}  // namespace

std::vector<uint16_t> SemanticHead::segment(const NpyArray& features, int input_h, int input_w, int original_h,
                                            int original_w, int img_size) const {
  torch::InferenceMode guard;
  const auto logits = run_head(*impl_, features, input_h, input_w, original_h, original_w, img_size);
  const auto labels = (logits.size(0) == 1 ? (logits[0] > 0) : logits.argmax(0))
                          .to(torch::kCPU, torch::kInt32)
                          .contiguous();
  const int32_t* p = labels.data_ptr<int32_t>();
  return std::vector<uint16_t>(p, p + labels.numel());
}

NpyArray SemanticHead::logits(const NpyArray& features, int input_h, int input_w, int original_h, int original_w,
                              int img_size) const {
  torch::InferenceMode guard;
  const auto l = run_head(*impl_, features, input_h, input_w, original_h, original_w, img_size)
                     .to(torch::kCPU, torch::kFloat32)
                     .contiguous();
  return make_npy(NpyType::kFloat32, l.sizes().vec(), l.data_ptr<float>());
}

}  // namespace medicosam::model
