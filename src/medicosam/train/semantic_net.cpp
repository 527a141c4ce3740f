// Semantic models for inference (semantic_net.hpp) and the shared forward
// pass of SAM encoder + UNETR head / U-Net (semantic_modules.hpp).
#include "medicosam/train/semantic_net.hpp"

#include <cstring>

#include "medicosam/core/error.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/train/augment.hpp"
#include "medicosam/train/semantic_modules.hpp"

namespace medicosam::train {
namespace F = torch::nn::functional;
using torch::Tensor;

int SemanticModules::input_size() const {
  return static_cast<int>(unet ? unet->config.input_size : sam->config.encoder.img_size);
}

int SemanticModules::num_classes() const {
  return static_cast<int>(unet ? unet->config.num_classes : head->config.num_classes);
}

Tensor SemanticModules::forward(const Tensor& images_u8) {
  if (unet) return unet->forward(model::unet_normalize(images_u8));
  auto logits = head->forward(sam->image_encoder->forward(sam->preprocess(images_u8)));
  const int64_t S = input_size();
  if (logits.size(2) != S || logits.size(3) != S) {
    logits = F::interpolate(logits, F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{S, S})
                                        .mode(torch::kBilinear)
                                        .align_corners(false));
  }
  return logits;
}

void SemanticModules::set_train(bool on) {
  if (unet) {
    unet->train(on);
  } else {
    sam->train(on);
    head->train(on);
  }
}

void SemanticModules::to(const torch::Device& dev) {
  if (unet) {
    unet->to(dev);
  } else {
    sam->to(dev);
    head->to(dev);
  }
}

std::string SemanticModules::describe() const {
  if (unet) return unet->config.describe();
  return "SAM " + sam->config.architecture_name() + " encoder (" + std::to_string(input_size()) +
         " px) + " + head->config.describe();
}

Tensor logits_to_labels(const Tensor& logits) {
  return logits.size(0) == 1 ? (logits[0] > 0).to(torch::kLong) : logits.argmax(0);
}

struct SemanticNet::Impl {
  SemanticModules m;
  torch::Device device{torch::kCPU};
};

SemanticNet::SemanticNet() = default;
SemanticNet::~SemanticNet() = default;
SemanticNet::SemanticNet(SemanticNet&&) noexcept = default;
SemanticNet& SemanticNet::operator=(SemanticNet&&) noexcept = default;

SemanticNet SemanticNet::load(const std::string& path, const std::string& decoder_file,
                              const std::string& device, int threads) {
  if (threads > 0) at::set_num_threads(threads);
  SemanticNet n;
  n.impl_ = std::make_unique<Impl>();
  n.impl_->device = torch::Device(device);
  auto& m = n.impl_->m;
  if (decoder_file.empty() && model::is_unet_file(path)) {
    m.unet = model::load_unet(path, n.impl_->device);
    return n;
  }
  auto loaded = model::load_sam(path, torch::kCPU);
  const auto tensors =
      decoder_file.empty() ? loaded.decoder_state : model::read_unetr_tensors(decoder_file, true);
  if (tensors.empty()) {
    throw CheckpointError("'" + (decoder_file.empty() ? path : decoder_file) +
                          "' has no semantic segmentation head (no decoder_state) and is not a "
                          "medicosam U-Net");
  }
  m.sam = loaded.sam;
  m.head = model::unetr_from_tensors(tensors, decoder_file.empty() ? path : decoder_file);
  if (m.head->config.embed_dim != m.sam->config.encoder.out_chans) {
    throw InputError("the semantic head of '" + (decoder_file.empty() ? path : decoder_file) +
                     "' reads " + std::to_string(m.head->config.embed_dim) +
                     "-channel embeddings, but the encoder of '" + path + "' makes " +
                     std::to_string(m.sam->config.encoder.out_chans));
  }
  m.to(n.impl_->device);
  m.set_train(false);
  return n;
}

int SemanticNet::num_classes() const { return impl_->m.num_classes(); }
int SemanticNet::input_size() const { return impl_->m.input_size(); }
std::string SemanticNet::describe() const { return impl_->m.describe(); }
bool SemanticNet::is_unet() const { return impl_->m.is_unet(); }

std::vector<uint16_t> SemanticNet::segment(const uint8_t* rgb, int height, int width) const {
  if (height < 1 || width < 1) throw InputError("semantic segmentation of an empty image");
  TrainSample s;
  s.height = height;
  s.width = width;
  s.image.assign(rgb, rgb + static_cast<size_t>(height) * width * 3);
  s.instances.assign(static_cast<size_t>(height) * width, 0);
  const int S = input_size();
  const auto in = to_model_input(s, S);
  torch::InferenceMode guard;
  auto x = torch::from_blob(const_cast<uint8_t*>(in.image.data()), {1, S, S, 3}, torch::kUInt8)
               .permute({0, 3, 1, 2})
               .to(impl_->device);
  auto logits = impl_->m.forward(x);
  logits = model::UnetrImpl::postprocess(logits, S, in.height, in.width, height, width)[0];
  const auto labels = logits_to_labels(logits).to(torch::kCPU, torch::kInt32).contiguous();
  const int32_t* p = labels.data_ptr<int32_t>();
  return std::vector<uint16_t>(p, p + labels.numel());
}

}  // namespace medicosam::train
