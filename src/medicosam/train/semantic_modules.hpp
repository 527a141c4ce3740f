#pragma once
// The modules of a semantic model as the trainer and SemanticNet use them:
// SAM (its image encoder) + UNETR head, or the U-Net. Internal (torch).
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "medicosam/model/sam.hpp"
#include "medicosam/model/unet.hpp"
#include "medicosam/model/unetr_module.hpp"

namespace medicosam::train {

struct SemanticModules {
  model::Sam sam{nullptr};
  model::Unetr head{nullptr};
  model::Unet2d unet{nullptr};

  bool is_unet() const { return static_cast<bool>(unet); }
  int input_size() const;
  int num_classes() const;
  // uint8 images (B, 3, S, S), S = input_size() -> logits (B, C, S, S).
  torch::Tensor forward(const torch::Tensor& images_u8);
  void set_train(bool on);
  void to(const torch::Device& dev);
  // "SAM vit_b encoder (1024 px) + UNETR decoder, ..." or the U-Net's description.
  std::string describe() const;
};

// Labels (H, W) int64 from logits (C, H, W): argmax, or logit > 0 for one class.
torch::Tensor logits_to_labels(const torch::Tensor& logits);

}  // namespace medicosam::train
