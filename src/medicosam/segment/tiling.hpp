#pragma once
// Tiled prediction for large 2D images (micro_sam's tile_shape + halo): the
// image is cut into a row-major grid of tiles, each embedded from its tile
// grown by the halo (clipped to the image); a prompt is routed to the tile
// that holds its centre (mean of the points, else the box centre), moved into
// that tile's coordinates (points outside it dropped, the box clipped), decoded
// there, and the mask pasted back at the tile's outer block.
// Embeddings can be kept in memory or in a cache folder in micro_sam's tiled
// zarr layout (group "features" with one (1, C, g, g) array per tile id).
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::segment {

struct Block {
  std::array<int, 2> begin{}, end{};  // (y, x), end exclusive
  int height() const { return end[0] - begin[0]; }
  int width() const { return end[1] - begin[1]; }
};

// nifty's Blocking([0, 0], shape, tile_shape) with getBlockWithHalo.
class Tiling {
 public:
  Tiling(predict::Size2 shape, predict::Size2 tile_shape, predict::Size2 halo);
  int count() const { return rows_ * cols_; }
  Block inner(int id) const;
  Block outer(int id) const;
  // The tile whose inner block holds pixel (y, x) (clamped to the image).
  int tile_at(int y, int x) const;
  predict::Size2 shape() const { return shape_; }
  predict::Size2 tile_shape() const { return tile_; }
  predict::Size2 halo() const { return halo_; }

 private:
  predict::Size2 shape_, tile_, halo_;
  int rows_ = 0, cols_ = 0;
};

// Moves `p` into tile coordinates; returns the tile id. Points outside the
// tile's outer block are dropped (counted in *dropped); box and points must
// route to the same tile (InputError otherwise); mask inputs are refused.
int route_prompt(const Tiling& tiling, const predict::Prompt& p, predict::Prompt* in_tile,
                 int* dropped = nullptr);

// ImageSegmenter over tiles: set_image embeds every tile (or loads them from
// `cache_dir` when it holds this image's tiles), predict_batch routes prompts.
class TiledImageSegmenter : public ImageSegmenter {
 public:
  TiledImageSegmenter(std::shared_ptr<predict::SamPredictor> predictor, predict::Size2 tile_shape,
                      predict::Size2 halo, std::string cache_dir = "");
  void set_image(const uint8_t* rgb, int height, int width) override;
  std::vector<predict::Prediction> predict_batch(const std::vector<predict::Prompt>& prompts,
                                                 bool multimask_output) override;
  int low_res_size() const override { return 0; }  // mask inputs are tile-relative: not accepted
  std::string name() const override { return "tiled"; }
  const Tiling& tiling() const { return *tiling_; }
  // The data signature recorded in (and required from) the cache; default:
  // SHA-1 of the RGB pixels given to set_image.
  void set_data_signature(const std::string& s) { signature_ = s; }
  int computed_tiles() const { return computed_; }
  int dropped_points() const { return dropped_; }

 private:
  std::shared_ptr<predict::SamPredictor> predictor_;
  predict::Size2 tile_shape_, halo_;
  std::string cache_dir_, signature_;
  std::unique_ptr<Tiling> tiling_;
  std::vector<predict::Embedding> tiles_;
  int computed_ = 0, dropped_ = 0;
};

}  // namespace medicosam::segment
