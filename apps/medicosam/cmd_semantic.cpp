// `medicosam semantic`: automatic semantic segmentation without prompts by the
// UNETR head of a checkpoint (micro_sam / MedicoSAM `decoder_state`), on a 2D
// image or slice by slice through a volume; the label map lands on the
// source's geometry through the shared writer.
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/model/unetr.hpp"
#include "medicosam/segment/semantic.hpp"
#include "medicosam/segment/embedding_cache.hpp"

namespace medicosam::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct SemanticArgs {
  ModelOptions model;
  ImageOptions image;
  std::string decoder;
  std::string cache;
  std::string out;
  bool quiet = false, json = false;
};

void run_semantic(const SemanticArgs& a) {
  const auto t_start = Clock::now();
  nlohmann::json timings;
  const auto format = io::segmentation_format(a.out);  // InputError naming --out first

  auto t0 = Clock::now();
  const auto img = load_image(a.image);
  auto& slices = *img.slices;
  timings["read_image"] = ms_since(t0);
  if (format == io::SegmentationFormat::kDicomSeg && img.volume->format != "DICOM") {
    throw InputError("--out '" + a.out + "': a DICOM SEG needs a DICOM series as input, '" + a.image.path + "' is " +
                     img.volume->format);
  }
  // A volume is segmented slice by slice, unless --slice picks one.
  const bool one_slice = !img.is_volume() || a.image.slice.has_value();
  if (format == io::SegmentationFormat::kPng && !one_slice) {
    throw InputError("--out '" + a.out + "': a PNG holds one slice; write the volume's labels as .nii.gz, .nrrd, "
                     ".mha or .dcm, or pick a slice with --slice");
  }

  // The head first: a checkpoint without one fails before SAM is loaded.
  t0 = Clock::now();
  const std::string model_path = a.model.model.empty() ? default_model_path() : a.model.model;
  const auto head = model::SemanticHead::load(model_path, a.decoder, a.model.device);
  auto predictor = a.model.load();
  timings["load_model"] = ms_since(t0);
  const auto& hc = head.config();
  if (hc.embed_dim != predictor.model().embedding_channels) {
    throw InputError("the semantic head of '" + head.source() + "' reads " + std::to_string(hc.embed_dim) +
                     "-channel embeddings, but '" + model_path + "' makes " +
                     std::to_string(predictor.model().embedding_channels));
  }

  std::optional<segment::EmbeddingCache> cache;
  int embedded = 0;  // slices the cache lacked and that were encoded into it
  if (!a.cache.empty()) {
    t0 = Clock::now();
    cache.emplace(segment::open_cache(predictor, slices, a.cache));
    embedded = segment::compute_embeddings(predictor, slices, *cache, !a.quiet && !a.json).computed;
    timings["embed"] = ms_since(t0);
  }

  std::vector<int> todo;
  if (one_slice) {
    todo.push_back(img.slice);
  } else {
    for (int z = 0; z < slices.count(); ++z) todo.push_back(z);
  }
  io::LabelMap labels(img.volume->geometry());
  std::map<uint16_t, int64_t> pixels;  // per class, on the model grid
  double encode_ms = 0, head_ms = 0;
  {
    Progress bar(static_cast<int64_t>(todo.size()), "semantic segmentation", !a.quiet && !a.json && todo.size() > 1);
    for (int z : todo) {
      auto t = Clock::now();
      predict::Embedding emb;
      if (cache) {
        emb = cache->load(z);
      } else {
        const auto rgb = slices.model_image(z);
        emb = predictor.encode(rgb.data.data(), rgb.height, rgb.width, 3);
      }
      encode_ms += ms_since(t);
      t = Clock::now();
      const auto orig = emb.original_size(), input = emb.input_size();
      const auto lab = head.segment(emb.to_npy(), input.height, input.width, orig.height, orig.width,
                                    predictor.model().img_size);
      std::map<uint16_t, segment::BinaryMask> masks;
      for (size_t i = 0; i < lab.size(); ++i) {
        if (!lab[i]) continue;
        auto it = masks.find(lab[i]);
        if (it == masks.end()) it = masks.emplace(lab[i], segment::BinaryMask(orig.height, orig.width)).first;
        it->second.data[i] = 1;
        ++pixels[lab[i]];
      }
      for (const auto& [l, m] : masks) slices.paste(labels, z, m, l);
      head_ms += ms_since(t);
      bar.advance();
    }
    bar.finish();
  }
  timings[cache ? "load_embeddings" : "encode"] = encode_ms;
  timings["head"] = head_ms;

  // Describe the classes (DICOM SEG segments): made by an algorithm, not a person.
  segment::describe_semantic_classes(labels, hc.num_classes);

  t0 = Clock::now();
  if (format == io::SegmentationFormat::kPng) {  // the slice's label values
    io::write_segmentation(a.out, slices.slice_labels(labels, img.slice), slices.slice(img.slice).image,
                           a.image.path);
  } else {
    io::write_segmentation(a.out, labels, *img.volume, a.image.path);
  }
  timings["write"] = ms_since(t0);
  timings["total"] = ms_since(t_start);

  if (a.json) {
    nlohmann::json counts = nlohmann::json::object();
    for (uint16_t l : labels.labels_present()) counts[std::to_string(l)] = labels.count(l);
    nlohmann::json j{{"out", a.out},
                     {"num_classes", hc.num_classes},
                     {"slices", todo.size()},
                     {"voxels_per_label", counts},
                     {"head", hc.describe()},
                     {"timings_ms", timings}};
    if (img.is_volume()) j["axis"] = a.image.axis;
    if (cache) j["embedded_slices"] = embedded;
    std::cout << j.dump() << std::endl;
  } else if (!a.quiet) {
    std::string present;
    for (const auto& [l, n] : pixels) present += (present.empty() ? "" : ", ") + std::to_string(l);
    std::fprintf(stderr, "wrote %s: %zu slice(s), labels present: %s (head %.0f ms per slice)\n", a.out.c_str(),
                 todo.size(), present.empty() ? "none" : present.c_str(), head_ms / todo.size());
  }
}

}  // namespace

void register_semantic(CLI::App& app) {
  auto args = std::make_shared<SemanticArgs>();
  auto* cmd = app.add_subcommand(
      "semantic", "Automatic semantic segmentation (no prompts) with the checkpoint's UNETR head");
  args->model.add_to(*cmd, /*model_required=*/false);
  auto& im = args->image;
  cmd->add_option("image", im.path, "Image (PNG/JPEG/TIFF) or volume (NIfTI, NRRD, MHA, DICOM folder)")->required();
  cmd->add_option("--slice", im.slice, "Volumes: only this slice index along --axis (default: every slice)");
  cmd->add_option("--axis", im.axis, "Volumes: the slicing axis, axial, coronal or sagittal (patient orientation)")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--series", im.series, "DICOM folder with several series: the SeriesInstanceUID to use");
  cmd->add_option("--normalize", im.normalize,
                  "Intensity to 8 bit: minmax (default), percentile[:LO:HI], ct:soft-tissue|lung|bone|brain, "
                  "window:W:L; optional :slice or :volume scope (must match a --cache)");
  cmd->add_option("--decoder", args->decoder,
                  "Separate UNETR decoder file (micro_sam's decoder_path: .pth state dict or .safetensors) "
                  "instead of the checkpoint's own head");
  cmd->add_option("--cache", args->cache,
                  "Embedding cache folder: computed or completed as needed, then only the head runs");
  cmd->add_option("--out,-o", args->out,
                  "Label map: .nii.gz/.nii/.nrrd/.mha, .dcm (DICOM SEG, DICOM input), or .png (2D / one --slice)")
      ->required();
  cmd->add_flag("--quiet,-q", args->quiet, "No progress bar");
  cmd->add_flag("--json", args->json, "Print one JSON line with label counts and timings");
  cmd->callback([args]() { run_semantic(*args); });
}

}  // namespace medicosam::cli
