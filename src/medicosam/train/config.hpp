#pragma once
// Training configuration: everything a run depends on, read from JSON
// (`medicosam train --config train.json`), overridable by flags, and stored in
// every checkpoint so a run can be reproduced and resumed.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medicosam/train/augment.hpp"
#include "medicosam/train/datasets.hpp"

namespace medicosam::train {

// The semantic objective's model and loss ("semantic": {...} in the config).
struct SemanticOptions {
  // "unetr": SAM's image encoder + the UNETR head (REFERENCE §2.10) on its
  // neck output; "unet": a plain 2D U-Net on the image (the baseline).
  std::string model = "unetr";
  int num_classes = 2;  // classes including the background (1: one sigmoid channel)
  // UNETR: initial features f (decoder 8f/4f/2f/f; released models 64).
  // U-Net: features of the first level (doubled per level).
  int features = 64;
  int depth = 4;           // U-Net levels (downsamplings)
  int input_size = 256;    // U-Net input side (UNETR: the SAM's img_size)
  bool conv_transpose = false;  // UNETR upsampling by ConvTranspose2d
  double dice_weight = 0.5;     // MedicoSAM's CustomCombinedLoss: 0.5 Dice + 0.5 CE
  double ce_weight = 0.5;
  // A checkpoint (or decoder file) whose UNETR head initialises ours; every
  // tensor whose shape fits is copied (out_conv differs when the class counts
  // do), as MedicoSAM's "_Dec" variants do.
  std::string decoder_init;

  static SemanticOptions from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

struct TrainConfig {
  // What is trained: "interactive" (SAM with simulated prompting, the default),
  // "semantic" (a segmentation head on the image encoder, or a U-Net, on
  // class maps) or "joint" (micro_sam's JointSamTrainer: an interactive step,
  // then a semantic step on the same batch; the encoder learns from both).
  std::string objective = "interactive";
  SemanticOptions semantic;

  // Model: fine-tune `init` (any checkpoint the loader reads), or train from
  // scratch with `architecture` (see architecture_config()).
  std::string init;
  nlohmann::json architecture;

  std::vector<DatasetSpec> train_data;
  std::vector<DatasetSpec> val_data;
  AugmentOptions augment;

  // The MedicoSAM / micro_sam recipe.
  int batch_size = 4;  // images per optimizer step (global, over all processes)
  int objects_per_image = 5;
  int sub_iterations = 8;         // 1 start prompt + (n-1) rounds of corrective clicks
  double mask_prob = 0.5;         // probability of feeding previous logits back as mask input
  double box_distortion = 0.025;  // box sides move outward by U(0, f) * side length
  int64_t iterations = 1000;      // optimizer steps
  int64_t epoch_length = 100;     // steps between validations ("epoch")
  int64_t val_images = 64;        // validation images (each with one of the 4 prompt modes)
  // Side of the grid the loss is computed on: the low-res logits are upsampled
  // to it and the targets area-averaged down to it. 0 = min(input size, 2 x
  // low-res size): the loss then sees sub-pixel boundaries of the logits
  // without paying for full-resolution maps at every sub-iteration.
  int loss_size = 0;
  // Weight of a pixel-wise binary cross-entropy added to each output mask's
  // Dice loss (0 = Dice only, the micro_sam recipe). Soft Dice alone pushes
  // uncertain pixels towards foreground (its optimum for a pixel that is object
  // with frequency f is p = f / Dice, above f whenever Dice < 1), so a model
  // that is unsure near boundaries over-segments; cross-entropy is a proper
  // scoring rule and pulls p back to f. SAM itself trained with focal + Dice.
  double bce_weight = 0;

  // Optimisation: AdamW with warmup + schedule, gradient clipping.
  double lr = 1e-4;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double grad_clip = 1.0;           // max global L2 norm; 0 = off
  std::string schedule = "cosine";  // constant | cosine | step
  int64_t warmup = 0;               // linear warmup steps
  double min_lr_ratio = 0.05;       // cosine floor as a fraction of lr
  int64_t step_size = 1000;         // step schedule: multiply by gamma every step_size steps
  double gamma = 0.9;
  bool freeze_image_encoder = false;
  bool freeze_prompt_encoder = false;

  // Execution.
  uint64_t seed = 0;
  int threads = 0;  // per process; 0 = all cores / world size
  std::string device = "cpu";
  bool mixed_precision = true;  // CUDA only (bf16 autocast)
  int prefetch = 4;             // batches prepared ahead by the loader thread
  std::string out_dir = "runs/train";
  bool resume = true;      // continue from out_dir/latest.pt when it exists
  int64_t stop_after = 0;  // stop (as if interrupted) after this many steps in this run; 0 = off

  // Distributed data parallel (c10d: Gloo on CPU, NCCL on CUDA).
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29517;

  static TrainConfig from_json(const nlohmann::json& j, const std::string& source);
  static TrainConfig from_file(const std::string& path);
  // Every key from_json accepts (anything else is refused as unknown).
  static const std::vector<std::string>& known_keys();
  // The whole configuration with absolute paths: what a run stores in its
  // checkpoints and writes to out_dir/config.json, and from_json reads back.
  // Every known key except "rank", "stop_after" and "comment" is written.
  nlohmann::json to_json() const;
};

}  // namespace medicosam::train
