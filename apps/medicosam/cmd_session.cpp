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
#include "medicosam/io/write.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/session.hpp"
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

// Writes the committed labels as a label map on the source grid.
void export_labels(const std::string& path, const segment::Session& s,
                   const segment::VolumeSlices& slices, const std::string& source_path) {
  io::LabelMap labels(slices.volume().geometry());
  const auto ms = slices.model_size();
  for (int z = 0; z < s.num_slices(); ++z) {
    const auto lab = s.labels(z);
    std::map<uint16_t, bool> present;
    for (auto v : lab)
      if (v) present[v] = true;
    for (const auto& [l, _] : present) {
      segment::BinaryMask m(ms.height, ms.width);
      for (size_t i = 0; i < lab.size(); ++i) m.data[i] = lab[i] == l;
      const auto sm = slices.mask_to_slice(m);
      io::paste_slice(labels, slices.placement(z), io::Mask2D{sm.height, sm.width, sm.data}, l,
                      /*replace=*/false);
    }
  }
  for (const auto& [l, name] : s.state().names) {
    io::SegmentInfo info;
    info.label = l;
    info.name = name;
    labels.segments.push_back(info);
  }
  const bool dcm = path.size() > 4 && path.substr(path.size() - 4) == ".dcm";
  if (dcm) {
    write_dicom_seg_output(path, source_path, slices.volume(), labels);
  } else {
    io::write_label_map(path, labels);
  }
}

// Slice pixels -> model grid for the coordinates in an action.
json to_model(const json& a, const segment::VolumeSlices& slices) {
  if (!slices.resampled()) return a;
  json b = a;
  if (a.contains("x") && a.contains("y") && a["x"].is_number() && a["y"].is_number()) {
    predict::Prompt p;
    p.points = {{a["x"].get<double>(), a["y"].get<double>(), 1}};
    const auto q = slices.prompt_to_model(p);
    b["x"] = q.points[0].x;
    b["y"] = q.points[0].y;
  }
  if (a.contains("box") && a["box"].is_array() && a["box"].size() == 4) {
    predict::Prompt p;
    p.box = predict::Box{a["box"][0].get<double>(), a["box"][1].get<double>(),
                         a["box"][2].get<double>(), a["box"][3].get<double>()};
    const auto q = slices.prompt_to_model(p);
    b["box"] = {q.box->x0, q.box->y0, q.box->x1, q.box->y1};
  }
  return b;
}

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
  const auto volume = io::read_image(a.image, ro);
  const auto norm =
      a.normalize.empty() ? io::Normalization{} : io::parse_normalization(a.normalize);
  segment::VolumeSlices slices(volume, io::parse_axis(a.axis), norm);
  auto predictor = std::make_shared<predict::SamPredictor>(a.model.load());

  std::unique_ptr<segment::EmbeddingCache> cache;
  std::unique_ptr<segment::SliceSegmenter> seg;
  segment::SamImageSegmenter image_segmenter(predictor);
  std::unique_ptr<segment::TiledImageSegmenter> tiled;
  if (!a.tile_shape.empty()) {  // large 2D images: prompts are routed to tiles
    if (!volume.is_2d()) throw InputError("--tile-shape applies to 2D images");
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
  segment::Session session(*seg);
  if (!a.resume.empty()) session.restore(a.resume);
  std::string autosave = a.autosave;
  if (autosave.empty() && !a.out.empty()) autosave = a.out + ".session.json";
  if (!autosave.empty()) session.set_autosave(autosave);

  for (size_t i = 0; i < script.size(); ++i) {
    const auto& action = script[i];
    json result;
    try {
      const std::string what = action.is_object() ? action.value("action", "") : "";
      if (what == "export" || what == "save") {
        if (!action.contains("path") || !action["path"].is_string())
          throw InputError("missing \"path\"");
        const auto path = action["path"].get<std::string>();
        if (what == "export") {
          export_labels(path, session, slices, a.image);
        } else {
          write_file_atomic(path, session.to_json().dump());
        }
        result = {{"action", what}, {"path", path}};
      } else {
        result = session.apply(to_model(action, slices));
      }
    } catch (const Error& e) {
      throw InputError("--script '" + a.script + "', action " + std::to_string(i + 1) + ": " +
                       e.what());
    }
    if (a.json) std::cout << result.dump() << std::endl;
  }
  if (!a.out.empty()) export_labels(a.out, session, slices, a.image);
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
