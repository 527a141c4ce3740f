#include "medicosam/segment/volume_slices.hpp"

#include <algorithm>
#include <cmath>

#include "medicosam/core/error.hpp"
#include "medicosam/segment/sha1.hpp"

namespace medicosam::segment {

VolumeSlices::VolumeSlices(const io::Volume& volume, io::Axis axis,
                           const io::Normalization& normalization, bool square_pixels)
    : volume_(volume),
      axis_(volume.is_2d() ? io::Axis::kAxial : axis),
      normalizer_(normalization, volume) {
  if (volume.empty()) throw InputError("empty volume");
  count_ = static_cast<int>(io::num_slices(volume.geometry(), axis_));
  const auto s = io::extract_slice(volume_, axis_, 0);
  slice_size_ = {static_cast<int>(s.placement.height), static_cast<int>(s.placement.width)};
  model_size_ = slice_size_;
  const auto& sp = s.image.geometry().spacing;
  if (square_pixels && std::abs(sp[0] - sp[1]) > 1e-3 * std::max(sp[0], sp[1])) {
    const auto grid = io::square_pixel_grid(s.image.geometry());
    model_size_ = {static_cast<int>(grid.height), static_cast<int>(grid.width)};
  }
}

io::Slice VolumeSlices::slice(int k) const {
  return io::extract_slice(volume_, axis_, k);
}

io::SlicePlacement VolumeSlices::placement(int k) const {
  return io::slice_placement(volume_.geometry(), axis_, k);
}

io::RGB8Image VolumeSlices::model_image(int k) const {
  const auto s = slice(k);
  auto rgb =
      volume_.is_2d() ? io::to_rgb8(s.image, normalizer_.normalization()) : normalizer_(s.image);
  if (resampled()) rgb = io::resample_rgb8(rgb, model_size_.height, model_size_.width);
  return rgb;
}

predict::Prompt VolumeSlices::prompt_to_model(const predict::Prompt& p) const {
  if (!resampled()) return p;
  const double sx = double(model_size_.width) / slice_size_.width;
  const double sy = double(model_size_.height) / slice_size_.height;
  predict::Prompt q = p;
  for (auto& pt : q.points) {  // pixel centres stay aligned
    pt.x = std::clamp((pt.x + 0.5) * sx - 0.5, 0.0, double(model_size_.width));
    pt.y = std::clamp((pt.y + 0.5) * sy - 0.5, 0.0, double(model_size_.height));
  }
  if (q.box) *q.box = {q.box->x0 * sx, q.box->y0 * sy, q.box->x1 * sx, q.box->y1 * sy};
  return q;
}

namespace {
BinaryMask resample(const BinaryMask& m, int h, int w) {
  if (m.height == h && m.width == w) return m;
  io::Mask2D in{m.height, m.width, m.data};
  return BinaryMask(h, w, io::resample_mask(in, h, w).data);
}
}  // namespace

BinaryMask VolumeSlices::mask_to_slice(const BinaryMask& m) const {
  return resample(m, slice_size_.height, slice_size_.width);
}
BinaryMask VolumeSlices::mask_to_model(const BinaryMask& m) const {
  return resample(m, model_size_.height, model_size_.width);
}

std::string VolumeSlices::data_signature() const {
  Sha1 h;
  for (int k = 0; k < count_; ++k) {
    const auto s = slice(k);
    h.update(s.image.data(), s.image.num_bytes());
  }
  return h.hex_digest();
}

}  // namespace medicosam::segment
