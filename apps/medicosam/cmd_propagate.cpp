// `medicosam propagate`: prompt one object on one slice of a volume and carry
// it through the volume on cached embeddings (micro_sam's segment_mask_in_volume).
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/segment/embedding_cache.hpp"

namespace medicosam::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct PropagateArgs {
  ModelOptions model;
  std::string volume, cache, out, axis = "axial", normalize, series, projection = "single_point";
  int64_t slice = -1;
  std::vector<std::string> points;
  std::string box;
  double iou_threshold = 0.5, box_extension = 0.05;
  int label = 1;
  bool quiet = false, json = false;
};

void run_propagate(const PropagateArgs& a) {
  const auto t_start = Clock::now();
  nlohmann::json timings;
  predict::Prompt prompt;
  for (const auto& p : a.points) prompt.points.push_back(parse_point(p));
  if (!a.box.empty()) prompt.box = parse_box(a.box);
  if (prompt.empty())
    throw InputError("no prompt given: pass --box X0,Y0,X1,Y1 and/or --point X,Y,LABEL");
  const bool label_map_out = [&] {
    try {
      return io::segmentation_format(a.out) != io::SegmentationFormat::kPng;
    } catch (const InputError&) {
      return false;
    }
  }();
  if (!label_map_out)
    throw InputError("--out '" + a.out + "': use .nii.gz, .nii, .nrrd, .mha or .dcm");
  if (a.label < 1 || a.label > 65535) throw InputError("--label must be in 1..65535");
  segment::PropagationOptions opt;
  opt.projection = segment::projection_flags(segment::parse_projection(a.projection));
  opt.iou_threshold = a.iou_threshold;
  opt.box_extension = a.box_extension;

  auto t0 = Clock::now();
  io::ReadOptions ro;
  ro.series_uid = a.series;
  const auto volume = io::read_image(a.volume, ro);
  if (volume.is_2d())
    throw InputError("'" + a.volume + "' is a 2D image; propagate needs a volume");
  const auto norm =
      a.normalize.empty() ? io::Normalization{} : io::parse_normalization(a.normalize);
  segment::VolumeSlices slices(volume, io::parse_axis(a.axis), norm);
  if (a.slice < 0 || a.slice >= slices.count()) {
    throw InputError("--slice " + std::to_string(a.slice) + " is outside 0.." +
                     std::to_string(slices.count() - 1) + " (" + a.axis + ")");
  }
  const int k = static_cast<int>(a.slice);
  predict::validate_prompt(prompt, slices.slice_size());
  timings["read"] = ms_since(t0);

  t0 = Clock::now();
  auto predictor = a.model.load();
  timings["load_model"] = ms_since(t0);
  t0 = Clock::now();
  auto cache = segment::open_cache(predictor, slices, a.cache);
  const auto st = segment::compute_embeddings(predictor, slices, cache, !a.quiet && !a.json);
  timings["embed"] = ms_since(t0);

  t0 = Clock::now();
  segment::CachedSliceSegmenter seg(predictor, cache);
  const auto ms = slices.model_size();
  std::vector<segment::BinaryMask> masks(slices.count(), segment::BinaryMask(ms.height, ms.width));
  masks[k] = segment::segment_from_prompt(seg, k, slices.prompt_to_model(prompt));
  timings["segment_slice"] = ms_since(t0);
  if (masks[k].empty())
    throw InputError("the prompt on slice " + std::to_string(k) + " gave an empty mask");

  t0 = Clock::now();
  {
    Progress bar(slices.count() - 1, "propagating", !a.quiet && !a.json);
    opt.on_slice = [&](int) { bar.advance(); };
    const auto r = segment::segment_mask_in_volume(seg, masks, {k}, opt);
    bar.finish();
    timings["propagate"] = ms_since(t0);
    io::LabelMap labels(volume.geometry());
    for (int z = r.z_min; z <= r.z_max; ++z)
      slices.paste(labels, z, masks[z], static_cast<uint16_t>(a.label), /*replace=*/true);
    t0 = Clock::now();
    io::write_segmentation(a.out, labels, volume, a.volume);
    timings["write"] = ms_since(t0);
    timings["total"] = ms_since(t_start);
    int decoded = static_cast<int>(r.steps.size());
    int64_t voxels = labels.count(static_cast<uint16_t>(a.label));
    if (a.json) {
      nlohmann::json j{{"out", a.out},
                       {"axis", a.axis},
                       {"slice", k},
                       {"z_min", r.z_min},
                       {"z_max", r.z_max},
                       {"decoded_slices", decoded},
                       {"voxels", voxels},
                       {"embedded_slices", st.computed},
                       {"projection", a.projection},
                       {"timings_ms", timings}};
      std::cout << j.dump() << std::endl;
    } else if (!a.quiet) {
      std::fprintf(stderr,
                   "wrote %s: label %d on %s slices %d..%d (%lld voxels), propagation %.0f ms for "
                   "%d slices\n",
                   a.out.c_str(), a.label, a.axis.c_str(), r.z_min, r.z_max,
                   static_cast<long long>(voxels), timings["propagate"].get<double>(), decoded);
    }
  }
}

}  // namespace

void register_propagate(CLI::App& app) {
  auto a = std::make_shared<PropagateArgs>();
  auto* cmd = app.add_subcommand(
      "propagate", "Segment one object on a slice and propagate it through the volume");
  a->model.add_to(*cmd, /*model_required=*/false);
  cmd->add_option("--volume,-v", a->volume, "Volume (NIfTI, NRRD, MHA, DICOM folder)")->required();
  cmd->add_option("--cache", a->cache, "Embedding cache folder (computed or completed as needed)")
      ->required();
  cmd->add_option("--slice,-k", a->slice, "Slice index along --axis that the prompts are on")
      ->required();
  cmd->add_option("--axis", a->axis, "axial, coronal or sagittal (patient orientation)")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--series", a->series,
                  "DICOM folder with several series: the SeriesInstanceUID to use");
  cmd->add_option("--normalize", a->normalize,
                  "Intensity to 8 bit (as in `segment`); must match the cache");
  cmd->add_option("--point,-p", a->points,
                  "X,Y,LABEL in slice pixels; LABEL 1 = object, 0 = background");
  cmd->add_option("--box,-b", a->box, "X0,Y0,X1,Y1 in slice pixels");
  cmd->add_option("--projection", a->projection,
                  "How a mask prompts the next slice (default single_point)")
      ->check(CLI::IsMember({"box", "mask", "points", "points_and_mask", "single_point"}));
  cmd->add_option("--iou-threshold", a->iou_threshold,
                  "Stop where the IoU with the previous slice is lower (0.5)");
  cmd->add_option("--box-extension", a->box_extension,
                  "Grow derived boxes: fraction (<1) or pixels (0.05)");
  cmd->add_option("--out,-o", a->out, "Label map: .nii.gz/.nii/.nrrd/.mha, or .dcm (DICOM SEG)")
      ->required();
  cmd->add_option("--label", a->label, "Label value (default 1)");
  cmd->add_flag("--quiet,-q", a->quiet, "No progress bars");
  cmd->add_flag("--json", a->json, "Print one JSON line with the slice range and timings");
  cmd->callback([a]() { run_propagate(*a); });
}

}  // namespace medicosam::cli
