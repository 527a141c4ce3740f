#pragma once
// `medicosam eval --protocol amg` (cmd_eval_amg.cpp): the automatic mask
// generator on datasets, optionally sweeping its thresholds (docs/evaluation.md).
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace medicosam::cli {

// The AMG protocol's own options, registered on the eval subcommand.
struct AmgEvalArgs {
  double pred_iou_thresh = 0.88, stability_score_thresh = 0.95;
  CLI::Option* pred_iou_opt = nullptr;
  CLI::Option* stability_opt = nullptr;
  int points_per_side = 32;
  int points_per_batch = 64;
  int crop_n_layers = 0;
  double match_iou = 0.5;
  bool sweep = false;
  std::string sweep_pred_iou = "0,0.3,0.4,0.5,0.6,0.7,0.8,0.88";
  std::string sweep_stability = "0,0.5,0.6,0.7,0.8,0.9,0.95";
  double max_masks = 50;
  std::string precision = "auto";
  bool no_instances = false;
};
void add_amg_eval_options(CLI::App& eval, AmgEvalArgs& args);

// What the AMG protocol takes from eval's common options.
struct EvalCommon {
  std::vector<std::string> models, data, baselines;
  std::string split;
  int64_t limit = 0;
  std::string normalize;
  int min_size = 0;
  std::string out;
  int threads = 0;
  std::string device;
  bool quiet = false;
};
void run_amg_eval(const EvalCommon& common, const AmgEvalArgs& args);

}  // namespace medicosam::cli
