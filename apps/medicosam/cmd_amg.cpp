// `medicosam amg`: automatic instance segmentation of a 2D image (or one slice
// of a volume) with SAM's automatic mask generator; writes a label map.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "amg_defaults.hpp"
#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/segment/amg.hpp"

namespace medicosam::cli {
namespace {

struct AmgArgs {
  ModelOptions model;
  ImageOptions image;
  segment::AmgOptions amg;
  int64_t min_object_size = 0;
  std::string out, overlay;
  bool json = false, quiet = false;
  // Set when the user gave the thresholds; else the checkpoint's (or SAM's) defaults apply.
  CLI::Option* pred_iou_opt = nullptr;
  CLI::Option* stability_opt = nullptr;
};

}  // namespace

AmgThresholds resolve_amg_thresholds(segment::AmgOptions& o, const std::string& checkpoint, bool pred_iou_given,
                                     bool stability_given) {
  const auto d = segment::read_amg_defaults(checkpoint);
  AmgThresholds t;
  t.defaults_source = d.describe();
  if (!pred_iou_given) o.pred_iou_thresh = d.pred_iou_thresh;
  if (!stability_given) o.stability_score_thresh = d.stability_score_thresh;
  t.pred_iou_source = pred_iou_given ? "option" : d.from_checkpoint ? "checkpoint" : "sam_default";
  t.stability_source = stability_given ? "option" : d.from_checkpoint ? "checkpoint" : "sam_default";
  t.record = d.record;
  return t;
}

std::string AmgThresholds::describe(const segment::AmgOptions& o) const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "pred_iou_thresh %.3g (%s), stability_score_thresh %.3g (%s)", o.pred_iou_thresh,
                pred_iou_source.c_str(), o.stability_score_thresh, stability_source.c_str());
  std::string s = buf;
  if (pred_iou_source != "option" || stability_source != "option") s += "; defaults: " + defaults_source;
  return s;
}

namespace {

void run_amg(const AmgArgs& a) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  const auto format = io::segmentation_format(a.out);
  if (format == io::SegmentationFormat::kDicomSeg)
    throw InputError("--out '" + a.out + "': use .png (2D label image) or .nii.gz/.nii/.nrrd/.mha (label map)");
  const auto img = load_image(a.image);
  const auto& slices = *img.slices;
  auto predictor = a.model.load();
  auto opts = a.amg;
  const auto thresholds = resolve_amg_thresholds(opts, predictor.model().path, a.pred_iou_opt->count() > 0,
                                                 a.stability_opt->count() > 0);
  if (!a.quiet && !a.json) std::fprintf(stderr, "thresholds: %s\n", thresholds.describe(opts).c_str());
  const auto rgb = slices.model_image(img.slice);
  const auto t0 = Clock::now();
  const auto masks = segment::generate_masks(predictor, rgb.data.data(), rgb.height, rgb.width,
                                             opts, !a.quiet && !a.json);
  const double amg_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // Model grid -> a label map on the image's geometry (VolumeSlices maps the grids).
  const auto labels = slices.label_map(
      {{img.slice, segment::masks_to_label_map(masks, rgb.height, rgb.width, a.min_object_size)}});
  const auto slice_map = slices.slice_labels(labels, img.slice);
  const int SH = static_cast<int>(slice_map.size()[1]), SW = static_cast<int>(slice_map.size()[0]);
  const uint16_t n = labels.max_label();
  if (format == io::SegmentationFormat::kPng && img.is_volume()) {  // the slice's labels
    io::write_segmentation(a.out, slice_map, slices.slice(img.slice).image, a.image.path);
  } else {
    io::write_segmentation(a.out, labels, *img.volume, a.image.path);
  }
  if (!a.overlay.empty()) {
    std::vector<uint8_t> any(static_cast<size_t>(slice_map.num_voxels()));
    for (size_t i = 0; i < any.size(); ++i) any[i] = slice_map.data()[i] != 0;
    write_overlay_png(a.overlay, slices.slice_image(img.slice), any, {});
  }
  const double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
  if (a.json) {
    nlohmann::json j{
        {"out", a.out}, {"masks", masks.size()}, {"labels", n}, {"height", SH}, {"width", SW}};
    nlohmann::json list = nlohmann::json::array();
    for (const auto& m : masks) {
      list.push_back({{"bbox", m.bbox},
                      {"area", m.area},
                      {"predicted_iou", m.predicted_iou},
                      {"stability_score", m.stability_score},
                      {"point", {m.point.x, m.point.y}},
                      {"crop_box", m.crop_box}});
    }
    j["mask_list"] = list;
    j["thresholds"] = {{"pred_iou_thresh", opts.pred_iou_thresh},
                       {"stability_score_thresh", opts.stability_score_thresh},
                       {"pred_iou_thresh_from", thresholds.pred_iou_source},
                       {"stability_score_thresh_from", thresholds.stability_source},
                       {"defaults", thresholds.defaults_source}};
    j["timings_ms"] = {{"amg", amg_ms}, {"total", total_ms}};
    std::cout << j.dump() << std::endl;
  } else if (!a.quiet) {
    std::fprintf(stderr, "wrote %s: %zu masks -> %d labels (%.0f ms)\n", a.out.c_str(),
                 masks.size(), n, amg_ms);
  }
}

}  // namespace

namespace {

struct AmgDefaultsArgs {
  std::string checkpoint, out, calibrated_on, note, from_report;
  std::optional<double> pred_iou, stability;
  bool clear = false, json = false;
};

// Threshold record from an `eval --protocol amg --sweep` report: its selected setting.
nlohmann::json record_from_report(const std::string& dir) {
  const auto path = (std::filesystem::path(dir) / "summary.json").string();
  std::ifstream in(path);
  if (!in) throw InputError("--from-report '" + dir + "': no summary.json in it");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("'" + path + "': not valid JSON (" + e.what() + ")");
  }
  if (!j.contains("selected") || !j["selected"].is_object())
    throw InputError("'" + path + "': no selected setting (run eval --protocol amg with --sweep)");
  const auto& s = j["selected"];
  const std::string split = j.value("split", std::string());
  if (split == "test")
    throw InputError("--from-report '" + dir +
                     "': that sweep ran on the test split; choose thresholds on val (evaluate test once, after)");
  nlohmann::json rec = {{"pred_iou_thresh", s.at("pred_iou_thresh")},
                        {"stability_score_thresh", s.at("stability_score_thresh")},
                        {"selection", j.value("selection_rule", std::string())},
                        {split + "_object_match_rate", s.value("object_match_rate", 0.0)},
                        {split + "_image_match_rate", s.value("image_match_rate", 0.0)},
                        {split + "_min_image_match_rate", s.value("min_image_match_rate", 0.0)},
                        {split + "_mean_masks_per_image", s.value("mean_masks", 0.0)}};
  std::string on = split + " split of";
  for (const auto& d : j.value("datasets", nlohmann::json::array())) on += " " + d.get<std::string>();
  rec["calibrated_on"] = on;
  if (j.contains("command")) rec["calibration_command"] = j["command"];
  return rec;
}

void run_amg_defaults(const AmgDefaultsArgs& a) {
  const std::string out = a.out.empty() ? a.checkpoint : a.out;
  const bool set = a.pred_iou || a.stability || !a.from_report.empty();
  if (!set && !a.clear) {  // show
    const auto d = segment::read_amg_defaults(a.checkpoint);
    if (a.json) {
      std::cout << nlohmann::json{{"pred_iou_thresh", d.pred_iou_thresh},
                                  {"stability_score_thresh", d.stability_score_thresh},
                                  {"from_checkpoint", d.from_checkpoint},
                                  {"record", d.record}}
                       .dump()
                << std::endl;
    } else {
      std::printf("pred_iou_thresh %.4g, stability_score_thresh %.4g: %s\n", d.pred_iou_thresh,
                  d.stability_score_thresh, d.describe().c_str());
      if (d.from_checkpoint) std::printf("%s\n", d.record.dump().c_str());
    }
    return;
  }
  if (set && a.clear) throw InputError("--clear removes the AMG defaults; it takes no thresholds");
  if (a.clear) {
    model::rewrite_safetensors_metadata(a.checkpoint, out, {}, {segment::kAmgMetadataKey});
    std::fprintf(stderr, "wrote %s: no %s metadata (SAM's defaults apply)\n", out.c_str(),
                 segment::kAmgMetadataKey);
    return;
  }
  nlohmann::json rec = a.from_report.empty() ? nlohmann::json::object() : record_from_report(a.from_report);
  if (a.pred_iou) rec["pred_iou_thresh"] = *a.pred_iou;
  if (a.stability) rec["stability_score_thresh"] = *a.stability;
  if (!rec.contains("pred_iou_thresh") || !rec.contains("stability_score_thresh"))
    throw InputError("give both --pred-iou-thresh and --stability-score-thresh (or --from-report)");
  if (!a.calibrated_on.empty()) rec["calibrated_on"] = a.calibrated_on;
  if (!a.note.empty()) rec["note"] = a.note;
  const double p = rec["pred_iou_thresh"].get<double>(), s = rec["stability_score_thresh"].get<double>();
  const std::string value = segment::amg_metadata_value(p, s, rec);
  model::rewrite_safetensors_metadata(a.checkpoint, out, {{segment::kAmgMetadataKey, value}});
  std::fprintf(stderr, "wrote %s: %s = %s (tensors unchanged)\n", out.c_str(), segment::kAmgMetadataKey,
               value.c_str());
}

}  // namespace

void register_amg_defaults(CLI::App& app) {
  auto a = std::make_shared<AmgDefaultsArgs>();
  auto* cmd = app.add_subcommand(
      "amg-defaults",
      "Show or write a checkpoint's automatic-mask defaults (safetensors metadata medicosam.amg)");
  cmd->add_option("checkpoint", a->checkpoint, ".safetensors checkpoint")->required()->check(CLI::ExistingFile);
  cmd->add_option("--pred-iou-thresh", a->pred_iou, "Write this predicted-IoU threshold")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--stability-score-thresh", a->stability, "Write this stability threshold")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--from-report", a->from_report,
                  "Write the setting selected by an `eval --protocol amg --sweep` report folder (val split)");
  cmd->add_option("--calibrated-on", a->calibrated_on, "Where the thresholds were chosen (stored with them)");
  cmd->add_option("--note", a->note, "Free text stored with the thresholds");
  cmd->add_flag("--clear", a->clear, "Remove the key (SAM's defaults apply again)");
  cmd->add_option("--out,-o", a->out, "Write here instead of replacing the checkpoint (atomically) in place");
  cmd->add_flag("--json", a->json, "Show as JSON");
  cmd->callback([a]() { run_amg_defaults(*a); });
}

void register_amg(CLI::App& app) {
  auto a = std::make_shared<AmgArgs>();
  auto* cmd =
      app.add_subcommand("amg", "Automatic instance segmentation (SAM's automatic mask generator)");
  a->model.add_to(*cmd, /*model_required=*/false);
  a->image.add_to(*cmd, /*positional=*/true);
  auto& o = a->amg;
  cmd->add_option("--points-per-side", o.points_per_side, "Point grid size (32)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--points-per-batch", o.points_per_batch, "Prompts per decoder call (64)")
      ->check(CLI::PositiveNumber);
  a->pred_iou_opt = cmd->add_option("--pred-iou-thresh", o.pred_iou_thresh,
                                    "Keep masks with predicted IoU above this (default: the checkpoint's "
                                    "medicosam.amg metadata, else SAM's 0.88)");
  a->stability_opt = cmd->add_option("--stability-score-thresh", o.stability_score_thresh,
                                     "Keep masks at least this stable (default: the checkpoint's medicosam.amg "
                                     "metadata, else SAM's 0.95)");
  cmd->add_option("--stability-score-offset", o.stability_score_offset,
                  "Logit offset of the stability score (1.0)");
  cmd->add_option("--box-nms-thresh", o.box_nms_thresh, "Box NMS IoU threshold (0.7)");
  cmd->add_option("--crop-n-layers", o.crop_n_layers, "Extra crop layers (0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--crop-nms-thresh", o.crop_nms_thresh, "NMS threshold across crops (0.7)");
  cmd->add_option("--min-mask-region-area", o.min_mask_region_area,
                  "Remove smaller holes and islands (0)");
  cmd->add_option("--min-object-size", a->min_object_size,
                  "Skip masks smaller than this in the label map (0)");
  cmd->add_option("--out,-o", a->out, "Label map: .png (2D) or .nii.gz/.nii/.nrrd/.mha")
      ->required();
  cmd->add_option("--overlay", a->overlay, "Also write the image with the masks outlined (.png)");
  cmd->add_flag("--json", a->json, "Print one JSON line with the masks and timings");
  cmd->add_flag("--quiet,-q", a->quiet, "No progress bar or summary");
  cmd->callback([a]() { run_amg(*a); });
  register_amg_defaults(app);
}

}  // namespace medicosam::cli
