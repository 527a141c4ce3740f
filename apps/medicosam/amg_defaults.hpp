#pragma once
// Which AMG thresholds a command uses (cmd_amg.cpp): the user's options win,
// else the checkpoint's medicosam.amg metadata, else SAM's defaults.
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>
#include <string>

#include "medicosam/segment/amg.hpp"

namespace medicosam::cli {

struct AmgThresholds {
  std::string pred_iou_source, stability_source;  // "option" | "checkpoint" | "sam_default"
  std::string defaults_source;                    // AmgDefaults::describe()
  nlohmann::json record;                          // the checkpoint's record (null without)
  // "pred_iou_thresh 0.7 (checkpoint), stability_score_thresh 0.95 (option); defaults: ..."
  std::string describe(const segment::AmgOptions& o) const;
};

// Sets o's thresholds the user did not give from `checkpoint`'s defaults.
AmgThresholds resolve_amg_thresholds(segment::AmgOptions& o, const std::string& checkpoint, bool pred_iou_given,
                                     bool stability_given);

// `medicosam amg-defaults` (registered by register_amg).
void register_amg_defaults(CLI::App& app);

}  // namespace medicosam::cli
