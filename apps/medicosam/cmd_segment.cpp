// `medicosam segment`: one object from point / box / mask prompts on a 2D
// image or one slice of a volume.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/io/write.hpp"

namespace medicosam::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Low-res logits given as (L,L), (1,L,L) or (1,1,L,L) float32.
std::vector<float> read_mask_input(const std::string& path, int low_res) {
  const auto a = read_npy(path);
  int64_t n = 1;
  for (auto d : a.shape) n *= d;
  const bool square = a.shape.size() >= 2 && a.shape[a.shape.size() - 1] == low_res &&
                      a.shape[a.shape.size() - 2] == low_res && n == int64_t(low_res) * low_res;
  if (!square) {
    throw InputError("--mask-input '" + path + "': expected low-res logits of shape (1,1," + std::to_string(low_res) +
                     "," + std::to_string(low_res) + ") for this model, got " + a.shape_string());
  }
  return a.to_float();
}

struct SegmentArgs {
  ModelOptions model;
  ImageOptions image;
  std::vector<std::string> points;
  std::string box;
  std::string mask_input;
  std::string embedding;
  bool multimask = false;
  std::string out;
  std::string overlay;
  std::string logits_out;
  int label = 1;
  bool json = false;
};

void run_segment(const SegmentArgs& a) {
  const auto t_start = Clock::now();
  nlohmann::json timings;
  // Cheap checks first: nothing is loaded for a command that cannot succeed.
  predict::Prompt prompt;
  for (const auto& p : a.points) prompt.points.push_back(parse_point(p));
  if (!a.box.empty()) prompt.box = parse_box(a.box);
  if (prompt.points.empty() && !prompt.box && a.mask_input.empty()) {
    throw InputError("no prompt given: pass at least one --point X,Y,LABEL, a --box X0,Y0,X1,Y1 or --mask-input");
  }
  const auto format = io::segmentation_format(a.out);
  if (a.label < 1 || a.label > 65535) throw InputError("--label must be in 1..65535");

  auto t0 = Clock::now();
  const auto img = load_image(a.image);
  const auto& slices = *img.slices;
  timings["read_image"] = ms_since(t0);
  if (format == io::SegmentationFormat::kDicomSeg && img.volume->format != "DICOM") {
    throw InputError("--out '" + a.out + "': a DICOM SEG needs a DICOM series as input, '" + a.image.path +
                     "' is " + img.volume->format);
  }
  const auto model_size = slices.model_size();
  const int H = model_size.height, W = model_size.width;
  predict::validate_prompt(prompt, slices.slice_size());

  t0 = Clock::now();
  auto predictor = a.model.load();
  timings["load_model"] = ms_since(t0);
  if (!a.mask_input.empty()) prompt.mask_input = read_mask_input(a.mask_input, predictor.model().low_res_size);

  t0 = Clock::now();
  if (!a.embedding.empty()) {
    const auto arr = read_npy(a.embedding);
    const predict::Size2 orig{H, W};
    predictor.set_embedding(predict::Embedding::from_npy(
        arr, orig, predict::preprocess_shape(H, W, predictor.model().img_size)));
    timings["load_embedding"] = ms_since(t0);
  } else {
    const auto rgb = slices.model_image(img.slice);
    predictor.set_image(rgb.data.data(), H, W, 3);
    timings["encode"] = ms_since(t0);
  }

  t0 = Clock::now();
  const auto pred = predictor.predict(slices.prompt_to_model(prompt), a.multimask);
  timings["decode"] = ms_since(t0);
  const int best = a.multimask ? pred.best() : 0;
  const segment::BinaryMask model_mask(H, W, pred.mask(best));

  t0 = Clock::now();
  io::LabelMap labels(img.volume->geometry());
  slices.paste(labels, img.slice, model_mask, static_cast<uint16_t>(a.label));
  const auto slice_map = slices.slice_labels(labels, img.slice);
  const int SH = static_cast<int>(slice_map.size()[1]), SW = static_cast<int>(slice_map.size()[0]);
  std::vector<uint8_t> mask(static_cast<size_t>(slice_map.num_voxels()));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = slice_map.data()[i] != 0;
  if (format == io::SegmentationFormat::kPng) {  // the slice's mask, 0 / 255
    io::SegmentationWriteOptions png;
    png.png_mask = true;
    io::write_segmentation(a.out, slice_map, slices.slice(img.slice).image, a.image.path, png);
  } else {
    io::write_segmentation(a.out, labels, *img.volume, a.image.path);
  }
  if (!a.logits_out.empty()) {
    const auto low = pred.low_res(best);
    const int L = pred.low_res_size;
    write_npy(a.logits_out, make_npy(NpyType::kFloat32, {1, 1, L, L}, low.data()));
  }
  if (!a.overlay.empty()) write_overlay_png(a.overlay, slices.slice_image(img.slice), mask, prompt);
  timings["write"] = ms_since(t0);
  timings["total"] = ms_since(t_start);

  int64_t area = 0;
  for (auto v : mask) area += v;
  if (a.json) {
    nlohmann::json j;
    j["out"] = a.out;
    j["height"] = SH;
    j["width"] = SW;
    if (slices.resampled()) j["model_input_size"] = {H, W};
    j["iou_predictions"] = pred.iou_predictions;
    j["selected"] = best;
    j["mask_pixels"] = area;
    j["timings_ms"] = timings;
    std::cout << j.dump() << std::endl;
  } else {
    std::fprintf(stderr, "wrote %s: %lld pixels, predicted IoU %.3f (encode %.0f ms, decode %.1f ms)\n",
                 a.out.c_str(), static_cast<long long>(area), pred.iou_predictions[best],
                 timings.value("encode", 0.0), timings["decode"].get<double>());
  }
}

}  // namespace

void register_segment(CLI::App& app) {
  auto args = std::make_shared<SegmentArgs>();
  auto* cmd = app.add_subcommand("segment", "Segment one object from point/box/mask prompts");
  args->model.add_to(*cmd, /*model_required=*/false);
  args->image.add_to(*cmd);
  cmd->add_option("--point,-p", args->points, "X,Y,LABEL in image pixels; LABEL 1 = object, 0 = background")
      ->allow_extra_args(false);
  cmd->add_option("--box,-b", args->box, "X0,Y0,X1,Y1 in image pixels");
  cmd->add_option("--mask-input", args->mask_input, "Previous low-res logits (.npy from --logits-out)");
  cmd->add_option("--embedding", args->embedding, "Precomputed image embedding (.npy from `medicosam embed`)");
  cmd->add_flag("--multimask", args->multimask, "Predict 3 masks and keep the one with the highest predicted IoU");
  cmd->add_option("--out,-o", args->out, "Mask: .png (2D), .nii.gz/.nii/.nrrd/.mha (label map), .dcm (DICOM SEG)")
      ->required();
  cmd->add_option("--overlay", args->overlay, "Also write the image with the mask and prompts drawn (.png)");
  cmd->add_option("--logits-out", args->logits_out, "Low-res logits of the written mask (.npy, for --mask-input)");
  cmd->add_option("--label", args->label, "Label value in 3D outputs (default 1)");
  cmd->add_flag("--json", args->json, "Print one JSON line with IoU predictions and timings");
  cmd->callback([args]() { run_segment(*args); });
}

}  // namespace medicosam::cli
