// The embedded default model (models/medicosam_default.safetensors) as a new
// user meets it: `medicosam segment` without --model finds it, and it
// segments held-out test images of the datasets it was fine-tuned on from
// their tight boxes (the model card's box-start setting).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "medicosam/io/read.hpp"
#include "medicosam/io/volume.hpp"
#include "cli_runner.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {

const fs::path kData = fs::path(MEDICOSAM_SHARED_DIR) / "data";
const fs::path kDefault = fs::path(MEDICOSAM_SOURCE_DIR) / "models/medicosam_default.safetensors";

fs::path scratch() { return clitest::cli_scratch(); }

// MEDICOSAM_MODEL unset so the built-in lookup is what is tested.
clitest::CliResult cli(const std::string& args) {
  return clitest::run_cli(args, "env -u MEDICOSAM_MODEL ");
}

std::vector<bool> foreground(const fs::path& png) {
  const io::Volume v = io::read_image(png.string());
  std::vector<bool> fg(static_cast<size_t>(v.width() * v.height()));
  for (int64_t y = 0; y < v.height(); ++y)
    for (int64_t x = 0; x < v.width(); ++x)
      fg[static_cast<size_t>(y * v.width() + x)] = v.value(x, y, 0) > 0;
  return fg;
}

struct Box {
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
};

Box tight_box(const fs::path& mask_png) {
  const io::Volume v = io::read_image(mask_png.string());
  Box b;
  for (int64_t y = 0; y < v.height(); ++y)
    for (int64_t x = 0; x < v.width(); ++x)
      if (v.value(x, y, 0) > 0) {
        b.x0 = std::min<int>(b.x0, x), b.y0 = std::min<int>(b.y0, y);
        b.x1 = std::max<int>(b.x1, x), b.y1 = std::max<int>(b.y1, y);
      }
  return b;
}

double dice(const std::vector<bool>& a, const std::vector<bool>& b) {
  EXPECT_EQ(a.size(), b.size());
  double inter = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    inter += a[i] && b[i];
    sa += a[i];
    sb += b[i];
  }
  return sa + sb > 0 ? 2 * inter / (sa + sb) : 1.0;
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

// Held-out (test split) images — the first of each split, not picked — one
// object each, segmented from the object's tight box. Measured: PH2 0.92,
// Kvasir 0.87 (the model card's Box means are 0.92 and 0.80); the stage-1
// synthetic-only model's Box means are 0.49 / 0.23, so the thresholds catch an
// untrained, wrongly loaded or wrongly preprocessed model.
TEST(DefaultModel, SegmentsHeldOutTestImagesFromTheirBoxes) {
  struct Case {
    std::string dataset, stem;
    double min_dice;
  };
  const Case cases[] = {
      {"ph2_dermoscopy", "ph2_IMD002", 0.80},
      {"kvasir_seg", "cju0t4oil7vzk099370nun5h9", 0.70},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dataset + "/" + c.stem);
    const fs::path dir = kData / c.dataset;
    fs::path image;
    for (const auto* ext : {".jpg", ".png"})
      if (fs::exists(dir / "images" / (c.stem + ext))) image = dir / "images" / (c.stem + ext);
    ASSERT_FALSE(image.empty());
    const fs::path truth = dir / "masks" / (c.stem + ".png");
    const Box b = tight_box(truth);
    ASSERT_GE(b.x1, b.x0);
    const fs::path out = scratch() / (c.stem + "_mask.png");
    const auto r = cli("segment -i " + image.string() + " --box " + std::to_string(b.x0) + "," +
                       std::to_string(b.y0) + "," + std::to_string(b.x1) + "," +
                       std::to_string(b.y1) + " --out " + out.string() + " --json --threads 2");
    ASSERT_EQ(r.code, 0) << r.err;
    const double d = dice(foreground(out), foreground(truth));
    std::printf("[default model] %s/%s box-start Dice %.3f (required >= %.2f)\n", c.dataset.c_str(),
                c.stem.c_str(), d, c.min_dice);
    EXPECT_GE(d, c.min_dice);
  }
}
