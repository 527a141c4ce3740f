// Tiled prediction: micro_sam's blocking and prompt routing, and the tiled
// segmenter with the real (tiny) model: a prompt decoded through its tile
// equals decoding the tile's crop directly; the tiled cache layout is reused
// and readable by zarr-python.
#include "medicosam/segment/tiling.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "medicosam/core/error.hpp"
#include "medicosam/segment/prompt_sampling.hpp"
#include "medicosam/segment/zarr.hpp"

namespace medicosam::segment {
namespace {
namespace fs = std::filesystem;

TEST(Tiling, BlocksWithHaloAreClippedToTheImage) {
  Tiling t({100, 130}, {48, 64}, {8, 16});
  ASSERT_EQ(t.count(), 9);  // 3 x 3, row-major
  auto in = t.inner(4), out = t.outer(4);
  EXPECT_EQ(in.begin, (std::array<int, 2>{48, 64}));
  EXPECT_EQ(in.end, (std::array<int, 2>{96, 128}));
  EXPECT_EQ(out.begin, (std::array<int, 2>{40, 48}));
  EXPECT_EQ(out.end, (std::array<int, 2>{100, 130}));
  in = t.inner(8);
  EXPECT_EQ(in.end, (std::array<int, 2>{100, 130}));
  EXPECT_EQ(t.outer(0).begin, (std::array<int, 2>{0, 0}));
  EXPECT_EQ(t.tile_at(50, 10), 3);
  EXPECT_EQ(t.tile_at(99, 129), 8);
  EXPECT_THROW(Tiling({10, 10}, {0, 5}, {0, 0}), InputError);
}

TEST(Tiling, PromptsGoToTheTileOfTheirCentre) {
  Tiling t({100, 130}, {48, 64}, {8, 16});
  predict::Prompt p, local;
  // Mean (50, 50) -> tile 3 (row 1, col 0), outer block x 0..80: the point at x = 80 is dropped.
  p.points = {{60, 50, 1}, {80, 50, 0}, {10, 50, 1}};
  int dropped = 0;
  EXPECT_EQ(route_prompt(t, p, &local, &dropped), 3);
  EXPECT_EQ(dropped, 1);
  p.points = {{100, 50, 1}, {70, 50, 0}, {40, 50, 1}};  // mean (70, 50): tile 4, outer x from 48
  EXPECT_EQ(route_prompt(t, p, &local, &dropped), 4);
  EXPECT_EQ(dropped, 1);
  ASSERT_EQ(local.points.size(), 2u);
  EXPECT_DOUBLE_EQ(local.points[0].x, 52);
  EXPECT_DOUBLE_EQ(local.points[0].y, 10);
  predict::Prompt b;
  b.box = predict::Box{70, 45, 125, 99};  // centre (72, 97.5 -> 98): tile 4
  EXPECT_EQ(route_prompt(t, b, &local), 4);
  EXPECT_DOUBLE_EQ(local.box->x0, 22);
  EXPECT_DOUBLE_EQ(local.box->y0, 5);
  EXPECT_DOUBLE_EQ(local.box->x1, 77);
  EXPECT_DOUBLE_EQ(local.box->y1, 59);
  predict::Prompt both = b;
  both.points = {{5, 5, 1}};
  EXPECT_THROW(route_prompt(t, both, &local), InputError);  // different tiles
  predict::Prompt m;
  m.mask_input = std::vector<float>(16, 1.f);
  EXPECT_THROW(route_prompt(t, m, &local), InputError);
}

TEST(Tiling, TiledSegmenterDecodesInTheTileAndReusesItsCache) {
  auto predictor = std::make_shared<predict::SamPredictor>(
      std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/sam_tiny_seed0.pth",
      predict::PredictorOptions{2, "cpu"});
  const int H = 120, W = 150;
  std::vector<uint8_t> rgb(size_t(H) * W * 3);
  Rng rng(3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        rgb[(size_t(y) * W + x) * 3 + c] = static_cast<uint8_t>(
            ((x - 100) * (x - 100) + (y - 80) * (y - 80) < 400 ? 220 : 40) + rng.uniform_int(20));
  const auto dir = fs::temp_directory_path() / ("medicosam_tiling_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  TiledImageSegmenter tiled(predictor, {64, 80}, {16, 16}, dir.string());
  tiled.set_image(rgb.data(), H, W);
  ASSERT_EQ(tiled.tiling().count(), 4);
  EXPECT_EQ(tiled.computed_tiles(), 4);
  predict::Prompt p;
  p.points = {{100, 80, 1}};
  const auto pred = tiled.predict_batch({p}, false).front();
  ASSERT_EQ(pred.height, H);
  // Decoding the crop of tile 3 (outer block y 48..120, x 64..150) directly gives the same mask.
  const Block o = tiled.tiling().outer(3);
  ASSERT_EQ(o.begin, (std::array<int, 2>{48, 64}));
  std::vector<uint8_t> crop(size_t(o.height()) * o.width() * 3);
  for (int y = 0; y < o.height(); ++y)
    std::copy_n(rgb.data() + (size_t(y + o.begin[0]) * W + o.begin[1]) * 3, size_t(o.width()) * 3,
                crop.data() + size_t(y) * o.width() * 3);
  predictor->set_image(crop.data(), o.height(), o.width(), 3);
  predict::Prompt local;
  local.points = {{100.0 - o.begin[1], 80.0 - o.begin[0], 1}};
  const auto direct = predictor->predict(local, false);
  int64_t outside = 0, differ = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const uint8_t v = pred.masks[size_t(y) * W + x];
      const bool in = y >= o.begin[0] && x >= o.begin[1];
      if (!in) {
        outside += v;
      } else {
        differ += v != direct.masks[size_t(y - o.begin[0]) * o.width() + (x - o.begin[1])];
      }
    }
  EXPECT_EQ(outside, 0);
  EXPECT_EQ(differ, 0);
  // micro_sam's tiled layout.
  const auto attrs = zarr::read_attrs(dir.string());
  EXPECT_EQ(attrs["tile_shape"], nlohmann::json::array({64, 80}));
  EXPECT_TRUE(attrs["input_size"].is_null());
  EXPECT_EQ(zarr::read_attrs((dir / "features").string())["shape"], nlohmann::json::array({H, W}));
  EXPECT_EQ(zarr::read_attrs((dir / "features/3").string())["original_size"],
            nlohmann::json::array({72, 86}));
  // A second segmenter reuses every tile and decodes identically.
  TiledImageSegmenter again(predictor, {64, 80}, {16, 16}, dir.string());
  again.set_image(rgb.data(), H, W);
  EXPECT_EQ(again.computed_tiles(), 0);
  EXPECT_EQ(again.predict_batch({p}, false).front().masks, pred.masks);
  // Other tiling on the same cache is refused.
  TiledImageSegmenter other(predictor, {32, 80}, {16, 16}, dir.string());
  EXPECT_THROW(other.set_image(rgb.data(), H, W), InputError);
  if (std::system("/usr/bin/python3 -c 'import zarr' >/dev/null 2>&1") == 0) {
    const std::string check = "/usr/bin/python3 -c \"import zarr; f = zarr.open('" + dir.string() +
                              "', 'r'); assert list(f['features'].attrs['halo']) == [16, 16]; "
                              "assert f['features']['3'].shape == (1, 256, 64, 64)\"";
    EXPECT_EQ(std::system(check.c_str()), 0);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medicosam::segment
