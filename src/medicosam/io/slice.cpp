#include "medicosam/io/slice.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "medicosam/core/error.hpp"

namespace medicosam::io {
namespace {

struct PlaneConvention {
  int through;   // patient axis perpendicular to the plane (0 L-R, 1 P-A, 2 I-S)
  int col_axis;  // patient axis image columns walk along
  int col_sign;  // +1: towards L/P/S, -1: towards R/A/I
  int row_axis;
  int row_sign;
};

PlaneConvention convention(Axis a) {
  switch (a) {
    case Axis::kAxial:
      return {2, 0, +1, 1, +1};  // columns R->L, rows A->P
    case Axis::kCoronal:
      return {1, 0, +1, 2, -1};  // columns R->L, rows S->I
    case Axis::kSagittal:
      return {0, 1, +1, 2, -1};  // columns A->P, rows S->I
  }
  return {2, 0, +1, 1, +1};
}

}  // namespace

Axis parse_axis(const std::string& s) {
  if (s == "axial") return Axis::kAxial;
  if (s == "coronal") return Axis::kCoronal;
  if (s == "sagittal") return Axis::kSagittal;
  throw InputError("invalid axis '" + s + "': expected axial, coronal or sagittal");
}

const char* axis_name(Axis a) {
  switch (a) {
    case Axis::kAxial:
      return "axial";
    case Axis::kCoronal:
      return "coronal";
    case Axis::kSagittal:
      return "sagittal";
  }
  return "axial";
}

std::array<int64_t, 3> SlicePlacement::voxel(int64_t row, int64_t col) const {
  std::array<int64_t, 3> idx{};
  idx[through_dim] = index;
  idx[col_dim] = col_flip ? volume_size[col_dim] - 1 - col : col;
  idx[row_dim] = row_flip ? volume_size[row_dim] - 1 - row : row;
  return idx;
}

int64_t num_slices(const Geometry& g, Axis axis) {
  const AxisMapping m = axis_mapping(g);
  return g.size[m.array_axis[convention(axis).through]];
}

SlicePlacement slice_placement(const Geometry& g, Axis axis, int64_t k) {
  const AxisMapping m = axis_mapping(g);
  const PlaneConvention c = convention(axis);
  SlicePlacement p;
  p.axis = axis;
  p.through_dim = m.array_axis[c.through];
  p.col_dim = m.array_axis[c.col_axis];
  p.row_dim = m.array_axis[c.row_axis];
  p.col_flip = m.sign[p.col_dim] != c.col_sign;
  p.row_flip = m.sign[p.row_dim] != c.row_sign;
  p.volume_size = g.size;
  p.width = g.size[p.col_dim];
  p.height = g.size[p.row_dim];
  const int64_t n = g.size[p.through_dim];
  if (k < 0 || k >= n) {
    throw InputError(std::string(axis_name(axis)) + " slice " + std::to_string(k) +
                     " is out of range: the volume has " + std::to_string(n) + " " +
                     axis_name(axis) + " slices (0.." + std::to_string(n - 1) + ")");
  }
  p.index = k;
  return p;
}

Slice extract_slice(const Volume& volume, Axis axis, int64_t k) {
  if (volume.empty()) throw InputError("extract_slice: the volume is empty");
  const Geometry& g = volume.geometry();
  Slice out;
  out.placement = slice_placement(g, axis, k);
  const SlicePlacement& p = out.placement;

  Geometry sg;
  sg.size = {p.width, p.height, 1};
  sg.spacing = {g.spacing[p.col_dim], g.spacing[p.row_dim], g.spacing[p.through_dim]};
  const auto col_dir = g.axis_direction(p.col_dim);
  const auto row_dir = g.axis_direction(p.row_dim);
  std::array<double, 3> c{}, r{};
  for (int i = 0; i < 3; ++i) {
    c[i] = p.col_flip ? -col_dir[i] : col_dir[i];
    r[i] = p.row_flip ? -row_dir[i] : row_dir[i];
  }
  // The normal follows from the in-plane directions (not from how the file
  // stores the through-plane axis), so the slice geometry is canonical.
  std::array<double, 3> n{c[1] * r[2] - c[2] * r[1], c[2] * r[0] - c[0] * r[2],
                          c[0] * r[1] - c[1] * r[0]};
  const double len = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
  for (int i = 0; i < 3; ++i) {
    sg.direction[i * 3 + 0] = c[i];
    sg.direction[i * 3 + 1] = r[i];
    sg.direction[i * 3 + 2] = len > 0 ? n[i] / len : 0.0;
  }
  const auto o = p.voxel(0, 0);
  sg.origin = g.index_to_physical(
      {static_cast<double>(o[0]), static_cast<double>(o[1]), static_cast<double>(o[2])});

  out.image = Volume(volume.pixel_type(), sg, volume.components());
  out.image.format = volume.format;
  out.image.modality = volume.modality;
  out.image.series_uid = volume.series_uid;
  const size_t bytes = pixel_type_size(volume.pixel_type()) * volume.components();
  const auto* src = static_cast<const uint8_t*>(volume.data());
  auto* dst = static_cast<uint8_t*>(out.image.data());
  for (int64_t row = 0; row < p.height; ++row) {
    for (int64_t col = 0; col < p.width; ++col) {
      const auto v = p.voxel(row, col);
      std::memcpy(dst + (row * p.width + col) * bytes,
                  src + volume.offset(v[0], v[1], v[2]) / volume.components() * bytes, bytes);
    }
  }
  return out;
}

namespace {

void check_fits(const LabelMap& labels, const SlicePlacement& p, const char* what) {
  if (labels.empty()) throw InputError(std::string(what) + ": the label map is empty");
  if (labels.size() != p.volume_size) {
    throw InputError(
        std::string(what) + ": the label map (" + std::to_string(labels.size()[0]) + "x" +
        std::to_string(labels.size()[1]) + "x" + std::to_string(labels.size()[2]) +
        ") is not on the grid of the slice's volume (" + std::to_string(p.volume_size[0]) + "x" +
        std::to_string(p.volume_size[1]) + "x" + std::to_string(p.volume_size[2]) + ")");
  }
}

}  // namespace

void paste_slice(LabelMap& labels, const SlicePlacement& p, const Mask2D& mask, uint16_t label,
                 bool replace) {
  check_fits(labels, p, "paste_slice");
  if (mask.height != p.height || mask.width != p.width ||
      mask.data.size() != static_cast<size_t>(mask.height * mask.width)) {
    throw InputError("paste_slice: the mask is " + std::to_string(mask.width) + "x" +
                     std::to_string(mask.height) + ", the " + axis_name(p.axis) + " slice is " +
                     std::to_string(p.width) + "x" + std::to_string(p.height));
  }
  for (int64_t row = 0; row < p.height; ++row) {
    for (int64_t col = 0; col < p.width; ++col) {
      const auto v = p.voxel(row, col);
      const bool inside = mask.data[row * p.width + col] != 0;
      if (inside) {
        labels.set(v[0], v[1], v[2], label);
      } else if (replace && labels.at(v[0], v[1], v[2]) == label) {
        labels.set(v[0], v[1], v[2], 0);
      }
    }
  }
}

Mask2D label_slice(const LabelMap& labels, const SlicePlacement& p, uint16_t label) {
  check_fits(labels, p, "label_slice");
  Mask2D m;
  m.height = p.height;
  m.width = p.width;
  m.data.assign(static_cast<size_t>(p.height * p.width), 0);
  for (int64_t row = 0; row < p.height; ++row) {
    for (int64_t col = 0; col < p.width; ++col) {
      const auto v = p.voxel(row, col);
      const uint16_t x = labels.at(v[0], v[1], v[2]);
      m.data[row * p.width + col] = (label == 0 ? x != 0 : x == label) ? 1 : 0;
    }
  }
  return m;
}

SquarePixelGrid square_pixel_grid(const Geometry& g, int64_t max_side) {
  const double sx = g.spacing[0], sy = g.spacing[1];
  SquarePixelGrid grid;
  grid.pixel_size = std::min(sx, sy);
  const double extent_x = static_cast<double>(g.size[0]) * sx;
  const double extent_y = static_cast<double>(g.size[1]) * sy;
  if (std::max(extent_x, extent_y) / grid.pixel_size > static_cast<double>(max_side)) {
    grid.pixel_size = std::max(extent_x, extent_y) / static_cast<double>(max_side);
  }
  grid.width = std::max<int64_t>(1, std::llround(extent_x / grid.pixel_size));
  grid.height = std::max<int64_t>(1, std::llround(extent_y / grid.pixel_size));
  return grid;
}

RGB8Image resample_rgb8(const RGB8Image& in, int64_t height, int64_t width) {
  if (height < 1 || width < 1 || height > (1 << 20) || width > (1 << 20)) {
    throw InputError("resample_rgb8: invalid target size " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  if (in.height < 1 || in.width < 1) throw InputError("resample_rgb8: the image is empty");
  RGB8Image out;
  out.height = static_cast<int>(height);
  out.width = static_cast<int>(width);
  out.data.resize(static_cast<size_t>(height * width * 3));
  const double fy = static_cast<double>(in.height) / height,
               fx = static_cast<double>(in.width) / width;
  for (int64_t y = 0; y < height; ++y) {
    const double sy = std::clamp((y + 0.5) * fy - 0.5, 0.0, in.height - 1.0);
    const int y0 = static_cast<int>(sy);
    const int y1 = std::min(y0 + 1, in.height - 1);
    const double wy = sy - y0;
    for (int64_t x = 0; x < width; ++x) {
      const double sx = std::clamp((x + 0.5) * fx - 0.5, 0.0, in.width - 1.0);
      const int x0 = static_cast<int>(sx);
      const int x1 = std::min(x0 + 1, in.width - 1);
      const double wx = sx - x0;
      for (int c = 0; c < 3; ++c) {
        const double top = in.at(y0, x0, c) * (1 - wx) + in.at(y0, x1, c) * wx;
        const double bottom = in.at(y1, x0, c) * (1 - wx) + in.at(y1, x1, c) * wx;
        out.data[(y * width + x) * 3 + c] =
            static_cast<uint8_t>(std::lround(top * (1 - wy) + bottom * wy));
      }
    }
  }
  return out;
}

Mask2D resample_mask(const Mask2D& in, int64_t height, int64_t width) {
  if (height < 1 || width < 1 || height > (1 << 20) || width > (1 << 20)) {
    throw InputError("resample_mask: invalid target size " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  if (in.height < 1 || in.width < 1 ||
      in.data.size() != static_cast<size_t>(in.height * in.width)) {
    throw InputError("resample_mask: the mask is empty or inconsistent");
  }
  Mask2D out;
  out.height = height;
  out.width = width;
  out.data.resize(static_cast<size_t>(height * width));
  for (int64_t y = 0; y < height; ++y) {
    const int64_t sy =
        std::min<int64_t>(in.height - 1, static_cast<int64_t>((y + 0.5) * in.height / height));
    for (int64_t x = 0; x < width; ++x) {
      const int64_t sx =
          std::min<int64_t>(in.width - 1, static_cast<int64_t>((x + 0.5) * in.width / width));
      out.data[y * width + x] = in.data[sy * in.width + sx];
    }
  }
  return out;
}

}  // namespace medicosam::io
