// DICOM SEG: reading dcmqi's SEG, writing our own, validating it with
// dciodvfy and pydicom, and reading it back.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/read.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::shared;
using test::TempDir;

const char* kCt = "data/ct_dicom_seg_dcmqi/ct_dicom";

bool same_labels(const LabelMap& a, const LabelMap& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.num_voxels() * sizeof(uint16_t)) == 0;
}

// liver = 1, spine = 2, heart = 3 on the CT grid.
LabelMap three_organs() {
  const LabelMap liver =
      read_label_map(shared("data/ct_dicom_seg_dcmqi/labels_nrrd/liver_seg.nrrd"));
  const LabelMap spine =
      read_label_map(shared("data/ct_dicom_seg_dcmqi/labels_nrrd/spine_seg.nrrd"));
  const LabelMap heart =
      read_label_map(shared("data/ct_dicom_seg_dcmqi/labels_nrrd/heart_seg.nrrd"));
  LabelMap out = liver;
  for (int64_t i = 0; i < out.num_voxels(); ++i) {
    if (spine.data()[i]) out.data()[i] = 2;
    if (heart.data()[i]) out.data()[i] = 3;
  }
  out.segments = {
      {1,
       "Liver",
       {221, 130, 101},
       {"123037004", "SCT", "Anatomical Structure"},
       {"10200004", "SCT", "Liver"}},
      {2,
       "Spine",
       {241, 214, 145},
       {"123037004", "SCT", "Anatomical Structure"},
       {"421060004", "SCT", "Spinal column"}},
      {3,
       "Heart",
       {206, 110, 84},
       {"123037004", "SCT", "Anatomical Structure"},
       {"80891009", "SCT", "Heart"}},
  };
  return out;
}

TEST(DicomSegRead, DcmqiLiverSegEqualsItsNrrd) {
  const LabelMap seg = read_dicom_seg(shared("data/ct_dicom_seg_dcmqi/dicom_seg/liver_seg.dcm"));
  const LabelMap nrrd =
      read_label_map(shared("data/ct_dicom_seg_dcmqi/labels_nrrd/liver_seg.nrrd"));
  EXPECT_LT(grid_difference(seg.geometry(), nrrd.geometry()), 1e-6) << to_string(seg.geometry());
  EXPECT_TRUE(same_labels(seg, nrrd));
  EXPECT_EQ(seg.count(1), 107098);
  ASSERT_EQ(seg.segments.size(), 1u);
  EXPECT_EQ(seg.segments[0].name, "Liver");
  EXPECT_EQ(seg.segments[0].type.meaning, "Liver");
  EXPECT_EQ(seg.segments[0].algorithm_type, "SEMIAUTOMATIC");
}

TEST(DicomSegRead, ReadLabelMapRecognisesSeg) {
  const LabelMap seg = read_label_map(shared("data/ct_dicom_seg_dcmqi/dicom_seg/liver_seg.dcm"));
  EXPECT_EQ(seg.count(1), 107098);
}

TEST(DicomSegRead, OntoTheSourceGrid) {
  const Volume ct = read_image(shared(kCt));
  const LabelMap seg =
      read_dicom_seg(shared("data/ct_dicom_seg_dcmqi/dicom_seg/liver_seg.dcm"), ct.geometry());
  EXPECT_EQ(seg.geometry().size, ct.geometry().size);
  EXPECT_EQ(seg.count(1), 107098);
}

TEST(DicomSegRead, ReadingTheCtAsImageSaysItIsNotASeg) {
  EXPECT_THROW(read_image(shared("data/ct_dicom_seg_dcmqi/dicom_seg/liver_seg.dcm")), InputError);
}

class DicomSegWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = load_dicom_source(shared(kCt));
    labels_ = three_organs();
    path_ = dir_ / "seg.dcm";
    write_dicom_seg(path_, labels_, source_);
  }
  TempDir dir_;
  DicomSourceSeries source_;
  LabelMap labels_;
  std::string path_;
};

TEST_F(DicomSegWrite, ReadsBackIntoTheIdenticalLabelMap) {
  const LabelMap back = read_dicom_seg(path_);
  EXPECT_LT(grid_difference(back.geometry(), labels_.geometry()), 1e-6);
  EXPECT_TRUE(same_labels(back, labels_));
  ASSERT_EQ(back.segments.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(back.segments[i].label, i + 1);
    EXPECT_EQ(back.segments[i].name, labels_.segments[i].name);
    EXPECT_EQ(back.segments[i].type.value, labels_.segments[i].type.value);
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(back.segments[i].color[c], labels_.segments[i].color[c], 1);
  }
  const LabelMap on_ct = read_dicom_seg(path_, source_.geometry);
  EXPECT_TRUE(same_labels(on_ct, labels_));
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"seg.dcm"});
}

TEST_F(DicomSegWrite, DciodvfyFindsNoErrors) {
  std::string out;
  if (test::run_command("command -v dciodvfy", &out) != 0)
    GTEST_SKIP() << "dciodvfy (dicom3tools) not installed";
  test::run_command("dciodvfy -new " + path_, &out);
  std::istringstream lines(out);
  std::string line, errors;
  while (std::getline(lines, line)) {
    if (line.rfind("Error", 0) == 0) errors += line + "\n";
  }
  EXPECT_TRUE(errors.empty()) << errors << "\nfull output:\n" << out;
}

TEST_F(DicomSegWrite, PydicomSeesFramesSegmentsAndReferences) {
  if (!test::have_python_module("pydicom")) GTEST_SKIP() << "python3-pydicom not installed";
  // Frames expected: one per (segment, slice) where the segment is present.
  int frames = 0;
  for (uint16_t label = 1; label <= 3; ++label) {
    for (int64_t z = 0; z < 3; ++z) {
      bool any = false;
      for (int64_t i = 0; i < 512 * 512; ++i) any |= labels_.data()[z * 512 * 512 + i] == label;
      frames += any;
    }
  }
  std::string out;
  const int rc = test::run_python(R"(
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ct = pydicom.dcmread(sys.argv[2], stop_before_pixels=True)
print("frames", int(ds.NumberOfFrames))
print("segments", ",".join(str(s.SegmentNumber) for s in ds.SegmentSequence))
print("names", ",".join(str(s.SegmentLabel) for s in ds.SegmentSequence))
print("type", ds.SegmentationType, ds.Modality, ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4")
print("for", ds.FrameOfReferenceUID == ct.FrameOfReferenceUID)
print("study", ds.StudyInstanceUID == ct.StudyInstanceUID, ds.PatientID == ct.PatientID)
print("series", ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID,
      len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence))
seg_of_frame = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in ds.PerFrameFunctionalGroupsSequence]
print("frame_segments", ",".join(str(s) for s in seg_of_frame))
src = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID for f in ds.PerFrameFunctionalGroupsSequence]
print("sources_known", all(s for s in src))
print("pixels", ds.pixel_array.shape[0], int(ds.pixel_array.sum()))
)",
                                  path_ + " " + source_.files.front(), &out, dir_);
  ASSERT_EQ(rc, 0) << out;
  int64_t voxels = labels_.count(1) + labels_.count(2) + labels_.count(3);
  EXPECT_NE(out.find("frames " + std::to_string(frames) + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find("segments 1,2,3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("names Liver,Spine,Heart\n"), std::string::npos) << out;
  EXPECT_NE(out.find("type BINARY SEG True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("for True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("study True True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("series True 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sources_known True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("pixels " + std::to_string(frames) + " " + std::to_string(voxels) + "\n"),
            std::string::npos)
      << out;
}

TEST(DicomSegWriteErrors, LabelMapOffTheSourceGridIsRefused) {
  TempDir dir;
  const DicomSourceSeries source = load_dicom_source(shared(kCt));
  const LabelMap brain =
      read_label_map(shared("data/mri_tumor_3d_pyradiomics/nrrd/brain1_label.nrrd"));
  EXPECT_THROW(write_dicom_seg(dir / "seg.dcm", brain, source), InputError);
  LabelMap shifted(source.geometry);
  shifted.data()[0] = 1;
  Geometry g = source.geometry;
  g.origin[2] += 1.0;
  shifted.set_geometry(g);
  EXPECT_THROW(write_dicom_seg(dir / "seg.dcm", shifted, source), InputError);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(DicomSegWriteErrors, AllBackgroundIsRefused) {
  TempDir dir;
  const DicomSourceSeries source = load_dicom_source(shared(kCt));
  EXPECT_THROW(write_dicom_seg(dir / "seg.dcm", LabelMap(source.geometry), source), InputError);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(DicomSegWriteEmpty, DescribedSegmentWithoutVoxelsStillGetsAFrame) {
  TempDir dir;
  const DicomSourceSeries source = load_dicom_source(shared(kCt));
  LabelMap lm(source.geometry);
  lm.set(10, 10, 1, 1);
  SegmentInfo empty;
  empty.label = 2;
  empty.name = "Tumour";
  write_dicom_seg(dir / "seg.dcm", lm, source, {empty});
  const LabelMap back = read_dicom_seg(dir / "seg.dcm", source.geometry);
  EXPECT_TRUE(same_labels(back, lm));
  ASSERT_EQ(back.segments.size(), 2u);
  EXPECT_EQ(back.segments[1].name, "Tumour");
}

TEST(DicomSegWriteEmpty, SourceByPathAndSeriesUid) {
  TempDir dir;
  const Volume ct = read_image(shared(kCt));
  LabelMap lm(ct.geometry());
  lm.set(1, 2, 0, 1);
  write_dicom_seg(dir / "seg.dcm", lm, shared(kCt), ct.series_uid);
  EXPECT_TRUE(same_labels(read_dicom_seg(dir / "seg.dcm", ct.geometry()), lm));
  EXPECT_THROW(write_dicom_seg(dir / "x.dcm", lm, shared(kCt), "1.2.3.no.such.series"), InputError);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"seg.dcm"});
}

TEST(DicomSegColour, LabRoundTrip) {
  for (const std::array<uint8_t, 3>& rgb :
       {std::array<uint8_t, 3>{255, 0, 0}, std::array<uint8_t, 3>{12, 200, 99},
        std::array<uint8_t, 3>{128, 174, 128}}) {
    const auto back = dicom_lab_to_rgb(rgb_to_dicom_lab(rgb));
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(back[c], rgb[c], 1);
  }
}

}  // namespace
}  // namespace medicosam::io
