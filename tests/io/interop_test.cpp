// Interoperability with nibabel (what Python tools and, by the same NIfTI
// conventions, 3D Slicer and ITK-SNAP see): orientation, scaling, and the
// affine of what we write.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::TempDir;

TEST(Nibabel, RasAffineScalingAndOrientation) {
  if (!test::have_python_module("nibabel")) GTEST_SKIP() << "python3-nibabel not installed";
  TempDir dir;
  std::string out;
  ASSERT_EQ(0, test::run_python(R"(
import sys, numpy as np, nibabel as nib
a = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)
aff = np.array([[1.5, 0, 0, -10], [0, 2.0, 0, 20], [0, 0, 3.0, 30], [0, 0, 0, 1]])
img = nib.Nifti1Image(a, aff)
img.header.set_slope_inter(2.0, -3.0)
nib.save(img, sys.argv[1])
)",
                                (dir / "ras.nii.gz"), &out, dir))
      << out;
  const Volume v = read_image(dir / "ras.nii.gz");
  EXPECT_EQ(orientation_code(v.geometry()), "RAS");
  EXPECT_EQ(v.size(), (std::array<int64_t, 3>{4, 3, 2}));
  // RAS (-10, 20, 30) is LPS (10, -20, 30).
  EXPECT_NEAR(v.geometry().origin[0], 10, 1e-5);
  EXPECT_NEAR(v.geometry().origin[1], -20, 1e-5);
  EXPECT_NEAR(v.geometry().origin[2], 30, 1e-5);
  EXPECT_NEAR(v.geometry().spacing[2], 3.0, 1e-6);
  // scl_slope/scl_inter applied: value = 2 * raw - 3, raw = x * 6 + y * 2 + z.
  EXPECT_NEAR(v.value(1, 2, 1), 2.0 * (1 * 6 + 2 * 2 + 1) - 3.0, 1e-6);
}

// A label map written on a DICOM CT grid opens in nibabel with the affine
// that grid has in RAS: no shift, no flip.
TEST(Nibabel, WrittenLabelMapHasTheSourceAffine) {
  if (!test::have_python_module("nibabel")) GTEST_SKIP() << "python3-nibabel not installed";
  TempDir dir;
  const Volume ct = read_image(test::shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  LabelMap lm(ct.geometry());
  lm.set(3, 4, 2, 1);
  write_label_map(dir / "seg.nii.gz", lm);
  std::string out;
  ASSERT_EQ(0, test::run_python(R"(
import sys, numpy as np, nibabel as nib
img = nib.load(sys.argv[1])
a = np.asarray(img.dataobj)
print(" ".join("%.6f" % x for x in img.affine[:3].ravel()))
print(*np.argwhere(a == 1)[0], a.dtype)
)",
                                dir / "seg.nii.gz", &out, dir))
      << out;
  const Geometry& g = ct.geometry();
  std::ostringstream expected;
  expected.setf(std::ios::fixed);
  expected.precision(6);
  for (int r = 0; r < 3; ++r) {
    const double flip = r < 2 ? -1.0 : 1.0;  // LPS -> RAS
    for (int c = 0; c < 3; ++c)
      expected << (r || c ? " " : "") << flip * g.direction[r * 3 + c] * g.spacing[c];
    expected << " " << flip * g.origin[r];
  }
  std::istringstream lines(out);
  std::string affine, voxel;
  std::getline(lines, affine);
  std::getline(lines, voxel);
  // Compare numerically (float32 in the file).
  std::istringstream a(affine), e(expected.str());
  for (int i = 0; i < 12; ++i) {
    double x = 0, y = 0;
    a >> x;
    e >> y;
    EXPECT_NEAR(x, y, 1e-4) << "affine element " << i << "\n" << affine << "\n" << expected.str();
  }
  EXPECT_EQ(voxel, "3 4 2 uint8");
}

}  // namespace
}  // namespace medicosam::io
