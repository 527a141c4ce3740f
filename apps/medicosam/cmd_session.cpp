// `medicosam session`: applies a JSON list of interactive actions (new
// object, points, boxes, propagation, commit, undo/redo, export) to one image
// or volume, in order: reproducible interactive runs, with autosave.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/image_session.hpp"
#include "medicosam/segment/tiling.hpp"

namespace medicosam::cli {
namespace {
using nlohmann::json;

struct SessionArgs {
  ModelOptions model;
  std::string positional, image, axis = "axial", normalize, series, cache, script, autosave, resume,
                                 out;
  std::vector<int> tile_shape, halo;
  bool json = false, quiet = false;
};

void run_session(SessionArgs& a) {
  if (!a.positional.empty()) a.image = a.positional;
  if (a.image.empty()) throw InputError("no image: pass IMAGE (or --image)");
  json script;
  {
    const std::string text = read_file(a.script);
    try {
      script = json::parse(text);
    } catch (const json::exception& e) {
      throw InputError("--script '" + a.script + "' is not valid JSON: " + e.what());
    }
  }
  if (script.is_object() && script.contains("actions")) script = script["actions"];
  if (!script.is_array())
    throw InputError("--script '" + a.script + "': expected a JSON list of actions");

  io::ReadOptions ro;
  ro.series_uid = a.series;
  const auto volume = std::make_shared<const io::Volume>(io::read_image(a.image, ro));
  const auto norm =
      a.normalize.empty() ? io::Normalization{} : io::parse_normalization(a.normalize);
  auto slices_ptr = std::make_shared<segment::VolumeSlices>(volume, io::parse_axis(a.axis), norm);
  auto& slices = *slices_ptr;
  auto predictor = std::make_shared<predict::SamPredictor>(a.model.load());

  std::unique_ptr<segment::EmbeddingCache> cache;
  std::unique_ptr<segment::SliceSegmenter> seg;
  segment::SamImageSegmenter image_segmenter(predictor);
  std::unique_ptr<segment::TiledImageSegmenter> tiled;
  if (!a.tile_shape.empty()) {  // large 2D images: prompts are routed to tiles
    if (!volume->is_2d()) throw InputError("--tile-shape applies to 2D images");
    const std::vector<int> halo = a.halo.empty() ? std::vector<int>{0, 0} : a.halo;
    tiled = std::make_unique<segment::TiledImageSegmenter>(
        predictor, predict::Size2{a.tile_shape[0], a.tile_shape[1]},
        predict::Size2{halo[0], halo[1]}, a.cache);
    tiled->set_data_signature(slices.data_signature());
    seg = std::make_unique<segment::ImageStackSegmenter>(
        *tiled, 1, slices.model_size(), [&](int z) { return slices.model_image(z); });
  } else if (!a.cache.empty()) {
    cache =
        std::make_unique<segment::EmbeddingCache>(segment::open_cache(*predictor, slices, a.cache));
    segment::compute_embeddings(*predictor, slices, *cache, !a.quiet && !a.json);
    seg = std::make_unique<segment::CachedSliceSegmenter>(*predictor, *cache);
  } else {  // slices are encoded when first prompted
    seg = std::make_unique<segment::ImageStackSegmenter>(
        image_segmenter, slices.count(), slices.model_size(),
        [&](int z) { return slices.model_image(z); });
  }
  // `seg` and what it refers to outlive the session: a non-owning handle.
  segment::ImageSession image_session(
      slices_ptr, std::shared_ptr<segment::SliceSegmenter>(seg.get(), [](segment::SliceSegmenter*) {}),
      a.image);
  auto& session = image_session.session();
  if (!a.resume.empty()) session.restore(a.resume);
  std::string autosave = a.autosave;
  if (autosave.empty() && !a.out.empty()) autosave = a.out + ".session.json";
  if (!autosave.empty()) session.set_autosave(autosave);

  for (size_t i = 0; i < script.size(); ++i) {
    const auto& action = script[i];
    json result;
    try {
      result = image_session.apply(action);
    } catch (const Error& e) {
      throw InputError("--script '" + a.script + "', action " + std::to_string(i + 1) + ": " +
                       e.what());
    }
    if (a.json) std::cout << result.dump() << std::endl;
  }
  if (!a.out.empty()) image_session.export_labels(a.out);
  if (!a.quiet && !a.json) {
    const auto counts = session.label_counts();
    std::fprintf(stderr, "%zu actions applied; %zu committed object(s)%s%s\n", script.size(),
                 counts.size(), a.out.empty() ? "" : ", wrote ", a.out.c_str());
  }
}

}  // namespace

void register_session(CLI::App& app) {
  auto a = std::make_shared<SessionArgs>();
  auto* cmd = app.add_subcommand("session",
                                 "Apply a JSON list of interactive actions to an image or volume");
  a->model.add_to(*cmd, /*model_required=*/false);
  cmd->add_option("image", a->positional, "Image or volume");
  cmd->add_option("--image,-i", a->image, "Image or volume (same as the positional argument)");
  cmd->add_option("--axis", a->axis, "Volumes: axial, coronal or sagittal")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--normalize", a->normalize, "Intensity to 8 bit (as in `segment`)");
  cmd->add_option("--series", a->series,
                  "DICOM folder with several series: the SeriesInstanceUID to use");
  cmd->add_option("--cache", a->cache,
                  "Embedding cache folder (else slices are encoded when first prompted)");
  cmd->add_option("--tile-shape", a->tile_shape, "Large 2D images: tiles of H,W (micro_sam tiling)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--halo", a->halo, "Tile overlap H,W (with --tile-shape)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--script", a->script, "JSON list of actions (docs/volumes.md)")->required();
  cmd->add_option("--autosave", a->autosave,
                  "Session state written after every change (default OUT.session.json)");
  cmd->add_option("--resume", a->resume, "Continue from a saved / autosaved session state");
  cmd->add_option("--out,-o", a->out,
                  "Committed labels at the end: .nii.gz/.nii/.nrrd/.mha, .png (2D), .dcm");
  cmd->add_flag("--json", a->json, "Print one JSON result line per action");
  cmd->add_flag("--quiet,-q", a->quiet, "No progress or summary");
  cmd->callback([a]() { run_session(*a); });
}

}  // namespace medicosam::cli
