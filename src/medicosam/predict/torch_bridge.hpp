#pragma once
// Internal: the torch-side definitions behind the predictor's pimpl types, for
// code in this library (and segment/, train/) that works on tensors directly.
#include <torch/torch.h>

#include "medicosam/predict/predictor.hpp"

namespace medicosam::predict {

struct Embedding::Impl {
  torch::Tensor features;  // (1, C, g, g) float32 on the model's device
  Size2 original;
  Size2 input;
};

}  // namespace medicosam::predict
