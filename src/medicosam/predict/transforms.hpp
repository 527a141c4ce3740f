#pragma once
// The coordinate and pixel transforms between the original image and the
// model's square input frame (resize longest side, then pad bottom/right).
// Torch-free: used by the predictor, the tiling code and tests alike.
#include <cstdint>
#include <vector>

namespace medicosam::predict {

struct Size2 {
  int height = 0;
  int width = 0;
  bool operator==(const Size2& o) const { return height == o.height && width == o.width; }
};

// SAM's ResizeLongestSide.get_preprocess_shape: scale = long_side / max(h, w)
// (double), new side = int(side * scale + 0.5).
Size2 preprocess_shape(int height, int width, int long_side);

// Bit-exact PIL `Image.resize(..., BILINEAR)` on 8-bit interleaved images
// (antialiasing triangle filter when shrinking, 22-bit fixed point, horizontal
// pass first with an 8-bit intermediate), which SAM's inference resize uses.
// `channels` values per pixel, row-major HxWxC.
std::vector<uint8_t> resize_bilinear_pil(const uint8_t* src, int height, int width, int channels, int out_height,
                                         int out_width);

// Maps a point from original image pixels to the model input frame (double
// arithmetic as the reference, result rounded to float by the caller).
struct CoordTransform {
  Size2 original;
  Size2 input;  // after resize, before padding
  double sx() const { return static_cast<double>(input.width) / original.width; }
  double sy() const { return static_cast<double>(input.height) / original.height; }
  float x(double v) const { return static_cast<float>(v * sx()); }
  float y(double v) const { return static_cast<float>(v * sy()); }
};

}  // namespace medicosam::predict
