// DICOM series: listing, choosing, ordering, rescale, and every way a
// folder can be wrong. Synthetic series are derived from the real CT with
// DCMTK (tags edited, pixel data kept).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom.hpp"
#include "medicosam/io/read.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

namespace fs = std::filesystem;
using test::shared;
using test::TempDir;

std::string ct_file(int i) {
  return shared("data/ct_dicom_seg_dcmqi/ct_dicom/0" + std::to_string(i) + ".dcm");
}

using Edit = std::function<void(DcmDataset&)>;

// Copies a DICOM file, applying `edit` to its dataset.
void copy_dicom(const std::string& src, const std::string& dst, const Edit& edit = {}) {
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(src.c_str()).good()) << src;
  if (edit) edit(*ff.getDataset());
  ASSERT_TRUE(ff.saveFile(dst.c_str(), EXS_LittleEndianExplicit).good()) << dst;
}

// Gives a copy its own SOP Instance UID (and optionally series).
Edit new_instance(const std::string& series_uid = "", const std::string& description = "") {
  return [=](DcmDataset& ds) {
    char uid[100];
    ds.putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid));
    if (!series_uid.empty()) ds.putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
    if (!description.empty()) ds.putAndInsertString(DCM_SeriesDescription, description.c_str());
  };
}

Edit then(Edit a, Edit b) {
  return [=](DcmDataset& ds) {
    a(ds);
    b(ds);
  };
}

Edit set_z(double z) {
  return [=](DcmDataset& ds) {
    const std::string ipp = "-235.199997\\-226.800003\\" + std::to_string(z);
    ds.putAndInsertString(DCM_ImagePositionPatient, ipp.c_str());
  };
}

bool same_voxels(const Volume& a, const Volume& b) {
  return a.size() == b.size() && a.pixel_type() == b.pixel_type() &&
         std::memcmp(a.data(), b.data(), a.num_bytes()) == 0;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DicomSeries, ListsTheSeries) {
  const auto series = list_dicom_series(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].modality, "CT");
  EXPECT_EQ(series[0].num_files, 3);
  EXPECT_EQ(series[0].rows, 512);
  EXPECT_EQ(series[0].series_uid, "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1");
}

TEST(DicomSeries, OrderIsByPositionNotFileName) {
  TempDir dir;
  // Names in reverse of the original order, nested in a sub-folder.
  fs::create_directory(dir / "sub");
  copy_dicom(ct_file(1), dir / "sub/c.dcm");
  copy_dicom(ct_file(2), dir / "b");  // no extension, like many PACS exports
  copy_dicom(ct_file(3), dir / "a.dcm");
  const Volume original = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  const Volume shuffled = read_image(dir.str());
  EXPECT_TRUE(same_voxels(original, shuffled));
  EXPECT_LT(grid_difference(original.geometry(), shuffled.geometry()), 1e-9);
  // The first slice in memory is the lowest (most inferior) position.
  const DicomSourceSeries src = load_dicom_source(dir.str());
  ASSERT_EQ(src.files.size(), 3u);
  EXPECT_EQ(fs::path(src.files[0]).filename(), "a.dcm");
  EXPECT_EQ(fs::path(src.files[2]).filename(), "c.dcm");
}

TEST(DicomSeries, RescaleSlopeAndInterceptAreApplied) {
  TempDir dir;
  const auto edit = [](DcmDataset& ds) {
    ds.putAndInsertString(DCM_RescaleSlope, "0.5");
    ds.putAndInsertString(DCM_RescaleIntercept, "-10.25");
  };
  for (int i = 1; i <= 3; ++i)
    copy_dicom(ct_file(i), dir / ("s" + std::to_string(i) + ".dcm"), edit);
  const Volume hu = read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"));
  const Volume v = read_image(dir.str());
  ASSERT_EQ(v.pixel_type(), PixelType::kFloat32);
  const auto* a = hu.data_as<int16_t>();
  const auto* b = v.data_as<float>();
  for (int64_t i = 0; i < hu.num_voxels(); i += 997) {
    const double raw = a[i] + 1024.0;  // the original intercept is -1024, slope 1
    ASSERT_NEAR(b[i], raw * 0.5 - 10.25, 1e-3) << i;
  }
}

TEST(DicomSeries, SingleFileIsOneSlice) {
  const Volume v = read_image(ct_file(2));
  EXPECT_EQ(v.size(), (std::array<int64_t, 3>{512, 512, 1}));
  EXPECT_NEAR(v.geometry().origin[2], -127.69, 1e-4);
  EXPECT_NEAR(v.geometry().spacing[2], 1.25, 1e-9);  // SliceThickness
}

TEST(DicomSeries, MixedSeriesNeedAChoice) {
  TempDir dir;
  for (int i = 1; i <= 3; ++i) copy_dicom(ct_file(i), dir / ("ct" + std::to_string(i) + ".dcm"));
  const std::string other = "1.2.826.0.1.3680043.2.1125.999.1";
  for (int i = 1; i <= 2; ++i) {
    copy_dicom(ct_file(i), dir / ("other" + std::to_string(i) + ".dcm"),
               new_instance(other, "second series"));
  }
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 DICOM image series"), std::string::npos) << msg;
  EXPECT_NE(msg.find(other), std::string::npos) << msg;
  EXPECT_NE(msg.find("second series"), std::string::npos) << msg;
  EXPECT_THROW(read_image(dir.str()), InputError);

  ReadOptions pick;
  pick.series_uid = other;
  const Volume v = read_image(dir.str(), pick);
  EXPECT_EQ(v.depth(), 2);
  EXPECT_EQ(v.series_uid, other);
  pick.series_uid = "1.2.3.4.no.such";
  EXPECT_THROW(read_image(dir.str(), pick), InputError);

  // `info` still describes an ambiguous folder.
  const ImageInfo info = probe_image(dir.str());
  EXPECT_EQ(info.series.size(), 2u);
  EXPECT_TRUE(info.selected_series.empty());
  EXPECT_NE(describe(info).find("choose one"), std::string::npos);
}

TEST(DicomSeries, SegNextToItsImagesDoesNotMakeItAmbiguous) {
  TempDir dir;
  for (int i = 1; i <= 3; ++i) copy_dicom(ct_file(i), dir / ("ct" + std::to_string(i) + ".dcm"));
  fs::copy_file(shared("data/ct_dicom_seg_dcmqi/dicom_seg/liver_seg.dcm"), dir / "seg.dcm");
  EXPECT_EQ(list_dicom_series(dir.str()).size(), 2u);
  EXPECT_EQ(read_image(dir.str()).depth(), 3);
}

TEST(DicomErrors, FolderWithoutDicom) {
  TempDir dir;
  test::write_bytes(dir / "readme.txt", "hello");
  test::write_bytes(dir / "scan.dcm", std::string(300, 'x'));
  fs::copy_file(test::fixture("gray8.png"), dir / "image.png");
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no DICOM"), std::string::npos) << msg;
  TempDir empty;
  EXPECT_THROW(read_image(empty.str()), InputError);
  EXPECT_THROW(list_dicom_series(empty.str()), InputError);
}

TEST(DicomErrors, DuplicatePositions) {
  TempDir dir;
  for (int i = 1; i <= 3; ++i) copy_dicom(ct_file(i), dir / ("ct" + std::to_string(i) + ".dcm"));
  copy_dicom(ct_file(2), dir / "echo2.dcm", new_instance());
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find("share a position"), std::string::npos) << msg;
}

TEST(DicomErrors, MissingSliceLeavesAGap) {
  TempDir dir;
  const double z0 = -128.69;
  const double zs[] = {z0, z0 + 1, z0 + 2, z0 + 4};  // slice z0 + 3 missing
  for (int i = 0; i < 4; ++i)
    copy_dicom(ct_file(1 + i % 3), dir / ("s" + std::to_string(i)),
               then(new_instance(), set_z(zs[i])));
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find("not uniform"), std::string::npos) << msg;
}

TEST(DicomErrors, GantryTilt) {
  TempDir dir;
  for (int i = 0; i < 3; ++i) {
    copy_dicom(ct_file(1 + i), dir / ("s" + std::to_string(i)), [i](DcmDataset& ds) {
      const std::string ipp =
          std::to_string(-235.2 + 0.5 * i) + "\\-226.8\\" + std::to_string(-128.69 + i);
      ds.putAndInsertString(DCM_ImagePositionPatient, ipp.c_str());
    });
  }
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find("tilt"), std::string::npos) << msg;
}

TEST(DicomErrors, MixedOrientations) {
  TempDir dir;
  for (int i = 1; i <= 3; ++i) {
    copy_dicom(ct_file(i), dir / ("s" + std::to_string(i)), [i](DcmDataset& ds) {
      if (i == 2) ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\0\\-1");
    });
  }
  const std::string msg = error_of([&] { read_image(dir.str()); });
  EXPECT_NE(msg.find("different orientations"), std::string::npos) << msg;
}

TEST(DicomErrors, MultiFrameIsRejectedClearly) {
  TempDir dir;
  copy_dicom(ct_file(1), dir / "mf.dcm",
             [](DcmDataset& ds) { ds.putAndInsertString(DCM_NumberOfFrames, "2"); });
  const std::string msg = error_of([&] { read_image(dir / "mf.dcm"); });
  EXPECT_NE(msg.find("multi-frame"), std::string::npos) << msg;
}

TEST(DicomErrors, TruncatedPixelData) {
  TempDir dir;
  const std::string bytes = test::read_bytes(ct_file(1));
  test::write_bytes(dir / "cut.dcm", bytes.substr(0, bytes.size() - 100000));
  EXPECT_THROW(read_image(dir / "cut.dcm"), FormatError);
  test::write_bytes(dir / "header_only.dcm", bytes.substr(0, 600));
  EXPECT_THROW(read_image(dir / "header_only.dcm"), Error);
}

TEST(DicomErrors, AbsurdSeriesSizeIsRefusedBeforeAllocating) {
  ReadOptions o;
  o.max_bytes = 1 << 20;  // 3 x 512 x 512 x int16 = 1.5 MiB
  const std::string msg =
      error_of([&] { read_image(shared("data/ct_dicom_seg_dcmqi/ct_dicom"), o); });
  EXPECT_NE(msg.find("refusing"), std::string::npos) << msg;
}

}  // namespace
}  // namespace medicosam::io
