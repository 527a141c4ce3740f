// The data side of training: deterministic synthetic images, dataset folders
// and split files, augmentation that keeps labels aligned, and batches that
// do not depend on how many processes build them.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/train/batches.hpp"
#include "medicosam/train/config.hpp"
#include "medicosam/train/synthetic.hpp"

using namespace medicosam;
using namespace medicosam::train;

namespace {
const std::string kData = std::string(MEDICOSAM_SHARED_DIR) + "/data";
}

TEST(Synthetic, SameSeedAndIndexGiveTheSameImage) {
  const auto a = make_synthetic_sample(3, 17), b = make_synthetic_sample(3, 17);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.instances, b.instances);
  const auto c = make_synthetic_sample(3, 18), d = make_synthetic_sample(4, 17);
  EXPECT_NE(a.image, c.image);
  EXPECT_NE(a.image, d.image);
}

TEST(Synthetic, ObjectsAreLabelledAndLargeEnough) {
  SyntheticOptions o;
  int with_objects = 0;
  for (uint64_t i = 0; i < 40; ++i) {
    const auto s = make_synthetic_sample(1, i, o);
    ASSERT_GE(s.height, o.min_side);
    ASSERT_LE(s.width, o.max_side);
    ASSERT_EQ(s.image.size(), size_t(s.height) * s.width * 3);
    std::vector<int64_t> area(s.max_label() + 1, 0);
    for (auto v : s.instances) ++area[v];
    for (size_t k = 1; k < area.size(); ++k)
      EXPECT_GE(area[k], o.min_object_area) << s.name << " object " << k;
    with_objects += s.max_label() > 0;
  }
  EXPECT_GE(with_objects, 38);  // nearly every image has an object
}

TEST(Datasets, FolderSplitMatchesSplitJson) {
  DatasetSpec spec;
  spec.type = "folder";
  spec.path = kData + "/ph2_dermoscopy";
  spec.split = "test";
  spec.normalize = "minmax";
  auto src = open_dataset(spec);
  std::ifstream in(spec.path + "/split.json");
  const auto split = nlohmann::json::parse(in);
  EXPECT_EQ(src->size(), split["test"].size());
  const auto s = src->get(0);
  EXPECT_EQ(s.name, split["test"][0].get<std::string>());
  EXPECT_EQ(s.max_label(), 1);  // PH2: one lesion per image
  EXPECT_EQ(s.image.size(), size_t(s.height) * s.width * 3);
}

TEST(Datasets, BusiInstancesAreRead) {
  DatasetSpec spec;
  spec.type = "folder";
  spec.path = kData + "/busi";
  spec.split = "train";
  auto src = open_dataset(spec);
  int multi = 0;
  for (size_t i = 0; i < src->size(); ++i) multi += src->get(i).max_label() > 1;
  EXPECT_GT(multi, 0);  // BUSI has images with several lesions
}

TEST(Datasets, VolumeSlicesContainObjects) {
  DatasetSpec spec;
  spec.type = "volumes";
  spec.pairs = {{kData + "/mri_tumor_3d_pyradiomics/nrrd/brain1_image.nrrd",
                 kData + "/mri_tumor_3d_pyradiomics/nrrd/brain1_label.nrrd"}};
  auto src = open_dataset(spec);
  EXPECT_EQ(src->size(), 7u);  // MANIFEST: label on axial slices 11-17
  for (size_t i = 0; i < src->size(); ++i) EXPECT_GE(src->get(i).max_label(), 1);
}

TEST(Datasets, BadSpecsAreClearErrors) {
  EXPECT_THROW(DatasetSpec::from_json({{"type", "folder"}}, "cfg"), InputError);
  EXPECT_THROW(DatasetSpec::from_json({{"type", "nope"}, {"path", "x"}}, "cfg"), InputError);
  DatasetSpec spec;
  spec.type = "folder";
  spec.path = kData + "/ph2_dermoscopy";
  spec.split = "holdout";
  EXPECT_THROW(open_dataset(spec), InputError);
  spec.path = "/nonexistent";
  EXPECT_THROW(open_dataset(spec), InputError);
}

TEST(Augment, LabelsFollowTheImage) {
  // Put a bright square with label 1 in an image; after any augmentation the
  // labelled pixels must still be the bright ones.
  TrainSample s;
  s.height = 64;
  s.width = 80;
  s.image.assign(64 * 80 * 3, 20);
  s.instances.assign(64 * 80, 0);
  for (int y = 10; y < 30; ++y)
    for (int x = 40; x < 70; ++x) {
      s.instances[y * 80 + x] = 1;
      for (int c = 0; c < 3; ++c) s.image[(y * 80 + x) * 3 + c] = 230;
    }
  AugmentOptions o;
  o.brightness = o.contrast = o.gamma = 0;  // keep intensities to compare
  for (uint64_t seed = 0; seed < 30; ++seed) {
    segment::Rng rng(seed);
    const auto a = augment(s, o, rng);
    int64_t agree = 0, labelled = 0;
    for (size_t i = 0; i < a.instances.size(); ++i) {
      if (!a.instances[i]) continue;
      ++labelled;
      agree += a.image[i * 3] > 120;
    }
    if (labelled > 0) {
      EXPECT_GT(double(agree) / labelled, 0.95) << "seed " << seed;
    }
  }
}

TEST(Batches, RankSlicesConcatenateToTheSingleProcessBatch) {
  DatasetSpec spec;
  spec.type = "synthetic";
  spec.count = 50;
  spec.seed = 2;
  std::vector<std::shared_ptr<SampleSource>> src{open_dataset(spec)};
  BatchOptions o;
  o.input_size = 64;
  o.images = 4;
  o.objects_per_image = 3;
  o.seed = 9;
  const auto whole = make_batch(src, {1.0}, o, 5);
  o.images = 2;
  const auto r0 = make_batch(src, {1.0}, o, 5);
  o.first_slot = 2;
  const auto r1 = make_batch(src, {1.0}, o, 5);
  ASSERT_EQ(whole.images.size(), 4u);
  ASSERT_EQ(whole.objects.size(), r0.objects.size() + r1.objects.size());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(whole.images[i].image, r0.images[i].image);
    EXPECT_EQ(whole.images[2 + i].image, r1.images[i].image);
  }
  for (size_t k = 0; k < r1.objects.size(); ++k) {
    const auto& a = whole.objects[r0.objects.size() + k];
    EXPECT_EQ(a.mask.data, r1.objects[k].mask.data);
    EXPECT_EQ(a.start_point.x, r1.objects[k].start_point.x);
    EXPECT_EQ(a.box.x1, r1.objects[k].box.x1);
  }
  // And the next iteration is a different batch.
  EXPECT_NE(make_batch(src, {1.0}, o, 6).images[0].image, r1.images[0].image);
}

TEST(Config, UnknownSettingsAndBadValuesAreRejected) {
  nlohmann::json ok = {{"architecture", {{"img_size", 64}}},
                       {"train_data", {{{"type", "synthetic"}, {"count", 4}}}}};
  EXPECT_NO_THROW(TrainConfig::from_json(ok, "t.json"));
  auto bad = ok;
  bad["learning_rate"] = 1;
  try {
    TrainConfig::from_json(bad, "t.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate"), std::string::npos);
  }
  bad = ok;
  bad["schedule"] = "linear";
  EXPECT_THROW(TrainConfig::from_json(bad, "t.json"), InputError);
  bad = ok;
  bad["bce_weight"] = -1;
  EXPECT_THROW(TrainConfig::from_json(bad, "t.json"), InputError);
  bad = ok;
  bad.erase("train_data");
  EXPECT_THROW(TrainConfig::from_json(bad, "t.json"), InputError);
}
