// Real 3D data: NRRD / NIfTI MRI, DICOM CT, with their geometry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::shared;

void expect_near3(const std::array<double, 3>& a, const std::array<double, 3>& b, double tol) {
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i], b[i], tol) << "component " << i;
}

bool same_voxels(const Volume& a, const Volume& b) {
  return a.size() == b.size() && a.pixel_type() == b.pixel_type() &&
         a.components() == b.components() && std::memcmp(a.data(), b.data(), a.num_bytes()) == 0;
}

TEST(Volume3D, NrrdBrainGeometry) {
  const Volume v = read_image(shared("data/mri_tumor_3d_pyradiomics/nrrd/brain1_image.nrrd"));
  EXPECT_EQ(v.format, "NRRD");
  EXPECT_EQ(v.pixel_type(), PixelType::kInt16);
  EXPECT_EQ(v.size(), (std::array<int64_t, 3>{256, 256, 25}));
  expect_near3(v.geometry().spacing, {0.78125, 0.78125, 6.5}, 1e-9);
  expect_near3(v.geometry().origin, {-99.609375, 99.609375, -78.0}, 1e-9);
  EXPECT_EQ(v.geometry().direction, (std::array<double, 9>{1, 0, 0, 0, -1, 0, 0, 0, 1}));
  EXPECT_EQ(orientation_code(v.geometry()), "LAS");
}

// The NIfTI copies were converted from the NRRDs (LPS -> RAS affine):
// reading either gives the same voxels on the same grid.
TEST(Volume3D, NiftiAndNrrdAgree) {
  for (const char* c : {"brain1_image", "brain2_image", "breast1_image", "breast1_label"}) {
    const Volume a =
        read_image(shared(std::string("data/mri_tumor_3d_pyradiomics/nrrd/") + c + ".nrrd"));
    Volume b =
        read_image(shared(std::string("data/mri_tumor_3d_pyradiomics/nifti/") + c + ".nii.gz"));
    EXPECT_EQ(b.format, "NIfTI");
    EXPECT_LT(grid_difference(a.geometry(), b.geometry()), 1e-4) << c;  // NIfTI stores float32
    if (a.pixel_type() != b.pixel_type()) b = b.cast(a.pixel_type());
    EXPECT_TRUE(same_voxels(a, b)) << c;
  }
}

TEST(Volume3D, LabelMapsFromManifest) {
  struct Case {
    const char* file;
    uint16_t label;
    int64_t voxels;
  };
  for (const Case& c : {Case{"data/mri_tumor_3d_pyradiomics/nrrd/brain1_label.nrrd", 1, 4137},
                        Case{"data/mri_tumor_3d_pyradiomics/nrrd/brain2_label.nrrd", 1, 453},
                        Case{"data/mri_tumor_3d_pyradiomics/nifti/breast1_label.nii.gz", 1, 143},
                        Case{"data/ct_dicom_seg_dcmqi/labels_nrrd/liver_seg.nrrd", 1, 107098},
                        Case{"data/ct_dicom_seg_dcmqi/labels_nrrd/spine_seg.nrrd", 2, 12439},
                        Case{"data/ct_dicom_seg_dcmqi/labels_nrrd/heart_seg.nrrd", 3, 41449}}) {
    const LabelMap lm = read_label_map(shared(c.file));
    EXPECT_EQ(lm.count(c.label), c.voxels) << c.file;
    EXPECT_EQ(lm.labels_present(), std::vector<uint16_t>{c.label}) << c.file;
  }
}

TEST(Volume3D, DicomCtInHounsfieldOrderedByPosition) {
  const Volume v = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  EXPECT_EQ(v.format, "DICOM");
  EXPECT_EQ(v.modality, "CT");
  EXPECT_EQ(v.size(), (std::array<int64_t, 3>{512, 512, 3}));
  EXPECT_EQ(v.pixel_type(), PixelType::kInt16);
  expect_near3(v.geometry().spacing, {0.810547, 0.810547, 1.0}, 1e-6);
  // Slices sorted by position: the lowest z first, whatever the file names say.
  expect_near3(v.geometry().origin, {-235.199997, -226.800003, -128.690002}, 1e-6);
  EXPECT_EQ(orientation_code(v.geometry()), "LPS");
  const auto mm = v.min_max();
  EXPECT_EQ(mm[0], -3024);  // padding -2000 + intercept -1024
  EXPECT_EQ(mm[1], 1381);
}

TEST(Volume3D, DicomMatchesItsNiftiConversion) {
  const Volume dcm = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  const Volume nii = read_image(shared("data/ct_dicom_seg_dcmqi/nifti/ct_3slice.nii.gz"));
  EXPECT_LT(grid_difference(dcm.geometry(), nii.geometry()), 1e-4);
  EXPECT_TRUE(same_voxels(dcm, nii.cast(dcm.pixel_type())));
}

TEST(Volume3D, DicomLabelsShareTheCtGrid) {
  const Volume ct = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  const LabelMap liver =
      read_label_map(shared("data/ct_dicom_seg_dcmqi/labels_nrrd/liver_seg.nrrd"));
  EXPECT_LT(grid_difference(ct.geometry(), liver.geometry()), 1e-5);
}

TEST(Volume3D, ProbeDescribesWithoutReadingVoxels) {
  const ImageInfo info = probe_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  EXPECT_EQ(info.format, "DICOM");
  EXPECT_EQ(info.modality, "CT");
  EXPECT_EQ(info.orientation, "LPS");
  ASSERT_EQ(info.series.size(), 1u);
  EXPECT_EQ(info.series[0].num_files, 3);
  EXPECT_EQ(info.geometry.size, (std::array<int64_t, 3>{512, 512, 3}));
  const std::string text = describe(info);
  EXPECT_NE(text.find("512 x 512 x 3"), std::string::npos) << text;
  EXPECT_NE(text.find("LPS"), std::string::npos) << text;
  EXPECT_NE(text.find("CT"), std::string::npos) << text;

  const ImageInfo nrrd =
      probe_image(shared("data/mri_tumor_3d_pyradiomics/nrrd/breast1_image.nrrd"));
  EXPECT_EQ(nrrd.format, "NRRD");
  EXPECT_EQ(nrrd.geometry.size, (std::array<int64_t, 3>{45, 120, 21}));
  EXPECT_EQ(nrrd.orientation, "LPS");
}

}  // namespace
}  // namespace medicosam::io
