#pragma once
// Shared pieces of the `medicosam` subcommands: model options, image loading,
// prompt parsing and output writing.
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/predict/predictor.hpp"

namespace medicosam::cli {

// --model, --threads, --device.
struct ModelOptions {
  std::string model;
  int threads = 0;
  std::string device = "cpu";
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

// A loaded input: the full volume (for 3D outputs), the 2D slice being
// segmented, and what the model sees. Slices with anisotropic pixels (e.g. a
// coronal cut of a volume with thick slices) are resampled to square pixels
// for the model, so anatomy keeps its shape; prompts and masks are mapped
// between the two grids.
struct LoadedImage {
  io::Volume volume;      // as read (a 2D image is a one-slice volume)
  io::Slice slice;        // the plane being segmented, with its placement
  io::RGB8Image rgb;      // the slice in 8-bit RGB, on the slice's pixel grid
  io::RGB8Image model_rgb;  // model input: rgb, or rgb resampled to square pixels
  bool resampled() const { return model_rgb.height != rgb.height || model_rgb.width != rgb.width; }
  bool is_volume() const { return !volume.is_2d(); }
  // Prompt in slice pixels -> model-input pixels.
  predict::Prompt to_model(const predict::Prompt& p) const;
  // Mask on the model grid -> slice grid.
  std::vector<uint8_t> mask_to_slice(const std::vector<uint8_t>& mask) const;
};
LoadedImage load_image(const ImageOptions& opts);

// Parses "X,Y,LABEL" and "X0,Y0,X1,Y1"; throws InputError naming the option.
predict::Point parse_point(const std::string& s);
predict::Box parse_box(const std::string& s);

// 8-bit mask PNG (0 / 255), written atomically.
void write_mask_png(const std::string& path, const std::vector<uint8_t>& mask, int height, int width);
// The image with the mask tinted and outlined, and the prompts drawn.
void write_overlay_png(const std::string& path, const io::RGB8Image& image, const std::vector<uint8_t>& mask,
                       const predict::Prompt& prompt);

// Where the embedded default model lives (MEDICOSAM_MODEL overrides).
std::string default_model_path();

}  // namespace medicosam::cli
