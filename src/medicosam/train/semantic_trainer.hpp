#pragma once
// Semantic and joint training (TrainConfig::objective "semantic" / "joint"),
// reached through run_training().
//
// semantic: per step, the batch's images (resized and padded to the model's
// input square, as for interactive training) go through SAM's image encoder
// and the UNETR head (or through the U-Net baseline); the loss is MedicoSAM's
// CustomCombinedLoss (model::semantic_loss: dice_weight x Dice over the
// classes + ce_weight x cross-entropy) against the class maps; one AdamW step.
//
// joint (micro_sam JointSamTrainer): per step, first the interactive step of
// the interactive objective (prompt simulation, Dice + IoU loss, AdamW step on
// SAM), then on the same batch the semantic loss of the UNETR head and a
// second AdamW step; the encoder learns from both. Validation metric: the
// interactive metric + semantic metric / 3, as micro_sam's.
//
// Everything else is shared with interactive training: the data loading and
// augmentation (class maps follow the images), AdamW and the learning-rate
// schedule, data parallelism, progress with ETA, the logs, resume from
// latest.pt, best.pt by validation. Checkpoints: UNETR runs write micro_sam's
// layout {"model_state": sam.*, "decoder_state": head, "optimizer_state", ...}
// (`medicosam semantic` and `info` read the head) and best/latest.safetensors
// with the head under "decoder_state."; U-Net runs write {"unet_state",
// "unet_config", ...} and best/latest.safetensors (model/unet.hpp).
#include "medicosam/train/trainer.hpp"

namespace medicosam::train {

TrainSummary run_semantic_training(const TrainConfig& config);

}  // namespace medicosam::train
