// Dataset folders: the three ground-truth layouts, split.json, and the real
// data in ../shared/data.
#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/dataset.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {
const fs::path kData = fs::path(MEDICOSAM_SHARED_DIR) / "data";
}

TEST(Dataset2D, BinaryMasksAndSplit) {
  TempDir tmp("ds_binary");
  write_binary_dataset(tmp.path, 3);
  Dataset2DOptions o;
  const auto d = Dataset2D::open(tmp.path.string(), o);
  EXPECT_EQ(d.size(), 3u);
  EXPECT_EQ(d.name(), tmp.path.filename().string());
  EXPECT_EQ(d.entry(0).name, "img_00");
  const Sample2D s = d.load(1);
  EXPECT_EQ(s.rgb.width, 128);
  EXPECT_EQ(s.rgb.height, 96);
  ASSERT_EQ(s.classes.size(), 1u);
  EXPECT_EQ(s.classes[0].name, "foreground");
  const auto expected =
      mask_or(disc_mask(96, 128, 33, 40, 15), rect_mask(96, 128, 80, 20, 110, 70));
  EXPECT_EQ(s.classes[0].mask.data, expected.data);
  EXPECT_EQ(s.spacing[0], 1.0);

  o.split = "train";  // empty list
  EXPECT_EQ(Dataset2D::open(tmp.path.string(), o).size(), 0u);
  o.split = "holdout";
  EXPECT_THROW(Dataset2D::open(tmp.path.string(), o), InputError);
  o.split = "all";
  o.limit = 2;
  EXPECT_EQ(Dataset2D::open(tmp.path.string(), o).size(), 2u);
}

TEST(Dataset2D, ResizeToSquareForThePapersPreprocessing) {
  TempDir tmp("ds_resize");
  write_binary_dataset(tmp.path, 1);
  Dataset2DOptions o;
  o.resize_to = 64;
  const Sample2D s = Dataset2D::open(tmp.path.string(), o).load(0);
  EXPECT_EQ(s.rgb.width, 64);
  EXPECT_EQ(s.rgb.height, 64);
  EXPECT_EQ(s.classes[0].mask.width, 64);
  EXPECT_DOUBLE_EQ(s.spacing[0], 2.0);  // 128 px -> 64 px
  EXPECT_DOUBLE_EQ(s.spacing[1], 1.5);  // 96 px -> 64 px
}

TEST(Dataset2D, MultiLabelMapsInstanceMapsAndInstanceFiles) {
  TempDir tmp("ds_layouts");
  const int H = 40, W = 50;
  fs::create_directories(tmp.path / "images");
  fs::create_directories(tmp.path / "masks");
  fs::create_directories(tmp.path / "instances");
  const auto a = rect_mask(H, W, 2, 2, 12, 12), b = rect_mask(H, W, 20, 5, 30, 25),
             c = rect_mask(H, W, 35, 30, 45, 38);
  // Label map with values 1 and 2.
  write_rgb_png(tmp.path / "images" / "multi.png", synthetic_image(mask_or(a, b)));
  {
    cv::Mat lm(H, W, CV_8UC1, cv::Scalar(0));
    for (int i = 0; i < H * W; ++i) lm.data[i] = a.data[i] ? 1 : (b.data[i] ? 2 : 0);
    cv::imwrite((tmp.path / "masks" / "multi.png").string(), lm);
  }
  // Instance map (no masks/ file): ids 1 and 2 form one class.
  write_rgb_png(tmp.path / "images" / "inst.png", synthetic_image(mask_or(a, c)));
  {
    cv::Mat lm(H, W, CV_8UC1, cv::Scalar(0));
    for (int i = 0; i < H * W; ++i) lm.data[i] = a.data[i] ? 1 : (c.data[i] ? 2 : 0);
    cv::imwrite((tmp.path / "instances" / "inst.png").string(), lm);
  }
  // One file per instance; "ct_1" must not take the files of "ct_10".
  write_rgb_png(tmp.path / "images" / "ct_1.png", synthetic_image(a));
  write_rgb_png(tmp.path / "images" / "ct_10.png", synthetic_image(a));
  write_png(tmp.path / "masks" / "ct_1_liver_000.png", a);
  write_png(tmp.path / "masks" / "ct_1_hip_left_000.png", b);
  write_png(tmp.path / "masks" / "ct_1_hip_left_001.png", c);
  write_png(tmp.path / "masks" / "ct_10_liver_000.png", c);
  // An image without ground truth.
  write_rgb_png(tmp.path / "images" / "lonely.png", synthetic_image(a));

  const auto d = Dataset2D::open(tmp.path.string());  // no split.json: all images
  EXPECT_EQ(d.split_description().rfind("all (no split.json; 4 of 4 images", 0), 0u) << d.split_description();
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d.skipped(), std::vector<std::string>{"lonely"});
  for (size_t i = 0; i < d.size(); ++i) {
    const Sample2D s = d.load(i);
    if (s.name == "multi") {
      ASSERT_EQ(s.classes.size(), 2u);
      EXPECT_EQ(s.classes[0].name, "class_1");
      EXPECT_EQ(s.classes[0].mask.data, a.data);
      EXPECT_EQ(s.classes[1].name, "class_2");
      EXPECT_EQ(s.classes[1].mask.data, b.data);
    } else if (s.name == "inst") {
      ASSERT_EQ(s.classes.size(), 1u);
      EXPECT_EQ(s.classes[0].mask.data, mask_or(a, c).data);
    } else if (s.name == "ct_1") {
      ASSERT_EQ(s.classes.size(), 2u);
      EXPECT_EQ(s.classes[0].name, "hip_left");
      EXPECT_EQ(s.classes[0].mask.data, mask_or(b, c).data);
      EXPECT_EQ(s.classes[1].name, "liver");
      EXPECT_EQ(s.classes[1].mask.data, a.data);
    } else {
      EXPECT_EQ(s.name, "ct_10");
      ASSERT_EQ(s.classes.size(), 1u);
      EXPECT_EQ(s.classes[0].mask.data, c.data);
    }
  }
}

TEST(Dataset2D, BadFoldersAndFilesAreNamed) {
  EXPECT_THROW(Dataset2D::open("/nonexistent/folder"), InputError);
  TempDir tmp("ds_bad");
  EXPECT_THROW(Dataset2D::open(tmp.path.string()), InputError);  // no images/
  write_binary_dataset(tmp.path, 1);
  write_png(tmp.path / "masks" / "img_00.png", rect_mask(10, 10, 0, 0, 5, 5));  // wrong size
  try {
    Dataset2D::open(tmp.path.string()).load(0);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("img_00.png"), std::string::npos) << e.what();
  }
  {
    std::FILE* f = std::fopen((tmp.path / "split.json").c_str(), "w");
    std::fprintf(f, "{\"test\": [\"img_00\", \"ghost\"]}");
    std::fclose(f);
  }
  EXPECT_THROW(Dataset2D::open(tmp.path.string()), InputError);
}

TEST(Dataset2D, SharedDataTestSplits) {
  if (!fs::exists(kData)) GTEST_SKIP() << "no " << kData;
  // Counts from each MANIFEST / split.json.
  EXPECT_EQ(Dataset2D::open((kData / "kvasir_seg").string()).size(), 92u);
  EXPECT_EQ(Dataset2D::open((kData / "busi").string()).size(), 54u);
  EXPECT_EQ(Dataset2D::open((kData / "hc18_fetal_head").string()).size(), 103u);
  EXPECT_EQ(Dataset2D::open((kData / "ph2_dermoscopy").string()).size(), 34u);
  // SAM-Med2D slices: no split.json, one image without masks.
  const auto ct = Dataset2D::open((kData / "ct_mr_slices_sammed2d").string());
  EXPECT_EQ(ct.size(), 4u);
  EXPECT_EQ(ct.skipped(), std::vector<std::string>{"amos_0507_31"});
  for (size_t i = 0; i < ct.size(); ++i) {
    const Sample2D s = ct.load(i);
    if (s.name != "s0619_32") continue;
    std::vector<std::string> names;
    for (const auto& c : s.classes) names.push_back(c.name);
    EXPECT_EQ(names, (std::vector<std::string>{"colon", "femur_right", "gluteus_maximus_left",
                                               "gluteus_maximus_right", "hip_left", "hip_right"}));
    EXPECT_EQ(s.rgb.width, 225);
    EXPECT_EQ(s.rgb.height, 155);
  }
  // BUSI has masks/ and instances/: masks/ (the union) is used.
  const auto busi = Dataset2D::open((kData / "busi").string());
  EXPECT_EQ(busi.entry(0).truth, ImageEntry::Truth::kLabelMap);
}

TEST(Dataset2D, InstanceIdsAsClassesForOrganDatasets) {
  if (!fs::exists(kData / "mscmr_bssfp_mri")) GTEST_SKIP() << "no " << kData;
  Dataset2DOptions o;
  o.instance_classes = true;
  const auto cmr = Dataset2D::open((kData / "mscmr_bssfp_mri").string(), o);
  const auto merged = Dataset2D::open((kData / "mscmr_bssfp_mri").string());
  ASSERT_EQ(cmr.size(), merged.size());
  // Per structure (1 myocardium, 2 LV pool, 3 RV), named by id also when an image has only
  // one, and together exactly the union in masks/.
  size_t most = 0;
  for (size_t i = 0; i < 6; ++i) {
    const Sample2D s = cmr.load(i), u = merged.load(i);
    ASSERT_EQ(u.classes.size(), 1u);
    most = std::max(most, s.classes.size());
    std::vector<uint8_t> all(u.classes[0].mask.data.size(), 0);
    for (const auto& c : s.classes) {
      EXPECT_TRUE(c.name == "class_1" || c.name == "class_2" || c.name == "class_3") << c.name;
      for (size_t k = 0; k < all.size(); ++k) {
        EXPECT_FALSE(all[k] && c.mask.data[k]) << "classes overlap at " << k;
        all[k] |= c.mask.data[k];
      }
    }
    EXPECT_EQ(all, u.classes[0].mask.data) << s.name;
  }
  EXPECT_EQ(most, 3u);
  // Without instances/ the option changes nothing.
  const auto ph2 = Dataset2D::open((kData / "ph2_dermoscopy").string(), o);
  EXPECT_EQ(ph2.load(0).classes.size(), 1u);
  EXPECT_EQ(ph2.load(0).classes[0].name, "foreground");
}
