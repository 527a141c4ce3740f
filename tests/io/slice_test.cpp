// Slices in patient orientation and masks pasted back at the right voxels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/slice.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

// A volume whose voxel value encodes its index: v = x + 100 y + 10000 z.
Volume index_volume(const Geometry& g) {
  Volume v(PixelType::kInt32, g);
  for (int64_t z = 0; z < g.size[2]; ++z) {
    for (int64_t y = 0; y < g.size[1]; ++y) {
      for (int64_t x = 0; x < g.size[0]; ++x)
        v.data_as<int32_t>()[v.offset(x, y, z)] = x + 100 * y + 10000 * z;
    }
  }
  return v;
}

Geometry lps(std::array<int64_t, 3> size) {
  Geometry g;
  g.size = size;
  g.spacing = {0.5, 0.7, 3.0};
  g.origin = {-10, 20, 5};
  return g;
}

// The same physical image stored with array axis `axis` reversed.
Volume flipped(const Volume& v, int axis) {
  Geometry g = v.geometry();
  const auto d = g.axis_direction(axis);
  for (int r = 0; r < 3; ++r) {
    g.origin[r] += d[r] * g.spacing[axis] * (g.size[axis] - 1);
    g.direction[r * 3 + axis] = -d[r];
  }
  Volume out(v.pixel_type(), g, v.components());
  for (int64_t z = 0; z < g.size[2]; ++z) {
    for (int64_t y = 0; y < g.size[1]; ++y) {
      for (int64_t x = 0; x < g.size[0]; ++x) {
        std::array<int64_t, 3> s{x, y, z};
        s[axis] = g.size[axis] - 1 - s[axis];
        out.set_value(x, y, z, 0, v.value(s[0], s[1], s[2]));
      }
    }
  }
  return out;
}

// The same physical image stored with array axes a and b swapped.
Volume transposed(const Volume& v, int a, int b) {
  Geometry g = v.geometry();
  std::swap(g.size[a], g.size[b]);
  std::swap(g.spacing[a], g.spacing[b]);
  for (int r = 0; r < 3; ++r) std::swap(g.direction[r * 3 + a], g.direction[r * 3 + b]);
  Volume out(v.pixel_type(), g, v.components());
  for (int64_t z = 0; z < g.size[2]; ++z) {
    for (int64_t y = 0; y < g.size[1]; ++y) {
      for (int64_t x = 0; x < g.size[0]; ++x) {
        std::array<int64_t, 3> s{x, y, z};
        std::swap(s[a], s[b]);
        out.set_value(x, y, z, 0, v.value(s[0], s[1], s[2]));
      }
    }
  }
  return out;
}

bool same_pixels(const Volume& a, const Volume& b) {
  return a.size() == b.size() && a.pixel_type() == b.pixel_type() &&
         std::memcmp(a.data(), b.data(), a.num_bytes()) == 0;
}

TEST(Slice, LpsVolumeInRadiologicalLayout) {
  const Volume v = index_volume(lps({4, 3, 5}));
  // Axial: columns go R->L (+x), rows A->P (+y): array order for LPS.
  const Slice ax = extract_slice(v, Axis::kAxial, 2);
  EXPECT_EQ(ax.image.size(), (std::array<int64_t, 3>{4, 3, 1}));
  EXPECT_EQ(ax.image.value(1, 2, 0), 1 + 200 + 20000);
  // Coronal: columns R->L (+x), rows S->I (z reversed).
  const Slice co = extract_slice(v, Axis::kCoronal, 1);
  EXPECT_EQ(co.image.size(), (std::array<int64_t, 3>{4, 5, 1}));
  EXPECT_EQ(co.image.value(3, 0, 0), 3 + 100 + 10000 * 4);  // top row = most superior
  // Sagittal: columns A->P (+y), rows S->I.
  const Slice sa = extract_slice(v, Axis::kSagittal, 2);
  EXPECT_EQ(sa.image.size(), (std::array<int64_t, 3>{3, 5, 1}));
  EXPECT_EQ(sa.image.value(1, 4, 0), 2 + 100 * 1 + 0);
  EXPECT_EQ(num_slices(v.geometry(), Axis::kAxial), 5);
  EXPECT_EQ(num_slices(v.geometry(), Axis::kCoronal), 3);
  EXPECT_EQ(num_slices(v.geometry(), Axis::kSagittal), 4);
}

// The key property: a slice depends on the patient, not on how the file
// stores the array. Flipping or permuting array axes (with matching
// geometry) gives the same 2D image and the same slice geometry.
TEST(Slice, SameImageWhateverTheArrayOrder) {
  const Volume v = index_volume(lps({4, 3, 5}));
  const Volume variants[] = {flipped(v, 0), flipped(v, 1), flipped(flipped(v, 2), 0),
                             transposed(v, 0, 1), transposed(flipped(v, 1), 1, 2)};
  for (Axis axis : {Axis::kAxial, Axis::kCoronal, Axis::kSagittal}) {
    const int64_t n = num_slices(v.geometry(), axis);
    for (const Volume& w : variants) {
      ASSERT_EQ(num_slices(w.geometry(), axis), n);
      for (int64_t k = 0; k < n; ++k) {
        const Slice a = extract_slice(v, axis, k);
        // The k-th slice of the variant may be a different array index; find
        // the one at the same physical position.
        bool found = false;
        for (int64_t j = 0; j < n && !found; ++j) {
          const Slice b = extract_slice(w, axis, j);
          if (grid_difference(a.image.geometry(), b.image.geometry()) < 1e-9) {
            EXPECT_TRUE(same_pixels(a.image, b.image)) << axis_name(axis) << " " << k;
            found = true;
          }
        }
        EXPECT_TRUE(found) << axis_name(axis) << " " << k;
      }
    }
  }
}

TEST(Slice, SliceGeometryIsPhysicallyExact) {
  Geometry g = lps({6, 4, 3});
  // Oblique, permuted: array x runs mostly superior, y mostly left, z mostly anterior.
  const double c = std::cos(0.2), s = std::sin(0.2);
  g.direction = {0, c, s, 0, s, -c, 1, 0, 0};
  const Volume v = index_volume(g);
  EXPECT_EQ(orientation_code(g), "SLA");
  for (Axis axis : {Axis::kAxial, Axis::kCoronal, Axis::kSagittal}) {
    for (int64_t k = 0; k < num_slices(g, axis); ++k) {
      const Slice sl = extract_slice(v, axis, k);
      const Geometry& sg = sl.image.geometry();
      for (int64_t row = 0; row < sg.size[1]; ++row) {
        for (int64_t col = 0; col < sg.size[0]; ++col) {
          const auto idx = sl.placement.voxel(row, col);
          const auto p = g.index_to_physical({double(idx[0]), double(idx[1]), double(idx[2])});
          const auto q = sg.index_to_physical({double(col), double(row), 0.0});
          for (int r = 0; r < 3; ++r) ASSERT_NEAR(p[r], q[r], 1e-9);
          ASSERT_EQ(sl.image.value(col, row, 0), v.value(idx[0], idx[1], idx[2]));
        }
      }
      // Radiological layout: columns towards patient left (axial/coronal) or
      // posterior (sagittal); rows towards posterior (axial) or inferior.
      const auto col_dir = sg.axis_direction(0), row_dir = sg.axis_direction(1);
      if (axis == Axis::kSagittal) {
        EXPECT_GT(col_dir[1], 0.5);
      } else {
        EXPECT_GT(col_dir[0], 0.5);
      }
      if (axis == Axis::kAxial) {
        EXPECT_GT(row_dir[1], 0.5);
      } else {
        EXPECT_LT(row_dir[2], -0.5);
      }
    }
  }
}

TEST(Slice, TwoDimensionalImageIsItsOwnAxialSlice) {
  const Volume img = read_image(test::fixture("rgb8.tif"));
  const Slice s = extract_slice(img, Axis::kAxial, 0);
  EXPECT_TRUE(same_pixels(s.image, img));
  EXPECT_EQ(s.image.components(), 3);
}

TEST(Slice, OutOfRangeNamesTheRange) {
  const Volume v = index_volume(lps({4, 3, 5}));
  try {
    extract_slice(v, Axis::kAxial, 5);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("0..4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(extract_slice(v, Axis::kCoronal, -1), InputError);
  EXPECT_THROW(parse_axis("transverse"), InputError);
  EXPECT_EQ(parse_axis("sagittal"), Axis::kSagittal);
}

TEST(PasteSlice, MaskLandsOnTheVoxelsItWasDrawnOn) {
  const Volume v = index_volume(lps({4, 3, 5}));
  for (const Volume& w : {v, flipped(transposed(v, 0, 2), 1)}) {
    for (Axis axis : {Axis::kAxial, Axis::kCoronal, Axis::kSagittal}) {
      const int64_t k = num_slices(w.geometry(), axis) / 2;
      const Slice s = extract_slice(w, axis, k);
      Mask2D m{s.placement.height, s.placement.width, {}};
      m.data.assign(m.height * m.width, 0);
      m.data[0] = 1;  // top-left pixel
      m.data[m.data.size() - 1] = 1;
      LabelMap labels(w.geometry());
      paste_slice(labels, s.placement, m, 7);
      EXPECT_EQ(labels.count(7), 2);
      // The labelled voxels hold the values shown at those pixels.
      for (int64_t i : {int64_t{0}, m.height * m.width - 1}) {
        const auto idx = s.placement.voxel(i / m.width, i % m.width);
        EXPECT_EQ(labels.at(idx[0], idx[1], idx[2]), 7);
        EXPECT_EQ(w.value(idx[0], idx[1], idx[2]), s.image.value(i % m.width, i / m.width, 0));
      }
      EXPECT_EQ(label_slice(labels, s.placement, 7).data, m.data);
    }
  }
}

TEST(PasteSlice, ReplaceClearsTheOldObjectOnlyInThatSlice) {
  const Geometry g = lps({4, 3, 5});
  LabelMap labels(g);
  for (int64_t i = 0; i < labels.num_voxels(); ++i) labels.data()[i] = (i % 3 == 0) ? 2 : 0;
  const int64_t before_other_slices = labels.count(2);
  const SlicePlacement p = slice_placement(g, Axis::kAxial, 1);
  Mask2D m{p.height, p.width, std::vector<uint8_t>(p.height * p.width, 0)};
  m.data[5] = 1;
  int64_t in_slice_before = 0;
  for (uint8_t x : label_slice(labels, p, 2).data) in_slice_before += x;
  EXPECT_GT(in_slice_before, 1);
  LabelMap keep = labels;
  paste_slice(keep, p, m, 2, /*replace=*/false);
  paste_slice(labels, p, m, 2, /*replace=*/true);
  EXPECT_EQ(label_slice(labels, p, 2).data, m.data);
  EXPECT_EQ(labels.count(2), before_other_slices - in_slice_before + 1);
  EXPECT_GE(keep.count(2), before_other_slices);  // without replace nothing is cleared
}

TEST(PasteSlice, WrongShapesAreRefused) {
  const Geometry g = lps({4, 3, 5});
  LabelMap labels(g);
  const SlicePlacement p = slice_placement(g, Axis::kCoronal, 0);
  EXPECT_THROW(paste_slice(labels, p, Mask2D{3, 4, std::vector<uint8_t>(12)}, 1), InputError);
  LabelMap other(lps({5, 3, 5}));
  EXPECT_THROW(
      paste_slice(other, p, Mask2D{p.height, p.width, std::vector<uint8_t>(p.height * p.width)}, 1),
      InputError);
}

TEST(Anisotropy, CoronalMriSliceGetsSquarePixels) {
  const Volume brain =
      read_image(test::shared("data/mri_tumor_3d_pyradiomics/nrrd/brain1_image.nrrd"));
  const Slice s = extract_slice(brain, Axis::kCoronal, 128);
  EXPECT_EQ(s.image.width(), 256);
  EXPECT_EQ(s.image.height(), 25);
  EXPECT_NEAR(s.image.geometry().spacing[1], 6.5, 1e-9);
  const SquarePixelGrid grid = square_pixel_grid(s.image.geometry());
  EXPECT_EQ(grid.width, 256);
  EXPECT_EQ(grid.height, 208);  // 25 * 6.5 / 0.78125
  EXPECT_NEAR(grid.pixel_size, 0.78125, 1e-9);
  const RGB8Image display = resample_rgb8(to_rgb8(s.image), grid.height, grid.width);
  EXPECT_EQ(display.height, 208);
  // A mask drawn on the slice grid survives the trip to the square grid and back.
  Mask2D m{25, 256, std::vector<uint8_t>(25 * 256, 0)};
  for (int64_t i = 0; i < 25 * 256; i += 7) m.data[i] = 1;
  const Mask2D up = resample_mask(m, grid.height, grid.width);
  EXPECT_EQ(resample_mask(up, 25, 256).data, m.data);
  // Axial slices are already square.
  const SquarePixelGrid axial =
      square_pixel_grid(extract_slice(brain, Axis::kAxial, 3).image.geometry());
  EXPECT_EQ(axial.width, 256);
  EXPECT_EQ(axial.height, 256);
  // Capped for display.
  EXPECT_LE(square_pixel_grid(s.image.geometry(), 100).width, 100);
}

TEST(Anisotropy, BilinearResampleKeepsConstantsAndEdges) {
  RGB8Image img;
  img.height = 2;
  img.width = 2;
  img.data = {0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255};
  const RGB8Image up = resample_rgb8(img, 4, 8);
  EXPECT_EQ(up.at(0, 0, 0), 0);
  EXPECT_EQ(up.at(3, 7, 2), 255);
  EXPECT_EQ(up.at(1, 3, 0), up.at(2, 3, 0));  // columns are constant
}

}  // namespace
}  // namespace medicosam::io
