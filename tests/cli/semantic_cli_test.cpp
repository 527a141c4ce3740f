// `medicosam semantic` as users call it: a joint checkpoint (SAM + UNETR head,
// written by our writer in micro_sam's layout) segments a real 2D image and a
// real MRI volume; the label map lies on the input's geometry, holds only the
// head's classes, and equals what the head computes in-process; the embedding
// cache is reused; a checkpoint without a head and impossible outputs end in
// one clear error line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cli_runner.hpp"
#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/model/unetr_module.hpp"
#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/volume_slices.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {

const std::string kSam = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/sam_tiny_seed0.pth";
const std::string kImage = std::string(MEDICOSAM_SHARED_DIR) + "/data/hc18_fetal_head/images/hc18_000.jpg";
const std::string kVolume =
    std::string(MEDICOSAM_SHARED_DIR) + "/data/mri_tumor_3d_pyradiomics/nrrd/brain1_image.nrrd";
constexpr int kClasses = 3;

fs::path scratch() { return clitest::cli_scratch(); }

// The tiny SAM of the parity fixtures made to read 256x256 inputs (a 16x16
// embedding grid: the CPU cost of a 25-slice volume fits a test) by
// resampling its position tables, as SAM does for other input sizes.
model::Sam small_sam() {
  auto tiny = model::load_sam(kSam);
  auto config = tiny.sam->config;
  config.encoder.img_size = 256;
  model::Sam sam(config);
  std::map<std::string, torch::Tensor> src;
  for (const auto& [n, t] : model::sam_state_dict(*tiny.sam)) src[n] = t;
  namespace F = torch::nn::functional;
  torch::NoGradGuard ng;
  for (const auto& [n, dst] : model::sam_state_dict(*sam)) {
    auto t = src.at(n);
    if (t.sizes() != dst.sizes() && n == "image_encoder.pos_embed") {  // (1, g, g, C)
      t = F::interpolate(t.permute({0, 3, 1, 2}), F::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{dst.size(1), dst.size(2)})
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false))
              .permute({0, 2, 3, 1});
    } else if (t.sizes() != dst.sizes()) {  // relative positions (2g-1, head_dim)
      t = F::interpolate(t.t().unsqueeze(0), F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{dst.size(0)})
                                                 .mode(torch::kLinear)
                                                 .align_corners(false))[0]
              .t();
    }
    dst.copy_(t);
  }
  return sam;
}

// That SAM with a small random UNETR head (features 32/16/8/4, 3 classes)
// beside it, as micro_sam's joint .pth and as safetensors.
const std::string& joint(const std::string& ext) {
  static std::map<std::string, std::string> made;
  auto it = made.find(ext);
  if (it != made.end()) return it->second;
  auto sam = small_sam();
  model::UnetrConfig c;
  c.embed_dim = 256;
  c.initial_features = 4;
  c.num_classes = kClasses;
  torch::manual_seed(3);
  model::Unetr head(c);
  {
    torch::NoGradGuard ng;
    for (auto& p : head->parameters()) p.normal_(0, 0.2);
  }
  model::SaveOptions opt;
  opt.decoder_state = model::unetr_state_dict(*head);
  const auto path = (scratch() / ("joint" + ext)).string();
  model::save_sam(path, *sam, opt);
  return made[ext] = path;
}

void expect_same_geometry(const io::Geometry& a, const io::Geometry& b) {
  EXPECT_EQ(a.size, b.size);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], 1e-4) << i;
    EXPECT_NEAR(a.origin[i], b.origin[i], 1e-3) << i;
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], 1e-5) << i;
}

// What the head gives for slice k of `path`, computed in-process (model grid).
std::vector<uint16_t> expected_labels(const std::string& path, int k) {
  auto volume = std::make_shared<const io::Volume>(io::read_image(path));
  segment::VolumeSlices slices(volume, io::parse_axis("axial"), io::Normalization{});
  predict::SamPredictor predictor(joint(".pth"), {2, "cpu", "fp32"});
  EXPECT_EQ(predictor.model().img_size, 256);
  const auto head = model::SemanticHead::load(joint(".pth"));
  const auto rgb = slices.model_image(k);
  const auto e = predictor.encode(rgb.data.data(), rgb.height, rgb.width, 3);
  return head.segment(e.to_npy(), e.input_size().height, e.input_size().width, rgb.height, rgb.width,
                      predictor.model().img_size);
}

// `semantic` runs in fp32: the labels are compared with the head's fp32 argmax
// in-process, and --precision auto picks bf16 on CPUs that compute it natively.
clitest::CliResult cli(const std::string& args) {
  return clitest::run_cli(args.rfind("semantic ", 0) == 0 ? args + " --precision fp32" : args);
}

void expect_clear_error(const clitest::CliResult& r, const std::string& what, const fs::path& output) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("medicosam: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(output)) << output;
}

}  // namespace

TEST(SemanticCli, InfoShowsTheHead) {
  const auto r = cli("info " + joint(".pth"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("semantic:     UNETR decoder, 3 classes, features 32/16/8/4"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(cli("info --json " + joint(".safetensors")).out);
  EXPECT_EQ(j["semantic_head"]["num_classes"], kClasses);
}

TEST(SemanticCli, LabelsA2DImageOnItsOwnGrid) {
  const auto out = scratch() / "hc18_labels.png";
  const auto r = cli("semantic -m " + joint(".pth") + " " + kImage + " --out " + out.string() + " --json --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["num_classes"], kClasses);
  EXPECT_EQ(j["slices"], 1);
  const auto labels = io::read_label_map(out.string());
  const auto image = io::read_image(kImage);
  expect_same_geometry(labels.geometry(), image.geometry());
  EXPECT_LT(labels.max_label(), kClasses);
  EXPECT_GT(labels.labels_present().size(), 0u) << "a random 3-class head labels nothing";
  // Exactly the head's argmax on the image's embedding.
  const auto want = expected_labels(kImage, 0);
  ASSERT_EQ(want.size(), static_cast<size_t>(labels.num_voxels()));
  int64_t differ = 0;
  for (int64_t i = 0; i < labels.num_voxels(); ++i) differ += labels.data()[i] != want[i];
  EXPECT_EQ(differ, 0);
}

TEST(SemanticCli, LabelsAVolumeSliceBySliceAndReusesTheCache) {
  const auto out = scratch() / "brain_labels.nii.gz", again = scratch() / "brain_again.nrrd";
  const auto cache = scratch() / "brain_cache";
  auto r = cli("semantic -m " + joint(".safetensors") + " " + kVolume + " --cache " + cache.string() + " --out " +
               out.string() + " --json --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["slices"], 25);
  EXPECT_EQ(j["embedded_slices"], 25);
  const auto labels = io::read_label_map(out.string());
  const auto volume = io::read_image(kVolume);
  expect_same_geometry(labels.geometry(), volume.geometry());
  EXPECT_LT(labels.max_label(), kClasses);
  // Slices differ, so the head ran on each.
  std::set<int64_t> counts;
  for (int z = 0; z < 25; ++z) {
    int64_t n = 0;
    for (int64_t y = 0; y < 256; ++y)
      for (int64_t x = 0; x < 256; ++x) n += labels.at(x, y, z) == 1;
    counts.insert(n);
  }
  EXPECT_GT(counts.size(), 5u);
  // Slice 12 equals the in-process head on that slice (slice pixel -> voxel
  // through the same mapping the viewer uses).
  const auto want = expected_labels(kVolume, 12);
  segment::VolumeSlices slices(volume, io::parse_axis("axial"), io::Normalization{});
  ASSERT_EQ(slices.model_size().width, 256);
  int64_t differ = 0;
  for (int64_t y = 0; y < 256; ++y) {
    for (int64_t x = 0; x < 256; ++x) {
      const auto v = slices.to_voxel(12, x, y);
      differ += labels.at(v[0], v[1], v[2]) != want[y * 256 + x];
    }
  }
  EXPECT_EQ(differ, 0);

  // Second run: the cache is complete, only the head runs; same labels.
  r = cli("semantic -m " + joint(".safetensors") + " " + kVolume + " --cache " + cache.string() + " --out " +
          again.string() + " --json --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["embedded_slices"], 0) << r.out;
  const auto labels2 = io::read_label_map(again.string());
  expect_same_geometry(labels2.geometry(), volume.geometry());
  differ = 0;
  for (int64_t i = 0; i < labels.num_voxels(); ++i) differ += labels.data()[i] != labels2.data()[i];
  EXPECT_EQ(differ, 0);

  // One slice of the volume as a PNG, from the cache.
  const auto png = scratch() / "brain_s12.png";
  r = cli("semantic -m " + joint(".safetensors") + " " + kVolume + " --slice 12 --cache " + cache.string() + " --out " +
          png.string() + " --quiet --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto slice = io::read_label_map(png.string());
  ASSERT_EQ(slice.num_voxels(), 256 * 256);
  differ = 0;
  for (int64_t y = 0; y < 256; ++y)
    for (int64_t x = 0; x < 256; ++x) differ += slice.at(x, y, 0) != want[y * 256 + x];
  EXPECT_EQ(differ, 0);
}

TEST(SemanticCli, DicomSeriesToDicomSegAnd2DCache) {
  const std::string ct = std::string(MEDICOSAM_SHARED_DIR) + "/data/ct_dicom_seg_dcmqi/ct_dicom";
  const auto seg = scratch() / "ct_semantic.dcm";
  auto r = cli("semantic -m " + joint(".pth") + " " + ct + " --out " + seg.string() + " --quiet --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto labels = io::read_label_map(seg.string());
  const auto volume = io::read_image(ct);
  expect_same_geometry(labels.geometry(), volume.geometry());
  EXPECT_LT(labels.max_label(), kClasses);
  ASSERT_FALSE(labels.segments.empty());
  for (const auto& s : labels.segments) {
    EXPECT_EQ(s.algorithm_type, "AUTOMATIC") << s.label;
    EXPECT_EQ(s.name, "Class " + std::to_string(s.label));
  }
  // A 2D image through a cache: computed once, then read; same labels.
  const auto cache = scratch() / "hc18_cache";
  const auto a = scratch() / "hc18_a.png", b = scratch() / "hc18_b.png";
  int run = 0;
  for (const auto& out : {a, b}) {
    r = cli("semantic -m " + joint(".pth") + " " + kImage + " --cache " + cache.string() + " --out " + out.string() +
            " --json --threads 2");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["embedded_slices"], run++ == 0 ? 1 : 0) << r.out;
  }
  const auto la = io::read_label_map(a.string()), lb = io::read_label_map(b.string());
  ASSERT_EQ(la.num_voxels(), lb.num_voxels());
  EXPECT_TRUE(std::equal(la.data(), la.data() + la.num_voxels(), lb.data()));
  EXPECT_GT(la.labels_present().size(), 0u);
}

TEST(SemanticCli, ClearErrors) {
  const auto out = scratch() / "nothing.nii.gz";
  // A SAM checkpoint without a head.
  expect_clear_error(cli("semantic -m " + kSam + " " + kImage + " --out " + out.string()),
                     "has no semantic segmentation head", out);
  // A whole volume does not fit in a PNG.
  const auto png = scratch() / "nothing.png";
  expect_clear_error(cli("semantic -m " + joint(".pth") + " " + kVolume + " --out " + png.string()),
                     "a PNG holds one slice", png);
  // A separate decoder file that does not fit.
  const auto bad = scratch() / "bad_decoder.pth";
  {
    model::UnetrConfig c;
    c.embed_dim = 256;
    c.initial_features = 4;
    model::Unetr head(c);
    checkpoint::StateDict sd;
    for (const auto& [n, t] : model::unetr_state_dict(*head))
      if (n != "deconv2.block.1.block.bias") sd.push_back({n, t.contiguous()});
    checkpoint::write_state_dict_pth(bad.string(), sd);
  }
  expect_clear_error(cli("semantic -m " + kSam + " --decoder " + bad.string() + " " + kImage + " --out " +
                         out.string()),
                     "missing key(s) (deconv2.block.1.block.bias)", out);
  // A DICOM SEG needs a DICOM source.
  const auto seg = scratch() / "nothing.dcm";
  expect_clear_error(cli("semantic -m " + joint(".pth") + " " + kImage + " --out " + seg.string()),
                     "a DICOM SEG needs a DICOM series", seg);
}
