// `medicosam info PATH`: what a checkpoint, image, volume or DICOM folder holds.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/segment/amg.hpp"

namespace medicosam::cli {
namespace {

// Checkpoints are recognised by content: a zip archive (torch.save) or a
// safetensors header (8-byte length, then '{').
bool looks_like_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, 9);
  if (in.gcount() >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return true;
  return in.gcount() == 9 && head[8] == '{';
}

struct InfoArgs {
  std::string path;
  bool json = false;
};

void run_info(const InfoArgs& a) {
  std::error_code ec;
  if (!std::filesystem::exists(a.path, ec)) throw InputError("'" + a.path + "' does not exist");
  if (looks_like_checkpoint(a.path)) {
    auto j = model::describe_checkpoint(a.path);
    // Automatic-mask defaults (metadata medicosam.amg; `medicosam amg` uses them).
    std::string amg_line;
    try {
      const auto d = segment::amg_defaults_from_metadata(j.value("metadata", nlohmann::json()), a.path);
      j["amg_defaults"] = {{"pred_iou_thresh", d.pred_iou_thresh},
                           {"stability_score_thresh", d.stability_score_thresh},
                           {"from_checkpoint", d.from_checkpoint},
                           {"source", d.describe()}};
      char buf[128];
      std::snprintf(buf, sizeof buf, "pred_iou_thresh %.4g, stability_score_thresh %.4g (", d.pred_iou_thresh,
                    d.stability_score_thresh);
      amg_line = buf + d.describe() + ")";
    } catch (const CheckpointError& e) {
      j["amg_defaults"] = {{"error", e.what()}};
      amg_line = std::string("unusable: ") + e.what();
    }
    if (a.json) {
      std::cout << j.dump() << std::endl;
      return;
    }
    std::cout << "checkpoint:   " << a.path << "\n"
              << "format:       " << j["format"].get<std::string>() << " (" << j["layout"].get<std::string>()
              << (j["stripped_prefix"].get<std::string>().empty()
                      ? std::string()
                      : ", prefix '" + j["stripped_prefix"].get<std::string>() + "' stripped")
              << ")\n"
              << "weights:      " << j["stored_dtype"].get<std::string>() << "\n"
              << "architecture: " << j["architecture"].get<std::string>() << "\n"
              << "parameters:   " << j["parameters"].get<int64_t>() << "\n"
              << "input:        " << j["image_size"] << "x" << j["image_size"] << ", patch " << j["patch_size"]
              << "\n"
              << "encoder:      " << j["encoder"].dump() << "\n"
              << "decoder:      " << j["decoder"].dump() << "\n"
              << "embedding:    " << j["embedding_shape"].dump() << "\n";
    if (j.contains("metadata")) std::cout << "metadata:     " << j["metadata"].dump() << "\n";
    std::cout << "amg defaults: " << amg_line << "\n";
    if (j.contains("semantic_head")) {
      const auto& h = j["semantic_head"];
      std::cout << "semantic:     "
                << (h.contains("error") ? "head present but unusable: " + h["error"].get<std::string>()
                                        : h["description"].get<std::string>() + ", " +
                                              std::to_string(h["parameters"].get<int64_t>()) + " parameters")
                << "\n";
    }
    return;
  }
  const auto info = io::probe_image(a.path);
  if (!a.json) {
    std::cout << io::describe(info);
    return;
  }
  const auto& g = info.geometry;
  nlohmann::json j{{"path", info.path},
                   {"format", info.format},
                   {"size", g.size},
                   {"spacing", g.spacing},
                   {"origin", g.origin},
                   {"direction", g.direction},
                   {"orientation", info.orientation},
                   {"pixel_type", io::pixel_type_name(info.pixel_type)},
                   {"components", info.components},
                   {"modality", info.modality}};
  if (!info.series.empty()) {
    j["selected_series"] = info.selected_series;
    for (const auto& s : info.series) {
      j["series"].push_back({{"uid", s.series_uid},
                             {"number", s.series_number},
                             {"description", s.description},
                             {"modality", s.modality},
                             {"files", s.num_files},
                             {"rows", s.rows},
                             {"columns", s.columns}});
    }
  }
  std::cout << j.dump() << std::endl;
}

}  // namespace

void register_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  auto* cmd = app.add_subcommand("info", "Describe a checkpoint, image, volume or DICOM folder");
  cmd->add_option("path", args->path, "Checkpoint (.pth/.pt/.safetensors), image, volume or DICOM folder")
      ->required();
  cmd->add_flag("--json", args->json, "Machine-readable output");
  cmd->callback([args]() { run_info(*args); });
}

}  // namespace medicosam::cli
