#pragma once
// Fine-tuning SAM with simulated interactive sessions: the MedicoSAM / micro_sam
// recipe (REFERENCE.md §1.4, §2.6, §2.7). Per step: the image encoder runs once
// on the batch; then n sub-iterations decode all objects, starting from one
// positive point (multimask, even steps) or a distorted box (odd steps), each
// later round adding one positive click from the false negatives and one
// negative click from the false positives, optionally feeding the previous
// logits back as mask input. Loss = Dice (minimum over the output masks) +
// MSE of the IoU prediction, averaged over sub-iterations; one AdamW step.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "medicosam/model/sam_config.hpp"
#include "medicosam/train/config.hpp"

namespace medicosam::train {

struct TrainSummary {
  int64_t iterations_done = 0;  // total optimizer steps in the run (including resumed ones)
  double best_metric = 0;       // lowest validation metric (1 - mean Dice)
  int64_t best_iteration = 0;
  double seconds = 0;            // wall time of this process's run
  double data_wait_seconds = 0;  // time the model waited for data
  bool stopped_early = false;    // stop_after reached
  std::string best_checkpoint, latest_checkpoint;
};

// Runs (or resumes) training as described by `config`. Writes into out_dir:
// latest.pt / best.pt (torch.save-compatible {"model_state", "optimizer_state",
// "iteration", "epoch", "best_metric", ...}), best.safetensors (fp32 weights +
// config metadata), train_log.csv (per step), validation.csv, config.json,
// loss.png and validation.png.
TrainSummary run_training(const TrainConfig& config);

// SamConfig for training from scratch. Keys (all optional, defaults = SAM ViT-B):
// "preset" (vit_b | vit_l | vit_h), "img_size", "patch_size", "embed_dim",
// "depth", "num_heads", "mlp_ratio", "window_size", "global_attn_indexes",
// "out_chans" (= prompt / decoder width), "decoder_depth", "decoder_heads",
// "decoder_mlp_dim", "mask_in_chans", "iou_head_hidden_dim".
model::SamConfig architecture_config(const nlohmann::json& a);

}  // namespace medicosam::train
