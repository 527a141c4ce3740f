// `medicosam eval --protocol amg`: SAM's automatic mask generator on 2D
// datasets; per dataset the object and image match rates (eval/amg_eval.hpp),
// and with --sweep a grid of thresholds from the same candidates, with the
// setting the selection rule picks (choose on val splits only).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "amg_defaults.hpp"
#include "cli_common.hpp"
#include "eval_amg.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/eval/amg_eval.hpp"

namespace medicosam::cli {
namespace fs = std::filesystem;

void add_amg_eval_options(CLI::App& cmd, AmgEvalArgs& a) {
  a.pred_iou_opt = cmd.add_option("--pred-iou-thresh", a.pred_iou_thresh,
                                  "amg: predicted-IoU threshold (default: the checkpoint's medicosam.amg "
                                  "metadata, else SAM's 0.88)")
                       ->check(CLI::Range(0.0, 1.0));
  a.stability_opt = cmd.add_option("--stability-score-thresh", a.stability_score_thresh,
                                   "amg: stability threshold (default: the checkpoint's, else SAM's 0.95)")
                        ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--points-per-side", a.points_per_side, "amg: point grid size (default 32)")
      ->check(CLI::Range(1, 256));
  cmd.add_option("--points-per-batch", a.points_per_batch, "amg: prompts per decoder call (default 64)")
      ->check(CLI::Range(1, 4096));
  cmd.add_option("--crop-n-layers", a.crop_n_layers, "amg: extra crop layers (default 0)")->check(CLI::Range(0, 4));
  cmd.add_option("--match-iou", a.match_iou, "amg: an object is matched by a mask with IoU >= this (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_flag("--sweep", a.sweep,
               "amg: also evaluate every (--sweep-pred-iou x --sweep-stability) setting from the same masks and "
               "select one (use on val splits only)");
  cmd.add_option("--sweep-pred-iou", a.sweep_pred_iou, "amg sweep: predicted-IoU thresholds (comma-separated)");
  cmd.add_option("--sweep-stability", a.sweep_stability, "amg sweep: stability thresholds (comma-separated)");
  cmd.add_option("--max-masks", a.max_masks,
                 "amg sweep: the selection's cap on mean masks per image, on every dataset (default 50)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--amg-precision", a.precision, "amg: model precision auto (default, as `medicosam amg`), fp32, bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd.add_flag("--no-instances", a.no_instances,
               "amg: objects from the class masks even where the dataset has instances/");
}

namespace {

std::string quote(const std::string& s) {
  if (!s.empty() && s.find_first_of(" \t\"'$`\\") == std::string::npos) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string command_line(const EvalCommon& c, const AmgEvalArgs& a) {
  std::ostringstream s;
  s << "medicosam eval --protocol amg";
  for (const auto& m : c.models) s << " --model " << quote(m);
  for (const auto& d : c.data) s << " --data " << quote(d);
  s << " --split " << c.split;
  if (a.pred_iou_opt->count()) s << " --pred-iou-thresh " << a.pred_iou_thresh;
  if (a.stability_opt->count()) s << " --stability-score-thresh " << a.stability_score_thresh;
  if (a.points_per_side != 32) s << " --points-per-side " << a.points_per_side;
  if (a.crop_n_layers) s << " --crop-n-layers " << a.crop_n_layers;
  if (a.match_iou != 0.5) s << " --match-iou " << a.match_iou;
  if (a.sweep)
    s << " --sweep --sweep-pred-iou " << a.sweep_pred_iou << " --sweep-stability " << a.sweep_stability
      << " --max-masks " << a.max_masks;
  if (a.precision != "auto") s << " --amg-precision " << a.precision;
  if (a.no_instances) s << " --no-instances";
  if (c.min_size) s << " --min-size " << c.min_size;
  if (c.limit) s << " --limit " << c.limit;
  if (!c.normalize.empty()) s << " --normalize " << c.normalize;
  s << " --out " << quote(c.out);
  return s.str();
}

}  // namespace

void run_amg_eval(const EvalCommon& c, const AmgEvalArgs& a) {
  if (!c.baselines.empty())
    throw InputError("--protocol amg evaluates models' automatic masks; --baseline " + c.baselines.front() +
                     " is an interactive baseline");
  std::vector<std::string> models = c.models;
  if (models.empty()) models.push_back(default_model_path());
  if (a.sweep && models.size() > 1) throw InputError("--sweep selects thresholds for one model: give one --model");
  for (const auto& m : models)
    if (!fs::exists(m)) throw InputError("--model '" + m + "': no such file");
  eval::Dataset2DOptions dopts;
  dopts.split = c.split;
  dopts.limit = c.limit;
  dopts.normalization = io::parse_normalization(c.normalize.empty() ? "minmax" : c.normalize);
  std::vector<eval::Dataset2D> datasets;
  for (const auto& d : c.data) {
    datasets.push_back(eval::Dataset2D::open(d, dopts));
    if (datasets.back().size() == 0)
      throw InputError("--data '" + d + "': no images with ground truth in split '" + c.split + "'");
  }
  if (a.sweep && c.split == "test")
    std::fprintf(stderr,
                 "warning: sweeping thresholds on the test split; choose thresholds on val and evaluate test "
                 "once\n");
  eval::AmgEvalOptions o;
  o.amg.points_per_side = a.points_per_side;
  o.amg.points_per_batch = a.points_per_batch;
  o.amg.crop_n_layers = a.crop_n_layers;
  o.match_iou = a.match_iou;
  o.min_object_size = c.min_size > 0 ? c.min_size : 20;
  o.use_instances = !a.no_instances;
  o.progress = !c.quiet;
  if (a.sweep) {
    for (double p : eval::parse_threshold_list(a.sweep_pred_iou, "--sweep-pred-iou"))
      for (double s : eval::parse_threshold_list(a.sweep_stability, "--sweep-stability")) o.sweep.push_back({p, s});
  }
  std::vector<eval::AmgEvalResult> results;
  eval::AmgReportOptions ro;
  ro.report.title = "medicosam automatic-mask evaluation";
  ro.report.command = command_line(c, a);
  ro.max_mean_masks = a.max_masks;
  ro.report.notes.push_back("Intensity normalisation: " + io::to_string(dopts.normalization) +
                            "; model precision " + a.precision + " (as `medicosam amg`).");
  fs::create_directories(c.out);
  for (const auto& m : models) {
    predict::SamPredictor predictor(m, {c.threads, c.device, a.precision});
    auto mo = o;
    mo.amg.pred_iou_thresh = a.pred_iou_thresh;
    mo.amg.stability_score_thresh = a.stability_score_thresh;
    const auto t = resolve_amg_thresholds(mo.amg, m, a.pred_iou_opt->count() > 0, a.stability_opt->count() > 0);
    const std::string name = fs::path(m).stem().string();
    const std::string note = name + ": " + t.describe(mo.amg);
    std::fprintf(stderr, "thresholds: %s\n", note.c_str());
    ro.thresholds_note = ro.thresholds_note.empty() ? note : ro.thresholds_note + "; " + note;
    const auto source = eval::sam_candidate_source(predictor);
    for (const auto& ds : datasets) {
      results.push_back(eval::run_amg_eval(source, name, ds, mo));
      eval::write_amg_report(c.out, results, mo, ro);  // a valid partial report after every dataset
    }
  }
  std::printf("%-24s %-24s %7s %8s %11s %12s %11s %9s\n", "dataset", "method", "images", "objects", "masks/image",
              "object match", "image match", "s/image");
  for (const auto& r : results) {
    const auto s = r.summarize().front();
    std::printf("%-24s %-24s %7d %8d %11s %12s %11s %9s\n", r.dataset.c_str(), r.method.c_str(), s.images,
                s.objects, eval::format_number(s.mean_masks, 1).c_str(),
                eval::format_number(s.object_match_rate, 3).c_str(), eval::format_number(s.image_match_rate, 3).c_str(),
                eval::format_number(r.images.empty() ? 0.0 : r.seconds / r.images.size(), 1).c_str());
  }
  if (a.sweep) {
    if (const auto sel = eval::select_amg_setting(results, a.max_masks)) {
      std::printf("selected: pred_iou_thresh %s, stability_score_thresh %s (object match %s, image match %s, "
                  "worst image match %s, %s masks/image)\n",
                  eval::format_number(sel->setting.pred_iou_thresh, 3).c_str(),
                  eval::format_number(sel->setting.stability_score_thresh, 3).c_str(),
                  eval::format_number(sel->object_match_rate, 3).c_str(),
                  eval::format_number(sel->image_match_rate, 3).c_str(),
                  eval::format_number(sel->min_image_match_rate, 3).c_str(),
                  eval::format_number(sel->mean_masks, 1).c_str());
    } else {
      std::printf("selected: none (no setting keeps <= %g masks per image)\n", a.max_masks);
    }
  }
  std::printf("report: %s\n", (fs::path(c.out) / "summary.md").string().c_str());
}

}  // namespace medicosam::cli
