// Propagation along each of the three patient axes: slices cut with
// VolumeSlices (including a resampled anisotropic cut), an oracle built from
// the same cut of the truth, masks pasted back into a label map: the result
// must be the true object in the volume.
#include <gtest/gtest.h>

#include "medicosam/segment/propagation.hpp"
#include "medicosam/segment/volume_slices.hpp"
#include "oracle.hpp"

namespace medicosam::segment {
namespace {

// A volume with an ellipsoid (label 1) and its label volume.
std::pair<io::Volume, io::Volume> phantom(std::array<double, 3> spacing) {
  io::Geometry g;
  g.size = {40, 36, 30};
  g.spacing = spacing;
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS-ordered, as most NIfTI files
  io::Volume img(io::PixelType::kInt16, g), lab(io::PixelType::kUInt8, g);
  for (int z = 0; z < 30; ++z)
    for (int y = 0; y < 36; ++y)
      for (int x = 0; x < 40; ++x) {
        const double dx = (x - 22) / 11.0, dy = (y - 15) / 9.0, dz = (z - 14) / 10.0;
        const bool in = dx * dx + dy * dy + dz * dz <= 1.0;
        img.set_value(x, y, z, 0, in ? 900 : 100 + (x + y + z) % 7);
        lab.set_value(x, y, z, 0, in ? 1 : 0);
      }
  return {img, lab};
}

void check_axis(io::Axis axis, std::array<double, 3> spacing) {
  const auto [img, lab] = phantom(spacing);
  VolumeSlices slices(img, axis, io::Normalization{});
  VolumeSlices truth_slices(lab, axis, io::Normalization{});
  const auto size = slices.model_size();
  const auto n = slices.count();
  // The oracle's truth: each label slice on the model grid.
  std::vector<testing::LabelSlice> truth;
  for (int k = 0; k < n; ++k) {
    const auto s = truth_slices.slice(k);
    BinaryMask m(s.placement.height, s.placement.width);
    for (size_t i = 0; i < m.data.size(); ++i)
      m.data[i] = static_cast<const uint8_t*>(s.image.data())[i];
    const auto mm = slices.mask_to_model(m);
    truth.emplace_back(mm.data.begin(), mm.data.end());
  }
  testing::OracleStack oracle(truth, size.height, size.width);
  std::vector<BinaryMask> seg(n, BinaryMask(size.height, size.width));
  int k0 = -1, best = 0;
  for (int k = 0; k < n; ++k) {  // the slice with the largest cross-section
    const auto a = testing::label_mask(truth[k], size.height, size.width, 1).area();
    if (a > best) best = static_cast<int>(a), k0 = k;
  }
  // Prompt with a point at the object's centre in slice pixels, as a user would.
  const auto centre = object_center(
      slices.mask_to_slice(testing::label_mask(truth[k0], size.height, size.width, 1)));
  predict::Prompt p;
  p.points = {centre};
  seg[k0] = segment_from_prompt(oracle, k0, slices.prompt_to_model(p));
  PropagationOptions opt;
  opt.projection = projection_flags(Projection::kMask);
  opt.iou_threshold = 0.0;  // carry it to the poles (tiny caps have a low IoU with their neighbour)
  const auto r = segment_mask_in_volume(oracle, seg, {k0}, opt);
  io::LabelMap out(img.geometry());
  for (int k = r.z_min; k <= r.z_max; ++k) {
    const auto m = slices.mask_to_slice(seg[k]);
    io::paste_slice(out, slices.placement(k), io::Mask2D{m.height, m.width, m.data}, 1);
  }
  int64_t wrong = 0, total = 0;
  for (int64_t i = 0; i < out.num_voxels(); ++i) {
    const bool t = static_cast<const uint8_t*>(lab.data())[i] != 0;
    total += t;
    wrong += t != (out.data()[i] != 0);
  }
  // Exact on square pixels; nearest-neighbour round trips cost a few boundary voxels otherwise.
  if (slices.resampled()) {
    EXPECT_LT(double(wrong) / total, 0.03) << wrong << " of " << total;
  } else {
    EXPECT_EQ(wrong, 0);
  }
  EXPECT_GT(total, 1000);
}

TEST(VolumeAxes, AxialPropagationReproducesTheObject) {
  check_axis(io::Axis::kAxial, {1, 1, 1});
}
TEST(VolumeAxes, CoronalPropagationReproducesTheObject) {
  check_axis(io::Axis::kCoronal, {1, 1, 1});
}
TEST(VolumeAxes, SagittalPropagationReproducesTheObject) {
  check_axis(io::Axis::kSagittal, {1, 1, 1});
}
TEST(VolumeAxes, AnisotropicCoronalSlicesAreResampledAndMappedBack) {
  const auto [img, lab] = phantom({0.8, 0.8, 2.4});
  VolumeSlices slices(img, io::Axis::kCoronal, io::Normalization{});
  EXPECT_TRUE(slices.resampled());
  EXPECT_EQ(slices.slice_size().height, 30);
  EXPECT_EQ(slices.model_size().height, 90);  // 30 rows of 2.4 mm on a 0.8 mm grid
  check_axis(io::Axis::kCoronal, {0.8, 0.8, 2.4});
}

}  // namespace
}  // namespace medicosam::segment
