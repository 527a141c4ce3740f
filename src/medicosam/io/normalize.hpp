#pragma once
// Intensity normalisation: any Volume slice -> the model's 8-bit RGB input.
//
// Methods (see docs/io.md):
//   minmax      micro_sam's default: uint8 data passes through untouched (gray
//               replicated to 3 channels), anything else is min-max scaled to
//               0..255 over all channels: uint8((x - min) / (max - min) * 255),
//               in float32 and truncated, like numpy's astype("uint8").
//   percentile  MedicoSAM's training normalisation: (x - p_lo) / (p_hi - p_lo
//               + 1e-7), clipped to [0, 1], * 255, rounded; default p1..p99.
//   window      CT window W/L: [L - W/2, L + W/2] -> [0, 255], clipped, rounded.
//               Presets: soft-tissue W400/L40, lung W1500/L-600,
//               bone W1800/L400, brain W80/L40.
// Scope: statistics (min/max, percentiles) over the slice being converted
// (default, as micro_sam does per slice) or over the whole volume.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/volume.hpp"

namespace medicosam::io {

enum class NormalizationMethod { kMinMax, kPercentile, kWindow };
enum class NormalizationScope { kSlice, kVolume };

struct Normalization {
  NormalizationMethod method = NormalizationMethod::kMinMax;
  double lower_percentile = 1.0;  // kPercentile
  double upper_percentile = 99.0;
  double window_width = 400.0;  // kWindow
  double window_level = 40.0;
  NormalizationScope scope = NormalizationScope::kSlice;
  std::string preset;  // "soft-tissue", "lung", "bone", "brain" for CT presets, else empty

  static Normalization minmax(NormalizationScope scope = NormalizationScope::kSlice);
  static Normalization percentile(double lower = 1.0, double upper = 99.0,
                                  NormalizationScope scope = NormalizationScope::kSlice);
  static Normalization window(double width, double level);
  // "soft-tissue", "lung", "bone", "brain"; throws InputError otherwise.
  static Normalization ct_preset(const std::string& name);
};

// Parses a normalisation spec:
//   minmax | percentile | percentile:LO:HI | ct:soft-tissue | ct:lung | ct:bone |
//   ct:brain | window:W:L
// optionally followed by ":slice" or ":volume" (default slice), e.g.
// "percentile:0.5:99.5:volume", "minmax:volume". Throws InputError naming the
// spec and listing the accepted forms.
Normalization parse_normalization(const std::string& spec);
// Canonical spec string; parse_normalization(to_string(n)) == n.
std::string to_string(const Normalization& n);

// The intensities mapped to 0 and 255 by `n` for the values in `v` (all
// voxels, all channels). For kMinMax on uint8 data this is {0, 255}
// (pass-through).
struct IntensityRange {
  double lower = 0.0;
  double upper = 255.0;
};
IntensityRange compute_intensity_range(const Volume& v, const Normalization& n);

// An 8-bit RGB image, HxWx3, row-major (the model's input).
struct RGB8Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> data;  // height * width * 3

  uint8_t at(int y, int x, int c) const {
    return data[(static_cast<size_t>(y) * width + x) * 3 + c];
  }
};

// Converts a 2D image (a one-slice Volume, e.g. from read_image or
// extract_slice) to RGB8, with statistics from the image itself.
RGB8Image to_rgb8(const Volume& image, const Normalization& n = {});
// Same with a given range (e.g. computed over the whole volume for
// NormalizationScope::kVolume).
RGB8Image to_rgb8(const Volume& image, const Normalization& n, const IntensityRange& range);

// Helper for volumes: computes the volume-wide range once if the scope asks
// for it, then converts slices.
class Normalizer {
 public:
  Normalizer(const Normalization& n, const Volume& volume);
  RGB8Image operator()(const Volume& slice) const;
  const Normalization& normalization() const { return n_; }

 private:
  Normalization n_;
  bool have_range_ = false;
  IntensityRange range_;
};

}  // namespace medicosam::io
