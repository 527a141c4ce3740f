// `medicosam embed`: the image embedding of a 2D image (or one slice) as .npy,
// or of every slice of a volume into an embedding cache (micro_sam's zarr layout).
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/tiling.hpp"

namespace medicosam::cli {
namespace {

struct EmbedArgs {
  ModelOptions model;
  ImageOptions image;
  std::string positional;
  std::string out;
  std::string cache;
  bool fp16 = false;
  std::string compress;
  std::vector<int> tile_shape, halo;
  bool quiet = false;
  bool json = false;
};

void run_embed_npy(const EmbedArgs& a) {
  using Clock = std::chrono::steady_clock;
  const auto img = load_image(a.image);
  const auto rgb = img.slices->model_image(img.slice);
  auto predictor = a.model.load();
  const auto t0 = Clock::now();
  const auto emb = predictor.encode(rgb.data.data(), rgb.height, rgb.width, 3);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const auto arr = emb.to_npy();
  write_npy(a.out, arr);
  if (a.json) {
    nlohmann::json j{{"out", a.out},
                     {"shape", arr.shape},
                     {"original_size", {rgb.height, rgb.width}},
                     {"input_size", {emb.input_size().height, emb.input_size().width}},
                     {"timings_ms", {{"encode", ms}}}};
    std::cout << j.dump() << std::endl;
  } else {
    std::fprintf(stderr, "wrote %s: float32 %s in %.0f ms\n", a.out.c_str(),
                 arr.shape_string().c_str(), ms);
  }
}

void run_embed_cache(const EmbedArgs& a) {
  io::ReadOptions ro;
  ro.series_uid = a.image.series;
  const auto volume = io::read_image(a.image.path, ro);
  const auto norm =
      a.image.normalize.empty() ? io::Normalization{} : io::parse_normalization(a.image.normalize);
  segment::VolumeSlices slices(volume, io::parse_axis(a.image.axis), norm);
  if (!a.tile_shape.empty()) {  // large 2D images: micro_sam's tiled layout
    if (!volume.is_2d())
      throw InputError("--tile-shape applies to 2D images; volumes are cached per slice");
    auto predictor = std::make_shared<predict::SamPredictor>(a.model.load());
    const std::vector<int> halo = a.halo.empty() ? std::vector<int>{0, 0} : a.halo;
    segment::TiledImageSegmenter tiled(predictor, {a.tile_shape[0], a.tile_shape[1]},
                                       {halo[0], halo[1]}, a.cache);
    tiled.set_data_signature(slices.data_signature());
    const auto img = slices.model_image(0);
    tiled.set_image(img.data.data(), img.height, img.width);
    if (a.json) {
      std::cout << nlohmann::json{{"cache", a.cache},
                                  {"tiles", tiled.tiling().count()},
                                  {"computed", tiled.computed_tiles()}}
                       .dump()
                << std::endl;
    } else if (!a.quiet) {
      std::fprintf(stderr, "%s: %d tiles (%d computed)\n", a.cache.c_str(), tiled.tiling().count(),
                   tiled.computed_tiles());
    }
    return;
  }
  auto predictor = a.model.load();
  segment::CacheOptions co;
  co.fp16 = a.fp16;
  co.compressor = a.compress == "none" ? "" : a.compress;
  auto cache = segment::open_cache(predictor, slices, a.cache, co);
  const int before = cache.count_present();
  if (before > 0 && before < slices.count() && !a.quiet) {
    std::fprintf(stderr, "resuming %s: %d of %d slices already embedded\n", a.cache.c_str(), before,
                 slices.count());
  }
  const auto st = segment::compute_embeddings(predictor, slices, cache, !a.quiet && !a.json);
  const double per_slice = st.computed ? 1000.0 * st.seconds / st.computed : 0.0;
  if (a.json) {
    nlohmann::json j{
        {"cache", a.cache},
        {"slices", slices.count()},
        {"computed", st.computed},
        {"reused", st.reused},
        {"axis", slices.volume().is_2d() ? "" : io::axis_name(slices.axis())},
        {"normalization", io::to_string(slices.normalization())},
        {"dtype", cache.dtype() == "<f2" ? "float16" : "float32"},
        {"original_size", {slices.model_size().height, slices.model_size().width}},
        {"data_signature", cache.attributes().value("data_signature", "")},
        {"timings_ms", {{"encode_total", 1000.0 * st.seconds}, {"encode_per_slice", per_slice}}}};
    std::cout << j.dump() << std::endl;
  } else if (!a.quiet) {
    std::fprintf(stderr, "%s: %d slices (%d computed, %d reused), %.0f ms per slice\n",
                 a.cache.c_str(), slices.count(), st.computed, st.reused, per_slice);
  }
}

void run_embed(EmbedArgs& a) {
  if (!a.positional.empty()) {
    if (!a.image.path.empty())
      throw InputError("give the image either as VOLUME or with --image, not both");
    a.image.path = a.positional;
  }
  if (a.image.path.empty()) throw InputError("no input: pass VOLUME (or --image IMG)");
  if (a.out.empty() == a.cache.empty()) {
    throw InputError(
        "pass either --out EMB.npy (one image or slice) or --cache DIR (every slice of a volume)");
  }
  if (!a.cache.empty()) {
    if (a.image.slice)
      throw InputError("--slice does not apply to --cache (every slice is embedded)");
    run_embed_cache(a);
  } else {
    if (a.fp16 || !a.compress.empty())
      throw InputError("--fp16 and --compress apply to --cache only");
    run_embed_npy(a);
  }
}

}  // namespace

void register_embed(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  auto* cmd = app.add_subcommand("embed",
                                 "Compute image embeddings: one image/slice as .npy (--out), or "
                                 "every slice of a volume into a cache (--cache)");
  args->model.add_to(*cmd, /*model_required=*/false);
  cmd->add_option("volume", args->positional,
                  "Image or volume (NIfTI, NRRD, MHA, DICOM folder, PNG/JPEG/TIFF)");
  cmd->add_option("--image,-i", args->image.path,
                  "Image or volume (same as the positional argument)");
  cmd->add_option("--slice", args->image.slice,
                  "With --out: slice index along --axis (default: the middle slice)");
  cmd->add_option("--axis", args->image.axis,
                  "Volumes: axial, coronal or sagittal (patient orientation)")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--series", args->image.series,
                  "DICOM folder with several series: the SeriesInstanceUID to use");
  cmd->add_option(
      "--normalize", args->image.normalize,
      "Intensity to 8 bit: minmax (default), percentile[:LO:HI], ct:soft-tissue|lung|bone|brain, "
      "window:W:L; optional :slice or :volume scope");
  cmd->add_option("--out,-o", args->out, "Output .npy (one image or slice)");
  cmd->add_option("--cache", args->cache,
                  "Embedding cache folder (zarr, micro_sam layout); resumed if partial");
  cmd->add_flag("--fp16", args->fp16, "Cache: store float16 (half the disk space)");
  cmd->add_option("--compress", args->compress, "Cache: none (default), zlib or gzip")
      ->check(CLI::IsMember({"none", "zlib", "gzip"}));
  cmd->add_option("--tile-shape", args->tile_shape,
                  "Cache of a large 2D image in tiles: H,W (micro_sam tiling)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--halo", args->halo, "Tile overlap: H,W (with --tile-shape)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_flag("--quiet,-q", args->quiet, "No progress bar or summary");
  cmd->add_flag("--json", args->json, "Print one JSON line with shape/slices and timings");
  cmd->callback([args]() { run_embed(*args); });
}

}  // namespace medicosam::cli
