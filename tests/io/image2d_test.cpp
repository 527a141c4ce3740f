// 2D images -> uint8 RGB (the engine's `segment --image IMG` path).
#include <gtest/gtest.h>

#include <string>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/io/normalize.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::fixture;
using test::shared;
using test::TempDir;

// Every fixture converts exactly as micro_sam's _to_image does (numpy
// reference in tests/io/data/*.expected.npy, see make_fixtures.py).
class MicroSamRule : public ::testing::TestWithParam<const char*> {};

TEST_P(MicroSamRule, ToRgb8MatchesNumpyReference) {
  const std::string name = GetParam();
  const Volume v = read_image(fixture(name));
  EXPECT_TRUE(v.is_2d());
  const RGB8Image rgb = to_rgb8(v, Normalization::minmax());
  const NpyArray expected = read_npy(fixture(name + ".expected.npy"));
  ASSERT_EQ(expected.shape, (std::vector<int64_t>{rgb.height, rgb.width, 3}));
  ASSERT_EQ(expected.type, NpyType::kUInt8);
  int mismatches = 0;
  for (size_t i = 0; i < rgb.data.size(); ++i) mismatches += rgb.data[i] != expected.data[i];
  EXPECT_EQ(mismatches, 0) << name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MicroSamRule,
                         ::testing::Values("gray8.png", "gray16.png", "rgb16.png", "gray16.tif",
                                           "rgb8.tif", "float32.tif", "gray8.bmp", "rgb8.bmp",
                                           "palette.png", "gray_alpha.png", "rgba.png"));

TEST(Image2D, SixteenBitGrayKeepsItsValues) {
  const Volume v = read_image(fixture("gray16.png"));
  EXPECT_EQ(v.pixel_type(), PixelType::kUInt16);
  EXPECT_EQ(v.components(), 1);
  EXPECT_EQ(v.width(), 13);
  EXPECT_EQ(v.height(), 7);
  const auto mm = v.min_max();
  EXPECT_GE(mm[0], 1000);
  EXPECT_LT(mm[1], 40000);
}

TEST(Image2D, RasterImagesHaveUnitGeometry) {
  const Volume v = read_image(fixture("rgb8.tif"));
  const Geometry& g = v.geometry();
  EXPECT_EQ(g.spacing, (std::array<double, 3>{1, 1, 1}));
  EXPECT_EQ(g.origin, (std::array<double, 3>{0, 0, 0}));
  EXPECT_EQ(g.direction, (std::array<double, 9>{1, 0, 0, 0, 1, 0, 0, 0, 1}));
}

TEST(Image2D, Uint8RgbPassesThroughUntouched) {
  const Volume v = read_image(shared("data/kvasir_seg/images/cju0qoxqj9q6s0835b43399p4.jpg"));
  ASSERT_EQ(v.pixel_type(), PixelType::kUInt8);
  ASSERT_EQ(v.components(), 3);
  EXPECT_EQ(v.format, "JPEG");
  const RGB8Image rgb = to_rgb8(v);
  ASSERT_EQ(rgb.data.size(), v.num_bytes());
  EXPECT_EQ(0, std::memcmp(rgb.data.data(), v.data(), rgb.data.size()));
}

TEST(Image2D, GrayJpegIsReplicatedToThreeChannels) {
  const Volume v = read_image(shared("data/hc18_fetal_head/images/hc18_000.jpg"));
  ASSERT_EQ(v.components(), 1);
  const RGB8Image rgb = to_rgb8(v);
  const auto* p = v.data_as<uint8_t>();
  for (int i = 0; i < rgb.height * rgb.width; ++i) {
    ASSERT_EQ(rgb.data[3 * i], p[i]);
    ASSERT_EQ(rgb.data[3 * i + 1], p[i]);
    ASSERT_EQ(rgb.data[3 * i + 2], p[i]);
  }
}

// Our JPEG decoding matches PIL's (what micro_sam reads images with).
TEST(Image2D, JpegDecodingMatchesPil) {
  if (!test::have_python_module("PIL") || !test::have_python_module("numpy"))
    GTEST_SKIP() << "no PIL";
  TempDir dir;
  for (const std::string rel :
       {"data/kvasir_seg/images/cju0qoxqj9q6s0835b43399p4.jpg", "data/busi/images/benign_001.jpg",
        "data/hc18_fetal_head/images/hc18_000.jpg"}) {
    const std::string path = shared(rel);
    std::string out;
    ASSERT_EQ(0, test::run_python("import sys, numpy as np\nfrom PIL import Image\n"
                                  "a = np.asarray(Image.open(sys.argv[1]))\n"
                                  "np.save(sys.argv[2], np.ascontiguousarray(a))\n",
                                  path + " " + (dir / "pil.npy"), &out, dir))
        << out;
    const NpyArray pil = read_npy(dir / "pil.npy");
    const Volume v = read_image(path);
    ASSERT_EQ(pil.data.size(), v.num_bytes()) << rel;
    int max_diff = 0;
    const auto* p = static_cast<const uint8_t*>(v.data());
    for (size_t i = 0; i < pil.data.size(); ++i)
      max_diff = std::max(max_diff, std::abs(p[i] - pil.data[i]));
    EXPECT_EQ(max_diff, 0) << rel;
  }
}

TEST(Image2D, RgbPngOfCtSlice) {
  const Volume v = read_image(shared("data/ct_mr_slices_sammed2d/images/amos_0004_75.png"));
  EXPECT_EQ(v.width(), 512);
  EXPECT_EQ(v.height(), 512);
  EXPECT_EQ(v.components(), 3);
}

// ---------------------------------------------------------------- bad input

void expect_error_naming(const std::function<void()>& f, const std::string& path,
                         const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error for " << path;
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(Image2DErrors, MissingFile) {
  expect_error_naming([] { read_image("/nonexistent/x.png"); }, "/nonexistent/x.png",
                      "no such file");
}

TEST(Image2DErrors, EmptyFile) {
  TempDir dir;
  test::write_bytes(dir / "empty.png", "");
  expect_error_naming([&] { read_image(dir / "empty.png"); }, dir / "empty.png", "empty");
}

TEST(Image2DErrors, TextFileNamedPng) {
  TempDir dir;
  test::write_bytes(dir / "notes.png", "this is not an image\n");
  EXPECT_THROW(read_image(dir / "notes.png"), FormatError);
  expect_error_naming([&] { read_image(dir / "notes.png"); }, dir / "notes.png",
                      "not a supported image");
}

TEST(Image2DErrors, TruncatedPng) {
  TempDir dir;
  const std::string bytes =
      test::read_bytes(shared("data/kvasir_seg/masks/cju0qoxqj9q6s0835b43399p4.png"));
  test::write_bytes(dir / "cut.png", bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(read_image(dir / "cut.png"), FormatError);
}

TEST(Image2DErrors, TruncatedJpeg) {
  TempDir dir;
  const std::string bytes =
      test::read_bytes(shared("data/kvasir_seg/images/cju0qoxqj9q6s0835b43399p4.jpg"));
  test::write_bytes(dir / "cut.jpg", bytes.substr(0, bytes.size() / 2));
  expect_error_naming([&] { read_image(dir / "cut.jpg"); }, dir / "cut.jpg", "truncated");
}

TEST(Image2DErrors, AbsurdPngSizeIsRefusedBeforeAllocating) {
  ReadOptions small;
  small.max_bytes = 100;  // the 13x7 uint16 image needs 182 bytes
  EXPECT_THROW(read_image(fixture("gray16.png"), small), FormatError);
}

TEST(Image2DErrors, ToRgb8NeedsOneSlice) {
  Geometry g;
  g.size = {4, 4, 2};
  const Volume v(PixelType::kInt16, g);
  EXPECT_THROW(to_rgb8(v), InputError);
}

}  // namespace
}  // namespace medicosam::io
