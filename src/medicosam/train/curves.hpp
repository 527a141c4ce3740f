#pragma once
// Loss and validation curves of a training run, drawn from its CSV logs.
#include <string>

namespace medicosam::train {

// Reads out_dir/train_log.csv and out_dir/validation.csv and writes
// out_dir/loss.png (raw and smoothed loss per step) and out_dir/validation.png
// (Dice per validation prompt mode). Missing logs are skipped.
void write_training_curves(const std::string& out_dir);

}  // namespace medicosam::train
