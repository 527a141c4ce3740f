// The 3D protocol (middle slice + propagation) checked with an exact oracle,
// and the 3D dataset discovery on synthetic and real folders.
#include <gtest/gtest.h>

#include <cmath>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/grabcut.hpp"
#include "medicosam/eval/interactive3d.hpp"
#include "medicosam/eval/oracle.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {

Interactive3DOptions quiet3d() {
  Interactive3DOptions o;
  o.progress = false;
  return o;
}

}  // namespace

TEST(Interactive3D, ExactOracleReachesDiceOne) {
  const Phantom p = phantom();
  OracleSegmenter oracle;
  auto o = quiet3d();
  for (auto proj : {segment::Projection::kSinglePoint, segment::Projection::kBox,
                    segment::Projection::kMask, segment::Projection::kPoints}) {
    o.fixed.projection = proj;
    const auto results = run_interactive3d_volume(oracle, p.volume, p.labels, "phantom", "p0", o);
    ASSERT_EQ(results.size(), 2u);  // point and box start
    for (const auto& r : results) {
      EXPECT_EQ(r.n_objects, 3);
      EXPECT_EQ(r.n_skipped, 1);  // the speck
      ASSERT_EQ(r.classes.size(), 2u);
      for (const auto& c : r.classes) {
        EXPECT_EQ(c.metrics.dice, 1.0)
            << c.name << " " << segment::projection_name(proj) << " " << start_name(r.start);
        EXPECT_EQ(c.metrics.hd95, 0.0);
      }
      EXPECT_EQ(r.fixed.nsd, 1.0);
      EXPECT_GT(r.decoded_slices, 10);
    }
  }
}

TEST(Interactive3D, ErodingOracleLosesAndGridSearchPicksTheBest) {
  // An oracle that erodes by 1 px: the fixed setting propagates, the grid
  // search (oracle over settings) is at least as good, and surface metrics
  // use the 2.5 mm slice spacing.
  const Phantom p = phantom();
  OracleOptions oo;
  oo.erosion = 1;
  OracleSegmenter oracle(oo);
  auto o = quiet3d();
  o.starts = {StartPrompt::kBox};
  o.grid = GridSearch::kSmall;
  const auto results = run_interactive3d_volume(oracle, p.volume, p.labels, "phantom", "p0", o);
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  EXPECT_LT(r.fixed.dice, 1.0);
  EXPECT_GT(r.fixed.dice, 0.5);
  ASSERT_TRUE(r.best_setting);
  EXPECT_EQ(r.grid_size, 45);
  EXPECT_GE(r.best.dice, r.fixed.dice - 1e-12);
  EXPECT_EQ(int(grid_settings(GridSearch::kFull).size()), 275);
  EXPECT_TRUE(grid_settings(GridSearch::kNone).empty());
}

TEST(Interactive3D, SameSeedSameNumbers) {
  const Phantom p = phantom();
  GrabCutSegmenter gc;
  auto o = quiet3d();
  o.starts = {StartPrompt::kPoint};
  const auto a = run_interactive3d_volume(gc, p.volume, p.labels, "phantom", "p0", o);
  const auto b = run_interactive3d_volume(gc, p.volume, p.labels, "phantom", "p0", o);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].fixed.dice, b[0].fixed.dice);
  EXPECT_GT(a[0].fixed.dice, 0.5);  // GrabCut on a high-contrast phantom
}

TEST(Interactive3D, DatasetDiscovery) {
  TempDir tmp("ds3d");
  const Phantom p = phantom();
  fs::create_directories(tmp.path / "nrrd");
  fs::create_directories(tmp.path / "nifti");
  io::write_image((tmp.path / "nrrd" / "caseA_image.nrrd").string(), p.volume);
  io::write_label_map((tmp.path / "nrrd" / "caseA_label.nrrd").string(), p.labels);
  io::write_image((tmp.path / "nifti" / "caseA_image.nii.gz").string(),
                  p.volume);  // same case again
  io::write_label_map((tmp.path / "nifti" / "caseA_label.nii.gz").string(), p.labels);
  io::write_image((tmp.path / "caseB.mha").string(), p.volume);
  io::write_label_map((tmp.path / "caseB_seg.mha").string(), p.labels);
  const auto d = Dataset3D::open(tmp.path.string());
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.entry(0).name, "caseA");
  EXPECT_NE(d.entry(0).image_path.find("nifti"),
            std::string::npos);  // first folder in sorted order
  EXPECT_EQ(d.entry(1).name, "caseB");
  const auto r = run_interactive3d(*std::make_unique<OracleSegmenter>(), d, quiet3d());
  ASSERT_EQ(r.volumes.size(), 4u);
  for (const auto& v : r.volumes) EXPECT_EQ(v.fixed.dice, 1.0) << v.volume;
  const auto s = summarize(r);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].n_volumes, 2);
  EXPECT_EQ(s[0].dice, 1.0);
  EXPECT_FALSE(s[0].grid_dice);
  EXPECT_THROW(Dataset3D::open((tmp.path / "nope").string()), InputError);
  TempDir empty("ds3d_empty");
  EXPECT_THROW(Dataset3D::open(empty.path.string()), InputError);
}

TEST(Interactive3D, SharedData) {
  const fs::path data = fs::path(MEDICOSAM_SHARED_DIR) / "data";
  if (!fs::exists(data)) GTEST_SKIP() << "no shared data folder " << data;
  const auto mri = Dataset3D::open((data / "mri_tumor_3d_pyradiomics").string());
  ASSERT_EQ(mri.size(), 3u);
  EXPECT_EQ(mri.entry(0).name, "brain1");
  const auto ct = Dataset3D::open((data / "ct_dicom_seg_dcmqi").string());
  EXPECT_EQ(ct.size(), 4u);  // nifti/ct_3slice with each of its 4 label maps
  // Oracle on the real brain MRI: with 6.5 mm slices the lesion changes so
  // much from slice to slice that the IoU stop (0.5) ends propagation early;
  // without the stop the oracle follows it much further.
  OracleSegmenter oracle;
  auto o = quiet3d();
  o.starts = {StartPrompt::kBox};
  const auto one = Dataset3D::from_entries("mri", {mri.entry(0)});
  const auto stopped = run_interactive3d(oracle, one, o);
  o.fixed.iou_threshold = 0.0;
  o.fixed.projection = segment::Projection::kBox;
  const auto through = run_interactive3d(oracle, one, o);
  ASSERT_EQ(stopped.volumes.size(), 1u);
  std::printf("brain1 oracle: stopped %.3f, through %.3f\n", stopped.volumes[0].fixed.dice,
              through.volumes[0].fixed.dice);
  EXPECT_GT(stopped.volumes[0].fixed.dice, 0.0);
  EXPECT_GT(through.volumes[0].fixed.dice, 0.9);
}
