#pragma once
// Evaluation reports people read: per-image and per-dataset CSV and JSON, a
// Markdown summary with the paper's numbers (Point, Box, I_P, I_B), surface
// metrics, timings, a Dice-per-iteration plot per dataset (one line per
// method and start prompt) and overlays of the best and worst cases.
//
// Layout of a report folder (docs/evaluation.md explains every file):
//   summary.md          tables and figures, start here
//   summary.json        options, per dataset x method: Point/Box/I_P/I_B,
//                       curves (dice, iou, nsd, hd95) per start, per class
//   summary.csv         dataset,method,start,iteration,dice,iou,nsd,hd95,...
//   per_image.csv       one row per image x class x start x iteration
//   per_image.json      the same, nested per case
//   plots/<dataset>_dice.png
//   overlays/<dataset>/<method>_<start>_{best,worst}_<image>.png
#include <string>
#include <vector>

#include "medicosam/eval/dataset.hpp"
#include "medicosam/eval/interactive2d.hpp"
#include "medicosam/eval/interactive3d.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

struct OverlayRecord {
  std::string dataset, method, image, class_name;
  StartPrompt start = StartPrompt::kBox;
  std::string kind;  // "best" or "worst" (by Dice at the last iteration)
  std::string path;  // relative to the report folder
  double dice_first = 0, dice_last = 0;
};

struct ReportOptions {
  std::string title = "medicosam evaluation";
  std::string command;  // the command line that produced the report (shown for reproducibility)
  std::vector<std::string> notes;  // extra lines for the protocol section (e.g. baseline settings)
};

// Writes every file of the interactive 2D report except the overlays (see
// above) into `out_dir` (created if needed). Files are written atomically.
// `overlays` (from write_interactive2d_overlays) are linked from summary.md.
void write_interactive2d_report(const std::string& out_dir,
                                const std::vector<Interactive2DResult>& results,
                                const std::vector<OverlayRecord>& overlays,
                                const ReportOptions& options = {});

// Re-runs the `per_kind` best and worst cases (by last-iteration Dice) of
// each start prompt in `result` with `segmenter` (deterministic: same numbers)
// and draws them: image, ground-truth outline (green), prediction (blue),
// prompts (box yellow, positive clicks green, negative red), at iteration 0
// and at the last iteration. Returns what was written.
std::vector<OverlayRecord> write_interactive2d_overlays(const std::string& out_dir,
                                                        segment::ImageSegmenter& segmenter,
                                                        const Dataset2D& dataset,
                                                        const Interactive2DResult& result,
                                                        int per_kind = 1);

// One overlay figure for a case detail as PNG bytes (exposed for tests and
// for the trainer's validation snapshots).
std::vector<uint8_t> render_case_png(const Sample2D& sample, const CaseDetail& detail,
                                     const std::string& title);

// The 3D report in `out_dir`: summary.md (fixed setting and, where run, the
// grid-search oracle per dataset x method x start prompt, per-volume table),
// summary.json, per_volume.csv (one row per volume x start x class).
void write_interactive3d_report(const std::string& out_dir,
                                const std::vector<Interactive3DResult>& results,
                                const ReportOptions& options = {});

// CSV field: quoted when it holds a comma, quote or newline.
std::string csv_field(const std::string& s);
// Number for CSV/Markdown: "%.4f"-like; "inf" for infinity, "" for NaN.
std::string format_number(double v, int decimals = 4);

}  // namespace medicosam::eval
