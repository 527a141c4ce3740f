#include <gtest/gtest.h>

#include "medicosam/core/npy.hpp"
#include "medicosam/predict/transforms.hpp"

using namespace medicosam;
using namespace medicosam::predict;

namespace {
const std::string kFixtures = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/";

// Counts differing bytes between our resize of `image` and the reference output.
size_t resize_mismatches(const std::string& image, const std::string& reference) {
  const auto img = read_npy(kFixtures + image);
  const auto ref = read_npy(kFixtures + reference);
  const int h = static_cast<int>(img.shape[0]), w = static_cast<int>(img.shape[1]);
  const auto out = resize_bilinear_pil(img.data.data(), h, w, 3, static_cast<int>(ref.shape[0]),
                                       static_cast<int>(ref.shape[1]));
  EXPECT_EQ(out.size(), ref.data.size());
  size_t diff = 0;
  for (size_t i = 0; i < out.size() && i < ref.data.size(); ++i) diff += out[i] != ref.data[i];
  return diff;
}
}  // namespace

TEST(PreprocessShape, MatchesReferenceRounding) {
  EXPECT_EQ(preprocess_shape(300, 420, 1024), (Size2{731, 1024}));
  EXPECT_EQ(preprocess_shape(513, 257, 1024), (Size2{1024, 513}));
  EXPECT_EQ(preprocess_shape(1024, 1024, 1024), (Size2{1024, 1024}));
  EXPECT_EQ(preprocess_shape(900, 1300, 512), (Size2{354, 512}));
}

TEST(ResizeBilinearPil, UpscaleIsBitExactWithPil) {
  EXPECT_EQ(resize_mismatches("img0_image.npy", "extra/img0_resized_uint8.npy"), 0u);
}

TEST(ResizeBilinearPil, AntialiasedDownscaleIsBitExactWithPil) {
  EXPECT_EQ(resize_mismatches("extra/resize_down_image.npy", "extra/resize_down_resized_uint8.npy"), 0u);
}

TEST(ResizeBilinearPil, SameSizeIsACopy) {
  std::vector<uint8_t> px = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(resize_bilinear_pil(px.data(), 1, 2, 3, 1, 2), px);
}

TEST(ResizeBilinearPil, ConstantImageStaysConstant) {
  std::vector<uint8_t> px(37 * 53, 200);
  for (auto [h, w] : {std::pair{100, 31}, {5, 5}, {37, 200}}) {
    auto out = resize_bilinear_pil(px.data(), 37, 53, 1, h, w);
    for (auto v : out) ASSERT_EQ(v, 200);
  }
}

TEST(CoordTransform, ScalesEachAxisByItsOwnFactor) {
  CoordTransform tf{{300, 420}, {731, 1024}};
  EXPECT_FLOAT_EQ(tf.x(119.0), 290.1333312988281f);  // value from cases.json
  EXPECT_FLOAT_EQ(tf.y(251.0), 611.6033325195312f);
}
