// `medicosam embed`: the image embedding of a 2D image (or one slice) as .npy.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"

namespace medicosam::cli {
namespace {

struct EmbedArgs {
  ModelOptions model;
  ImageOptions image;
  std::string out;
  bool json = false;
};

void run_embed(const EmbedArgs& a) {
  using Clock = std::chrono::steady_clock;
  if (a.out.empty()) throw InputError("--out EMB.npy is required");
  auto img = load_image(a.image);
  auto predictor = a.model.load();
  const auto t0 = Clock::now();
  const auto emb = predictor.encode(img.model_rgb.data.data(), img.model_rgb.height, img.model_rgb.width, 3);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const auto arr = emb.to_npy();
  write_npy(a.out, arr);
  if (a.json) {
    nlohmann::json j{{"out", a.out},
                     {"shape", arr.shape},
                     {"original_size", {img.model_rgb.height, img.model_rgb.width}},
                     {"input_size", {emb.input_size().height, emb.input_size().width}},
                     {"timings_ms", {{"encode", ms}}}};
    std::cout << j.dump() << std::endl;
  } else {
    std::fprintf(stderr, "wrote %s: float32 %s in %.0f ms\n", a.out.c_str(), arr.shape_string().c_str(), ms);
  }
}

}  // namespace

void register_embed(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  auto* cmd = app.add_subcommand("embed", "Compute the image embedding (float32 (1,256,H/16,W/16) .npy)");
  args->model.add_to(*cmd, /*model_required=*/false);
  args->image.add_to(*cmd);
  cmd->add_option("--out,-o", args->out, "Output .npy")->required();
  cmd->add_flag("--json", args->json, "Print one JSON line with shape and timing");
  cmd->callback([args]() { run_embed(*args); });
}

}  // namespace medicosam::cli
