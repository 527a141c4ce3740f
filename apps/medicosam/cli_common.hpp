#pragma once
// Shared pieces of the `medicosam` subcommands: model options, image loading,
// prompt parsing and output writing.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/volume_slices.hpp"

namespace medicosam::cli {

// --model, --threads, --device, --precision.
struct ModelOptions {
  std::string model;
  int threads = 0;
  std::string device = "cpu";
  // auto by default, as the server: bf16 where the CPU computes it natively
  // (masks within IoU 0.98 of fp32, tested), fp32 elsewhere; fp32 gives the
  // reference numerics.
  std::string precision = "auto";
  void add_to(CLI::App& app, bool model_required = true);
  predict::SamPredictor load() const;
};

// Which 2D image of an input file to segment and how to turn it into 8-bit RGB.
struct ImageOptions {
  std::string path;
  std::optional<int64_t> slice;  // volumes: index along --axis (default: middle)
  std::string axis = "axial";
  std::string normalize;  // "" = minmax (micro_sam's default)
  std::string series;     // DICOM folders with several series: SeriesInstanceUID
  void add_to(CLI::App& app, bool positional = false);
};

// A loaded input: the volume as read (a 2D image is a one-slice volume), its
// slices as the model sees them (segment::VolumeSlices: normalisation, square
// pixels, the mappings of prompts and masks), and the slice the options chose.
struct LoadedImage {
  std::shared_ptr<const io::Volume> volume;
  std::shared_ptr<segment::VolumeSlices> slices;
  int slice = 0;
  bool is_volume() const { return !volume->is_2d(); }
};
LoadedImage load_image(const ImageOptions& opts);

// Parses "X,Y,LABEL" and "X0,Y0,X1,Y1"; throws InputError naming the option.
predict::Point parse_point(const std::string& s);
predict::Box parse_box(const std::string& s);

// The image with the mask tinted and outlined, and the prompts drawn.
void write_overlay_png(const std::string& path, const io::RGB8Image& image, const std::vector<uint8_t>& mask,
                       const predict::Prompt& prompt);

// Where the embedded default model lives (MEDICOSAM_MODEL overrides).
std::string default_model_path();
// The built web UI folder (MEDICOSAM_WEB_DIR, else installed, else the build tree), or "" if none.
std::string default_web_dir();

}  // namespace medicosam::cli
