#include "medicosam/predict/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <thread>
#include <tuple>

#include "medicosam/core/error.hpp"
#include "medicosam/model/allocator.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/predict/torch_bridge.hpp"

namespace medicosam::predict {
using torch::Tensor;

// ------------------------------------------------------------------ Prediction

int Prediction::best() const {
  return static_cast<int>(std::max_element(iou_predictions.begin(), iou_predictions.end()) - iou_predictions.begin());
}

std::vector<uint8_t> Prediction::mask(int i) const {
  const size_t n = static_cast<size_t>(height) * width;
  return std::vector<uint8_t>(masks.begin() + i * n, masks.begin() + (i + 1) * n);
}

std::vector<float> Prediction::low_res(int i) const {
  const size_t n = static_cast<size_t>(low_res_size) * low_res_size;
  return std::vector<float>(low_res_logits.begin() + i * n, low_res_logits.begin() + (i + 1) * n);
}

// ------------------------------------------------------------------- Embedding

Embedding::Embedding() = default;
Embedding::~Embedding() = default;
Embedding::Embedding(const Embedding&) = default;
Embedding& Embedding::operator=(const Embedding&) = default;
Embedding::Embedding(Embedding&&) noexcept = default;
Embedding& Embedding::operator=(Embedding&&) noexcept = default;

bool Embedding::empty() const { return !impl || !impl->features.defined(); }
Size2 Embedding::original_size() const { return impl ? impl->original : Size2{}; }
Size2 Embedding::input_size() const { return impl ? impl->input : Size2{}; }
std::vector<int64_t> Embedding::shape() const { return empty() ? std::vector<int64_t>{} : impl->features.sizes().vec(); }

NpyArray Embedding::to_npy() const {
  if (empty()) throw Error("no image embedding has been computed");
  auto t = impl->features.to(torch::kCPU, torch::kFloat32).contiguous();
  return make_npy(NpyType::kFloat32, t.sizes().vec(), t.data_ptr<float>());
}

Embedding Embedding::from_npy(const NpyArray& a, Size2 original, Size2 input) {
  if (a.shape.size() != 4 || a.shape[0] != 1) {
    throw InputError("image embedding must have shape (1, C, g, g), got " + a.shape_string());
  }
  if (a.type != NpyType::kFloat32 && a.type != NpyType::kFloat16) {
    throw InputError(std::string("image embedding must be float32 or float16, got ") + npy_type_name(a.type));
  }
  auto impl = std::make_shared<Impl>();
  const auto dtype = a.type == NpyType::kFloat32 ? torch::kFloat32 : torch::kFloat16;
  impl->features = torch::from_blob(const_cast<uint8_t*>(a.data.data()), a.shape, dtype)
                       .to(torch::kFloat32)
                       .clone(at::MemoryFormat::ChannelsLast);  // owns its data; layout: see encode()
  impl->original = original;
  impl->input = input;
  Embedding e;
  e.impl = impl;
  return e;
}

// ------------------------------------------------------------------- Predictor

struct SamPredictor::Impl {
  model::LoadedSam loaded;
  torch::Device device{torch::kCPU};
  ModelSummary summary;
  Embedding current;
  // Prompt-independent decoder input, computed once at load so that decoding
  // reads no lazily filled cache (several threads may decode at once).
  Tensor dense_pe;
};

namespace {

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw InputError("device '" + name + "' requested but this libtorch has no usable CUDA device; use --device cpu");
    }
    return torch::Device(name);
  }
  throw InputError("unknown device '" + name + "' (expected cpu or cuda)");
}

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

void validate_prompt(const Prompt& p, Size2 size, int low_res, size_t index) {
  const std::string where = index == 0 ? std::string() : "prompt " + std::to_string(index) + ": ";
  if (p.empty()) throw InputError(where + "no points, box or mask given");
  const double W = size.width, H = size.height;
  for (const auto& pt : p.points) {
    if (!std::isfinite(pt.x) || !std::isfinite(pt.y) || pt.x < 0 || pt.y < 0 || pt.x > W || pt.y > H) {
      throw InputError(where + "point (" + fmt(pt.x) + "," + fmt(pt.y) + ") lies outside the " +
                       std::to_string(size.width) + "x" + std::to_string(size.height) + " image");
    }
    if (pt.label != 0 && pt.label != 1) {
      throw InputError(where + "point label " + std::to_string(pt.label) + " is not 1 (object) or 0 (background)");
    }
  }
  if (p.box) {
    const auto& b = *p.box;
    for (double v : {b.x0, b.y0, b.x1, b.y1}) {
      if (!std::isfinite(v)) throw InputError(where + "box has a non-finite coordinate");
    }
    if (b.x0 < 0 || b.y0 < 0 || b.x1 > W || b.y1 > H) {
      throw InputError(where + "box (" + fmt(b.x0) + "," + fmt(b.y0) + "," + fmt(b.x1) + "," + fmt(b.y1) +
                       ") extends outside the " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                       " image");
    }
    if (b.x1 < b.x0 || b.y1 < b.y0) {
      throw InputError(where + "box (" + fmt(b.x0) + "," + fmt(b.y0) + "," + fmt(b.x1) + "," + fmt(b.y1) +
                       ") has x1 < x0 or y1 < y0");
    }
  }
  if (low_res > 0 && p.mask_input && p.mask_input->size() != static_cast<size_t>(low_res) * low_res) {
    throw InputError(where + "mask input has " + std::to_string(p.mask_input->size()) + " values, expected " +
                     std::to_string(low_res) + "x" + std::to_string(low_res));
  }
}

SamPredictor::SamPredictor(const std::string& checkpoint, const PredictorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  const int threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(threads);
  impl_->device = parse_device(options.device);
  const auto precision = model::resolve_precision(options.precision, impl_->device.is_cuda());
  model::retain_freed_memory();
  impl_->loaded = model::load_sam(checkpoint, impl_->device);
  impl_->loaded.sam->image_encoder->set_precision(precision);
  impl_->loaded.sam->mask_decoder->set_precision(precision);
  {
    torch::InferenceMode guard;
    // Laid out channels-last, so the decoder's token-major view of it is a view.
    const auto pe = impl_->loaded.sam->prompt_encoder->dense_pe();
    impl_->dense_pe = pe.flatten(2).transpose(1, 2).contiguous().transpose(1, 2).view(pe.sizes());
  }
  const auto& c = impl_->loaded.sam->config;
  auto& s = impl_->summary;
  s.path = checkpoint;
  s.format = impl_->loaded.format;
  s.layout = impl_->loaded.layout;
  s.architecture = c.architecture_name();
  s.parameters = impl_->loaded.num_parameters;
  s.img_size = static_cast<int>(c.encoder.img_size);
  s.embedding_size = static_cast<int>(c.image_embedding_size());
  s.embedding_channels = static_cast<int>(c.encoder.out_chans);
  s.low_res_size = static_cast<int>(c.low_res_size());
  s.precision = model::precision_name(precision);
}

SamPredictor::~SamPredictor() = default;
SamPredictor::SamPredictor(SamPredictor&&) noexcept = default;
SamPredictor& SamPredictor::operator=(SamPredictor&&) noexcept = default;

const ModelSummary& SamPredictor::model() const { return impl_->summary; }

Embedding SamPredictor::encode(const uint8_t* pixels, int height, int width, int channels) const {
  if (!pixels || height <= 0 || width <= 0) throw InputError("cannot encode an empty image");
  if (channels != 1 && channels != 3) {
    throw InputError("image must have 1 (gray) or 3 (RGB) channels, got " + std::to_string(channels));
  }
  auto& sam = *impl_->loaded.sam;
  const Size2 input = preprocess_shape(height, width, static_cast<int>(sam.config.encoder.img_size));
  auto resized = resize_bilinear_pil(pixels, height, width, channels, input.height, input.width);
  torch::InferenceMode guard;
  auto t = torch::from_blob(resized.data(), {input.height, input.width, channels}, torch::kUInt8)
               .permute({2, 0, 1})
               .unsqueeze(0);
  if (channels == 1) t = t.expand({1, 3, input.height, input.width});
  auto features = sam.image_encoder->forward(sam.preprocess(t));
  auto impl = std::make_shared<Embedding::Impl>();
  // Channels-last: the decoder reads the embedding token-major (one row of C
  // values per pixel), which is then a view instead of a transposing copy on
  // every click. Same values; to_npy gives the usual (1, C, g, g) layout.
  impl->features = features.contiguous(at::MemoryFormat::ChannelsLast);
  impl->original = {height, width};
  impl->input = input;
  Embedding e;
  e.impl = impl;
  return e;
}

void SamPredictor::set_image(const uint8_t* pixels, int height, int width, int channels) {
  impl_->current = encode(pixels, height, width, channels);
}

void SamPredictor::check_embedding(const Embedding& e) const {
  if (e.empty()) throw InputError("empty image embedding");
  const auto& s = impl_->summary;
  const auto shape = e.shape();
  if (shape[1] != s.embedding_channels || shape[2] != s.embedding_size || shape[3] != s.embedding_size) {
    std::ostringstream msg;
    msg << "image embedding of shape (1," << shape[1] << "," << shape[2] << "," << shape[3]
        << ") does not fit model '" << s.path << "' which makes (1," << s.embedding_channels << ","
        << s.embedding_size << "," << s.embedding_size << ")";
    throw InputError(msg.str());
  }
  const auto in = preprocess_shape(e.original_size().height, e.original_size().width, s.img_size);
  if (!(in == e.input_size())) throw InputError("image embedding: input size does not match its original size");
}

void SamPredictor::set_embedding(const Embedding& e) {
  check_embedding(e);
  Embedding moved = e;
  if (e.impl->features.device() != impl_->device) {
    auto impl = std::make_shared<Embedding::Impl>(*e.impl);
    impl->features = impl->features.to(impl_->device);
    moved.impl = impl;
  }
  impl_->current = moved;
}

const Embedding& SamPredictor::embedding() const { return impl_->current; }

Prediction SamPredictor::predict(const Prompt& prompt, bool multimask_output, bool want_logits) const {
  return predict_batch({prompt}, multimask_output, want_logits).front();
}

std::vector<Prediction> SamPredictor::predict_batch(const std::vector<Prompt>& prompts, bool multimask_output,
                                                    bool want_logits) const {
  if (impl_->current.empty()) throw Error("no image set: call set_image or set_embedding before predict");
  return predict_batch(impl_->current, prompts, multimask_output, want_logits);
}

std::vector<Prediction> SamPredictor::predict_batch(const Embedding& embedding, const std::vector<Prompt>& prompts,
                                                    bool multimask_output, bool want_logits) const {
  if (prompts.empty()) throw InputError("no prompt given");
  if (&embedding != &impl_->current) check_embedding(embedding);
  return decode(std::vector<const Embedding*>(prompts.size(), &embedding), prompts, multimask_output, want_logits);
}

std::vector<Prediction> SamPredictor::predict_each(const std::vector<Embedding>& embeddings,
                                                   const std::vector<Prompt>& prompts, bool multimask_output,
                                                   bool want_logits) const {
  if (prompts.empty()) throw InputError("no prompt given");
  if (embeddings.size() != prompts.size()) {
    throw InputError(std::to_string(prompts.size()) + " prompts for " + std::to_string(embeddings.size()) +
                     " image embeddings (one each expected)");
  }
  std::vector<const Embedding*> per_prompt;
  for (const auto& e : embeddings) {
    check_embedding(e);
    if (!(e.original_size() == embeddings.front().original_size())) {
      throw InputError("embeddings of one batch must share their image size (" +
                       std::to_string(e.original_size().width) + "x" + std::to_string(e.original_size().height) +
                       " vs " + std::to_string(embeddings.front().original_size().width) + "x" +
                       std::to_string(embeddings.front().original_size().height) + ")");
    }
    per_prompt.push_back(&e);
  }
  return decode(per_prompt, prompts, multimask_output, want_logits);
}

std::vector<Prediction> SamPredictor::decode(const std::vector<const Embedding*>& embeddings,
                                             const std::vector<Prompt>& prompts, bool multimask_output,
                                             bool want_logits) const {
  const auto& emb = *embeddings.front()->impl;  // geometry shared by all (checked by the callers)
  // An embedding computed on another device (a cache on disk is CPU) is moved for this call.
  auto features_of = [&](const Embedding* e) {
    const auto& f = e->impl->features;
    return f.device() == impl_->device ? f : f.to(impl_->device);
  };
  const int L = impl_->summary.low_res_size;
  for (size_t i = 0; i < prompts.size(); ++i) validate_prompt(prompts[i], emb.original, L, prompts.size() > 1 ? i + 1 : 0);

  // Group prompts of the same structure so each group is one decoder call.
  std::map<std::tuple<size_t, bool, bool>, std::vector<size_t>> groups;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    groups[{p.points.size(), p.box.has_value(), p.mask_input.has_value()}].push_back(i);
  }

  auto& sam = *impl_->loaded.sam;
  const CoordTransform tf{emb.original, emb.input};
  const int H = emb.original.height, W = emb.original.width;
  std::vector<Prediction> out(prompts.size());
  torch::InferenceMode guard;
  for (const auto& [key, idx] : groups) {
    const auto [npoints, has_box, has_mask] = key;
    const int64_t B = static_cast<int64_t>(idx.size());
    Tensor coords, labels, boxes, masks;
    if (npoints > 0) {
      std::vector<float> c;
      std::vector<int64_t> l;
      for (size_t i : idx) {
        for (const auto& pt : prompts[i].points) {
          c.push_back(tf.x(pt.x));
          c.push_back(tf.y(pt.y));
          l.push_back(pt.label);
        }
      }
      coords = torch::tensor(c).view({B, static_cast<int64_t>(npoints), 2}).to(impl_->device);
      labels = torch::tensor(l).view({B, static_cast<int64_t>(npoints)}).to(impl_->device);
    }
    if (has_box) {
      std::vector<float> b;
      for (size_t i : idx) {
        const auto& bx = *prompts[i].box;
        b.insert(b.end(), {tf.x(bx.x0), tf.y(bx.y0), tf.x(bx.x1), tf.y(bx.y1)});
      }
      boxes = torch::tensor(b).view({B, 4}).to(impl_->device);
    }
    if (has_mask) {
      std::vector<float> m;
      m.reserve(static_cast<size_t>(B) * L * L);
      for (size_t i : idx) m.insert(m.end(), prompts[i].mask_input->begin(), prompts[i].mask_input->end());
      masks = torch::tensor(m).view({B, 1, L, L}).to(impl_->device);
    }
    // One image shared by the whole group (broadcast by the decoder), or one per prompt.
    const bool one_image = std::all_of(idx.begin(), idx.end(), [&](size_t i) {
      return embeddings[i]->impl == embeddings[idx.front()]->impl;
    });
    Tensor features;
    if (one_image) {
      features = features_of(embeddings[idx.front()]);
    } else {
      std::vector<Tensor> f;
      for (size_t i : idx) f.push_back(features_of(embeddings[i]));
      features = torch::cat(f, 0);
    }
    auto [sparse, dense] = sam.prompt_encoder->forward(coords, labels, boxes, masks);
    auto [low_res, iou] = sam.mask_decoder->forward(features, impl_->dense_pe, sparse, dense,
                                                    multimask_output);
    auto hires = sam.postprocess_masks(low_res, emb.input.height, emb.input.width, H, W);
    auto binary = (hires > sam.config.mask_threshold).to(torch::kUInt8).cpu().contiguous();
    auto low_cpu = low_res.to(torch::kCPU, torch::kFloat32).contiguous();
    auto iou_cpu = iou.to(torch::kCPU, torch::kFloat32).contiguous();
    Tensor hires_cpu;
    if (want_logits) hires_cpu = hires.to(torch::kCPU, torch::kFloat32).contiguous();
    const int C = static_cast<int>(low_res.size(1));
    const size_t hw = static_cast<size_t>(H) * W, ll = static_cast<size_t>(L) * L;
    for (int64_t j = 0; j < B; ++j) {
      auto& p = out[idx[j]];
      p.height = H;
      p.width = W;
      p.num_masks = C;
      p.low_res_size = L;
      const uint8_t* mb = binary.data_ptr<uint8_t>() + j * C * hw;
      p.masks.assign(mb, mb + C * hw);
      const float* lb = low_cpu.data_ptr<float>() + j * C * ll;
      p.low_res_logits.assign(lb, lb + C * ll);
      const float* ib = iou_cpu.data_ptr<float>() + j * C;
      p.iou_predictions.assign(ib, ib + C);
      if (want_logits) {
        const float* hb = hires_cpu.data_ptr<float>() + j * C * hw;
        p.logits.assign(hb, hb + C * hw);
      }
    }
  }
  return out;
}

}  // namespace medicosam::predict
