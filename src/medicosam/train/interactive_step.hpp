#pragma once
// The interactive objective's training step and validation (trainer.cpp),
// exposed so the joint objective (semantic_trainer.cpp, micro_sam's
// JointSamTrainer) runs exactly the same interactive step before its
// semantic one.
#include <torch/torch.h>

#include <array>
#include <vector>

#include "medicosam/model/sam.hpp"
#include "medicosam/train/batches.hpp"
#include "medicosam/train/config.hpp"

namespace medicosam::train {

struct StepStats {
  double loss = 0, mask_loss = 0, iou_loss = 0;
};

// The batch's images as uint8 (B, 3, S, S) on `dev`.
torch::Tensor images_tensor(const std::vector<ModelInput>& images, const torch::Device& dev);

// One interactive step's loss over this process's part of the batch (the
// encoder runs once, then c.sub_iterations rounds of prompting), normalised by
// the global batch size. Fills `stats`.
torch::Tensor step_loss(model::SamImpl& sam, const Batch& b, const TrainConfig& c, int global_batch,
                        int first_slot, const torch::Device& dev, StepStats& stats);

struct ValResult {
  double metric = 1.0;           // 1 - mean Dice over all objects and modes (lower is better)
  std::array<double, 4> dice{};  // point, box, points, box + points
};

struct ValItem {
  ModelInput input;
  std::vector<segment::BinaryMask> objects;
  int mode = 0;
};

// Up to c.val_images images of c.val_data (round-robin over the datasets),
// each with its objects and one of the four prompt modes.
std::vector<ValItem> make_validation_set(const TrainConfig& c, int size);
ValResult validate(model::SamImpl& sam, const std::vector<ValItem>& items, const TrainConfig& c,
                   const torch::Device& dev);

}  // namespace medicosam::train
