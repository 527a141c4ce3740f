// `medicosam amg`: automatic instance segmentation of a 2D image (or one slice
// of a volume) with SAM's automatic mask generator; writes a label map.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/write.hpp"
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
};

void run_amg(const AmgArgs& a) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  const auto format = io::segmentation_format(a.out);
  if (format == io::SegmentationFormat::kDicomSeg)
    throw InputError("--out '" + a.out + "': use .png (2D label image) or .nii.gz/.nii/.nrrd/.mha (label map)");
  const auto img = load_image(a.image);
  const auto& slices = *img.slices;
  auto predictor = a.model.load();
  const auto rgb = slices.model_image(img.slice);
  const auto t0 = Clock::now();
  const auto masks = segment::generate_masks(predictor, rgb.data.data(), rgb.height, rgb.width,
                                             a.amg, !a.quiet && !a.json);
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
    j["timings_ms"] = {{"amg", amg_ms}, {"total", total_ms}};
    std::cout << j.dump() << std::endl;
  } else if (!a.quiet) {
    std::fprintf(stderr, "wrote %s: %zu masks -> %d labels (%.0f ms)\n", a.out.c_str(),
                 masks.size(), n, amg_ms);
  }
}

}  // namespace

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
  cmd->add_option("--pred-iou-thresh", o.pred_iou_thresh,
                  "Keep masks with predicted IoU above this (0.88)");
  cmd->add_option("--stability-score-thresh", o.stability_score_thresh,
                  "Keep masks at least this stable (0.95)");
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
}

}  // namespace medicosam::cli
