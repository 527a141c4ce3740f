// Writers: label maps and volumes keep their geometry and voxels exactly,
// and nothing half-written is ever left behind.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::shared;
using test::TempDir;

bool same_labels(const LabelMap& a, const LabelMap& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.num_voxels() * sizeof(uint16_t)) == 0;
}

// An oblique, anisotropic grid with an unusual origin.
Geometry oblique_geometry() {
  Geometry g;
  g.size = {17, 11, 5};
  g.spacing = {0.7123456789, 0.91, 3.3};
  g.origin = {-123.456789012, 45.6789, -0.000123};
  const double a = 0.3, b = 0.2;  // rotation about z then x
  const double ca = std::cos(a), sa = std::sin(a), cb = std::cos(b), sb = std::sin(b);
  // R = Rx(b) * Rz(a)
  g.direction = {ca, -sa, 0, cb * sa, cb * ca, -sb, sb * sa, sb * ca, cb};
  return g;
}

LabelMap pattern_labels(const Geometry& g, uint16_t max_label) {
  LabelMap lm(g);
  for (int64_t i = 0; i < lm.num_voxels(); ++i)
    lm.data()[i] = static_cast<uint16_t>((i * 7919) % (max_label + 1));
  return lm;
}

class LabelRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(LabelRoundTrip, GeometryAndVoxelsSurvive) {
  const std::string ext = GetParam();
  TempDir dir;
  for (uint16_t max_label : {uint16_t{5}, uint16_t{1000}}) {  // uint8 and uint16 files
    const LabelMap src = pattern_labels(oblique_geometry(), max_label);
    const std::string path = dir / ("labels" + ext);
    write_label_map(path, src);
    const LabelMap back = read_label_map(path);
    EXPECT_TRUE(same_labels(src, back)) << ext;
    // NIfTI-1 stores geometry as float32: exact to float precision only.
    const bool nifti = ext.find(".nii") != std::string::npos;
    EXPECT_LT(grid_difference(src.geometry(), back.geometry()), nifti ? 2e-5 : 1e-6) << ext;
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"labels" + ext}) << "stray temporary files";
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LabelRoundTrip,
                         ::testing::Values(".nrrd", ".mha", ".nii.gz", ".nii"));

// Segmenting a real file and writing the result next to it must overlay
// exactly: the same geometry read back, to 1e-6.
TEST(LabelWrite, RealGridsRoundTripExactly) {
  TempDir dir;
  struct Case {
    const char* source;
    const char* out;
  };
  for (const Case& c : {Case{"data/mri_tumor_3d_pyradiomics/nrrd/brain1_label.nrrd", "a.nrrd"},
                        Case{"data/mri_tumor_3d_pyradiomics/nrrd/brain1_label.nrrd", "a.mha"},
                        Case{"data/mri_tumor_3d_pyradiomics/nifti/brain1_label.nii.gz", "a.nii.gz"},
                        Case{"data/mri_tumor_3d_pyradiomics/nifti/breast1_label.nii.gz", "b.nii"},
                        Case{"data/ct_dicom_seg_dcmqi/labels_nrrd/liver_spine_seg.nrrd", "c.nrrd"},
                        Case{"data/ct_dicom_seg_dcmqi/nifti/liver_spine_seg.nii.gz", "c.nii.gz"},
                        Case{"data/ct_dicom_seg_dcmqi/ct_dicom", "d.mha"},
                        Case{"data/ct_dicom_seg_dcmqi/ct_dicom", "d.nrrd"}}) {
    const Volume v = read_image(shared(c.source));
    LabelMap src(v.geometry());
    if (is_integer(v.pixel_type()) && v.min_max()[0] >= 0) src = LabelMap::from_volume(v);
    src.data()[0] = 1;
    write_label_map(dir / c.out, src);
    const LabelMap back = read_label_map(dir / c.out);
    EXPECT_TRUE(same_labels(src, back)) << c.source << " -> " << c.out;
    EXPECT_LT(grid_difference(src.geometry(), back.geometry()), 1e-6)
        << c.source << " -> " << c.out;
  }
}

TEST(LabelWrite, DicomGridToNiftiIsWithinFloatPrecision) {
  TempDir dir;
  const Volume ct = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  LabelMap src(ct.geometry());
  write_label_map(dir / "seg.nii.gz", src);
  const LabelMap back = read_label_map(dir / "seg.nii.gz");
  EXPECT_LT(grid_difference(src.geometry(), back.geometry()), 2e-5);
}

TEST(LabelWrite, ExplicitTypes) {
  TempDir dir;
  const LabelMap src = pattern_labels(oblique_geometry(), 3);
  LabelWriteOptions o;
  o.type = LabelWriteOptions::Type::kUInt16;
  write_label_map(dir / "a.nrrd", src, o);
  EXPECT_EQ(read_image(dir / "a.nrrd").pixel_type(), PixelType::kUInt16);
  o.type = LabelWriteOptions::Type::kAuto;
  write_label_map(dir / "b.nrrd", src, o);
  EXPECT_EQ(read_image(dir / "b.nrrd").pixel_type(), PixelType::kUInt8);
  const LabelMap big = pattern_labels(oblique_geometry(), 300);
  o.type = LabelWriteOptions::Type::kUInt8;
  EXPECT_THROW(write_label_map(dir / "c.nrrd", big, o), InputError);
  EXPECT_FALSE(std::filesystem::exists(dir / "c.nrrd"));
}

TEST(LabelWrite, TwoDimensionalPng) {
  TempDir dir;
  Geometry g;
  g.size = {9, 4, 1};
  const LabelMap src = pattern_labels(g, 255);
  write_label_map(dir / "mask.png", src);
  const LabelMap back = read_label_map(dir / "mask.png");
  EXPECT_TRUE(same_labels(src, back));
}

TEST(ImageWrite, VolumesOfEveryTypeRoundTrip) {
  TempDir dir;
  for (PixelType t :
       {PixelType::kUInt8, PixelType::kInt8, PixelType::kUInt16, PixelType::kInt16,
        PixelType::kUInt32, PixelType::kInt32, PixelType::kFloat32, PixelType::kFloat64}) {
    Volume v(t, oblique_geometry());
    for (int64_t z = 0; z < v.depth(); ++z) {
      for (int64_t y = 0; y < v.height(); ++y) {
        for (int64_t x = 0; x < v.width(); ++x)
          v.set_value(x, y, z, 0, (x * 3 + y * 5 + z * 7) % 100 - 20);
      }
    }
    for (const char* ext : {".nrrd", ".mha", ".nii.gz"}) {
      const std::string path = dir / (std::string("v_") + pixel_type_name(t) + ext);
      write_image(path, v);
      const Volume back = read_image(path);
      EXPECT_EQ(back.pixel_type(), t) << path;
      EXPECT_EQ(0, std::memcmp(back.data(), v.data(), v.num_bytes())) << path;
    }
  }
}

TEST(LabelWriteErrors, UnsupportedExtensionsAreRefused) {
  TempDir dir;
  const LabelMap src = pattern_labels(oblique_geometry(), 3);
  EXPECT_THROW(write_label_map(dir / "a.mhd", src), InputError);
  EXPECT_THROW(write_label_map(dir / "a.nhdr", src), InputError);
  EXPECT_THROW(write_label_map(dir / "a.txt", src), InputError);
  EXPECT_THROW(write_label_map(dir / "a.png", src), InputError);  // 3D into PNG
  EXPECT_TRUE(dir.entries().empty());
}

TEST(LabelWriteErrors, FailedWriteLeavesNothingBehind) {
  TempDir dir;
  const LabelMap src = pattern_labels(oblique_geometry(), 3);
  // Missing folder: the writer cannot even create its temporary file.
  EXPECT_THROW(write_label_map(dir / "missing/a.nii.gz", src), IoError);
  // The destination is a folder: writing succeeds, the final rename fails.
  std::filesystem::create_directory(dir / "taken.nrrd");
  std::filesystem::create_directory(dir / "taken.nrrd/inside");
  EXPECT_THROW(write_label_map(dir / "taken.nrrd", src), IoError);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken.nrrd"});
}

TEST(LabelWriteErrors, ExistingFileSurvivesAFailedWrite) {
  TempDir dir;
  const LabelMap good = pattern_labels(oblique_geometry(), 3);
  write_label_map(dir / "seg.nrrd", good);
  const std::string before = test::read_bytes(dir / "seg.nrrd");
  LabelWriteOptions o;
  o.type = LabelWriteOptions::Type::kUInt8;
  EXPECT_THROW(write_label_map(dir / "seg.nrrd", pattern_labels(oblique_geometry(), 999), o),
               InputError);
  EXPECT_EQ(test::read_bytes(dir / "seg.nrrd"), before);
}

}  // namespace
}  // namespace medicosam::io
