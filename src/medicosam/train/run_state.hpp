#pragma once
// Pieces every training objective shares (interactive, semantic, joint): the
// AdamW optimizer with its state kept by parameter name, the learning-rate
// schedule, the run counters, and their place in a torch_em-style checkpoint
// (latest.pt / best.pt: {"model_state", "optimizer_state", "iteration",
// "epoch", "best_metric", ...}), plus the CSV-log truncation of a resumed run.
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/train/config.hpp"

namespace medicosam::train {

// AdamW exactly as torch.optim.AdamW (decoupled weight decay), with its state
// kept by parameter name so it can be saved in a checkpoint and resumed.
// Parameters without a gradient are skipped by update().
struct AdamW {
  struct State {
    torch::Tensor exp_avg, exp_avg_sq;
  };
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::map<std::string, State> state;
  int64_t step = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;

  // beta1/beta2/eps/weight_decay from the config.
  static AdamW from_config(const TrainConfig& c);
  void update(double lr);
  // The tensors of params (for gradient all-reduce and clipping).
  std::vector<torch::Tensor> tensors() const;
};

// Checks batch_size against world_size, sets the torch thread count
// (threads, or the cores shared by the processes) and returns the device of
// this rank (cuda:rank % device count, InputError if CUDA is missing).
torch::Device training_device(const TrainConfig& c);

// Warmup, then constant / cosine / step schedule (TrainConfig).
double learning_rate(const TrainConfig& c, int64_t it);

struct RunState {
  int64_t iteration = 0;  // steps done
  double best_metric = std::numeric_limits<double>::infinity();
  int64_t best_iteration = 0;
  double current_metric = std::numeric_limits<double>::infinity();
  double train_time = 0;
};

// {"step", "exp_avg": {name: t}, "exp_avg_sq": {name: t}} and back (tensors
// moved to their parameter's device). `path` names the file in errors.
checkpoint::PyValue optimizer_state_value(const AdamW& opt);
void restore_optimizer(AdamW& opt, const checkpoint::PyValue& value, const std::string& path);

// Writes a run checkpoint: the given model entries ("model_state",
// "decoder_state", ...), "optimizer_state", the counters, the config and
// `architecture`. Atomic (write_pytorch_checkpoint).
void write_run_checkpoint(const std::string& path,
                          std::vector<std::pair<std::string, checkpoint::PyValue>> models,
                          const AdamW& opt, const RunState& st, const TrainConfig& c,
                          const std::string& architecture);

// Reads a run checkpoint: restores the optimizer and returns the counters;
// the root dict is returned in `root` for the caller's model entries.
// FormatError naming the file when it lacks model / optimizer state.
RunState read_run_checkpoint(const std::string& path, AdamW& opt, checkpoint::PyValue& root,
                             const std::string& model_key = "model_state");

// An ordered dict {prefix + name: tensor (CPU, contiguous)}.
checkpoint::PyValue tensors_value(const std::vector<std::pair<std::string, torch::Tensor>>& named,
                                  const std::string& prefix = "");

// Keeps the rows of a CSV log whose first column (iteration) is <= last: a
// resumed run rewrites what happened after its checkpoint.
void truncate_log(const std::string& path, int64_t last);

}  // namespace medicosam::train
