#include "medicosam/segment/volume_slices.hpp"

#include <algorithm>
#include <cmath>

#include "medicosam/core/error.hpp"
#include "medicosam/segment/sha1.hpp"

namespace medicosam::segment {

VolumeSlices::VolumeSlices(const io::Volume& volume, io::Axis axis,
                           const io::Normalization& normalization, bool square_pixels)
    : VolumeSlices(std::shared_ptr<const io::Volume>(&volume, [](const io::Volume*) {}), axis,
                   normalization, square_pixels) {}

VolumeSlices::VolumeSlices(std::shared_ptr<const io::Volume> volume, io::Axis axis,
                           const io::Normalization& normalization, bool square_pixels)
    : volume_(std::move(volume)),
      axis_(volume_->is_2d() ? io::Axis::kAxial : axis),
      normalizer_(normalization, *volume_) {
  if (volume_->empty()) throw InputError("empty volume");
  count_ = static_cast<int>(io::num_slices(volume_->geometry(), axis_));
  const auto s = io::extract_slice(*volume_, axis_, 0);
  slice_size_ = {static_cast<int>(s.placement.height), static_cast<int>(s.placement.width)};
  model_size_ = slice_size_;
  const auto& sp = s.image.geometry().spacing;
  if (square_pixels && std::abs(sp[0] - sp[1]) > 1e-3 * std::max(sp[0], sp[1])) {
    const auto grid = io::square_pixel_grid(s.image.geometry());
    model_size_ = {static_cast<int>(grid.height), static_cast<int>(grid.width)};
  }
}

io::Slice VolumeSlices::slice(int k) const {
  return io::extract_slice(*volume_, axis_, k);
}

void VolumeSlices::check_slice(int k) const {
  if (k < 0 || k >= count_) {
    throw InputError("slice " + std::to_string(k) + " is outside 0.." + std::to_string(count_ - 1) +
                     (volume_->is_2d() ? std::string() : std::string(" (") + io::axis_name(axis_) + ")"));
  }
}

io::SlicePlacement VolumeSlices::placement(int k) const {
  return io::slice_placement(volume_->geometry(), axis_, k);
}

io::RGB8Image VolumeSlices::slice_image(int k) const {
  const auto s = slice(k);
  return volume_->is_2d() ? io::to_rgb8(s.image, normalizer_.normalization()) : normalizer_(s.image);
}

io::RGB8Image VolumeSlices::model_image(int k) const {
  auto rgb = slice_image(k);
  if (resampled()) rgb = io::resample_rgb8(rgb, model_size_.height, model_size_.width);
  return rgb;
}

VolumeSlices::SlicePoint VolumeSlices::from_voxel(const std::array<int64_t, 3>& ijk) const {
  const auto& size = volume_->size();
  for (int d = 0; d < 3; ++d) {
    if (ijk[d] < 0 || ijk[d] >= size[d]) {
      throw InputError("voxel [" + std::to_string(ijk[0]) + "," + std::to_string(ijk[1]) + "," +
                       std::to_string(ijk[2]) + "] lies outside the " + std::to_string(size[0]) +
                       "x" + std::to_string(size[1]) + "x" + std::to_string(size[2]) + " volume");
    }
  }
  const auto p = placement(0);
  SlicePoint out;
  out.slice = static_cast<int>(ijk[p.through_dim]);
  const int64_t c = ijk[p.col_dim], r = ijk[p.row_dim];
  out.x = static_cast<double>(p.col_flip ? p.width - 1 - c : c);
  out.y = static_cast<double>(p.row_flip ? p.height - 1 - r : r);
  return out;
}

std::array<int64_t, 3> VolumeSlices::to_voxel(int k, int64_t x, int64_t y) const {
  check_slice(k);
  return placement(k).voxel(y, x);
}

void VolumeSlices::paste(io::LabelMap& labels, int k, const BinaryMask& model_mask, uint16_t label,
                         bool replace) const {
  const auto m = mask_to_slice(model_mask);
  io::paste_slice(labels, placement(k), io::Mask2D{m.height, m.width, m.data}, label, replace);
}

io::LabelMap VolumeSlices::label_map(const std::map<int, std::vector<uint16_t>>& model_labels) const {
  io::LabelMap labels(volume_->geometry());
  const size_t n = static_cast<size_t>(model_size_.height) * model_size_.width;
  for (const auto& [z, lab] : model_labels) {
    check_slice(z);
    if (lab.size() != n) throw InputError("slice " + std::to_string(z) + ": labels of the wrong size");
    std::map<uint16_t, bool> present;
    for (auto v : lab)
      if (v) present[v] = true;
    for (const auto& [l, _] : present) {
      BinaryMask m(model_size_.height, model_size_.width);
      for (size_t i = 0; i < n; ++i) m.data[i] = lab[i] == l;
      paste(labels, z, m, l);
    }
  }
  return labels;
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

io::LabelMap VolumeSlices::slice_labels(const io::LabelMap& labels, int k) const {
  if (labels.size() != volume_->size()) throw InputError("slice_labels: the label map does not fit the volume");
  const auto s = slice(k);
  io::LabelMap out(s.image.geometry());
  for (int64_t r = 0; r < s.placement.height; ++r) {
    for (int64_t c = 0; c < s.placement.width; ++c) {
      const auto v = s.placement.voxel(r, c);
      out.set(c, r, 0, labels.at(v[0], v[1], v[2]));
    }
  }
  out.segments = labels.segments;
  return out;
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
