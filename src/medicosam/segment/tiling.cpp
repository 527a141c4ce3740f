#include "medicosam/segment/tiling.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/segment/sha1.hpp"
#include "medicosam/segment/zarr.hpp"

namespace medicosam::segment {
namespace fs = std::filesystem;
using nlohmann::json;

Tiling::Tiling(predict::Size2 shape, predict::Size2 tile, predict::Size2 halo)
    : shape_(shape), tile_(tile), halo_(halo) {
  if (shape.height <= 0 || shape.width <= 0) throw InputError("tiling an empty image");
  if (tile.height <= 0 || tile.width <= 0) throw InputError("tile shape must be positive");
  if (halo.height < 0 || halo.width < 0) throw InputError("halo must not be negative");
  rows_ = (shape.height + tile.height - 1) / tile.height;
  cols_ = (shape.width + tile.width - 1) / tile.width;
}

Block Tiling::inner(int id) const {
  if (id < 0 || id >= count()) throw InputError("tile " + std::to_string(id) + " does not exist");
  const int r = id / cols_, c = id % cols_;
  Block b;
  b.begin = {r * tile_.height, c * tile_.width};
  b.end = {std::min(b.begin[0] + tile_.height, shape_.height),
           std::min(b.begin[1] + tile_.width, shape_.width)};
  return b;
}

Block Tiling::outer(int id) const {
  Block b = inner(id);
  b.begin = {std::max(b.begin[0] - halo_.height, 0), std::max(b.begin[1] - halo_.width, 0)};
  b.end = {std::min(b.end[0] + halo_.height, shape_.height),
           std::min(b.end[1] + halo_.width, shape_.width)};
  return b;
}

int Tiling::tile_at(int y, int x) const {
  y = std::clamp(y, 0, shape_.height - 1);
  x = std::clamp(x, 0, shape_.width - 1);
  return (y / tile_.height) * cols_ + x / tile_.width;
}

int route_prompt(const Tiling& t, const predict::Prompt& p, predict::Prompt* out, int* dropped) {
  if (p.mask_input) throw InputError("mask inputs cannot be routed to tiles");
  if (p.empty()) throw InputError("no points or box given");
  auto round_half_even = [](double v) { return static_cast<int>(std::nearbyint(v)); };
  int id_points = -1, id_box = -1;
  if (!p.points.empty()) {
    double sx = 0, sy = 0;
    for (const auto& pt : p.points) sx += pt.x, sy += pt.y;
    id_points =
        t.tile_at(round_half_even(sy / p.points.size()), round_half_even(sx / p.points.size()));
  }
  if (p.box) {
    id_box = t.tile_at(round_half_even((p.box->y0 + p.box->y1) / 2),
                       round_half_even((p.box->x0 + p.box->x1) / 2));
  }
  if (id_points >= 0 && id_box >= 0 && id_points != id_box) {
    throw InputError("the box (tile " + std::to_string(id_box) + ") and the points (tile " +
                     std::to_string(id_points) + ") fall into different tiles");
  }
  const int id = id_points >= 0 ? id_points : id_box;
  const Block o = t.outer(id);
  predict::Prompt q;
  int lost = 0;
  for (const auto& pt : p.points) {
    const double x = pt.x - o.begin[1], y = pt.y - o.begin[0];
    if (x < 0 || y < 0 || x >= o.width() || y >= o.height()) {
      ++lost;
      continue;
    }
    q.points.push_back({x, y, pt.label});
  }
  if (p.box) {
    q.box =
        predict::Box{std::max(p.box->x0 - o.begin[1], 0.0), std::max(p.box->y0 - o.begin[0], 0.0),
                     std::min(p.box->x1 - o.begin[1], double(o.width())),
                     std::min(p.box->y1 - o.begin[0], double(o.height()))};
  }
  if (q.empty()) throw InputError("no prompt is left inside tile " + std::to_string(id));
  if (dropped) *dropped = lost;
  *out = std::move(q);
  return id;
}

TiledImageSegmenter::TiledImageSegmenter(std::shared_ptr<predict::SamPredictor> predictor,
                                         predict::Size2 tile_shape, predict::Size2 halo,
                                         std::string cache_dir)
    : predictor_(std::move(predictor)),
      tile_shape_(tile_shape),
      halo_(halo),
      cache_dir_(std::move(cache_dir)) {}

namespace {
json size_json(predict::Size2 s) {
  return json::array({s.height, s.width});
}
}  // namespace

void TiledImageSegmenter::set_image(const uint8_t* rgb, int H, int W) {
  tiling_ = std::make_unique<Tiling>(predict::Size2{H, W}, tile_shape_, halo_);
  tiles_.assign(tiling_->count(), predict::Embedding());
  computed_ = 0;
  std::string signature = signature_;
  if (signature.empty()) {
    Sha1 h;
    h.update(rgb, size_t(H) * W * 3);
    signature = h.hex_digest();
  }
  const auto& m = predictor_->model();
  const std::vector<int64_t> shape{1, m.embedding_channels, m.embedding_size, m.embedding_size};
  std::string features;
  json root;
  if (!cache_dir_.empty()) {
    features = (fs::path(cache_dir_) / "features").string();
    const std::string where = "tiled embedding cache '" + cache_dir_ + "'";
    if (zarr::is_group(cache_dir_)) {
      root = zarr::read_attrs(cache_dir_);
      auto differs = [&](const char* key, const json& want) {
        return root.contains(key) && root[key] != want;
      };
      if (differs("data_signature", signature))
        throw InputError(where + " was computed for other data");
      if (differs("model_type", m.architecture))
        throw InputError(where + " was computed with another model type");
      if (differs("tile_shape", size_json(tile_shape_)) || differs("halo", size_json(halo_))) {
        throw InputError(where + " has tile shape " + root.value("tile_shape", json()).dump() +
                         " / halo " + root.value("halo", json()).dump() + ", requested " +
                         size_json(tile_shape_).dump() + " / " + size_json(halo_).dump());
      }
    } else if (fs::exists(cache_dir_) && !fs::is_empty(cache_dir_)) {
      throw InputError("'" + cache_dir_ +
                       "' is not an embedding cache; choose a new or empty folder");
    }
    zarr::create_group(cache_dir_);
    zarr::create_group(features);
    zarr::write_attrs(features, {{"shape", size_json({H, W})},
                                 {"tile_shape", size_json(tile_shape_)},
                                 {"halo", size_json(halo_)}});
  }
  Progress bar(tiling_->count(), "embedding " + std::to_string(tiling_->count()) + " tiles", false);
  for (int id = 0; id < tiling_->count(); ++id) {
    const Block o = tiling_->outer(id);
    const predict::Size2 orig{o.height(), o.width()};
    const auto input = predict::preprocess_shape(orig.height, orig.width, m.img_size);
    const std::string ds =
        features.empty() ? "" : (fs::path(features) / std::to_string(id)).string();
    if (!ds.empty() && zarr::is_array(ds)) {
      const auto meta = zarr::read_array_meta(ds);
      const auto bytes = zarr::read_chunk(ds, meta, std::vector<int64_t>(meta.shape.size(), 0));
      if (bytes && meta.shape == shape) {
        NpyArray a;
        a.type = meta.dtype == "<f2" ? NpyType::kFloat16 : NpyType::kFloat32;
        a.shape = shape;
        a.data = *bytes;
        tiles_[id] = predict::Embedding::from_npy(a, orig, input);
        continue;
      }
    }
    std::vector<uint8_t> crop(size_t(orig.height) * orig.width * 3);
    for (int y = 0; y < orig.height; ++y) {
      std::copy_n(rgb + (size_t(y + o.begin[0]) * W + o.begin[1]) * 3, size_t(orig.width) * 3,
                  crop.data() + size_t(y) * orig.width * 3);
    }
    tiles_[id] = predictor_->encode(crop.data(), orig.height, orig.width, 3);
    ++computed_;
    if (!ds.empty()) {
      zarr::ArrayMeta meta;
      meta.shape = shape;
      meta.chunks = shape;
      zarr::create_array(ds, meta);
      zarr::write_chunk(ds, meta, {0, 0, 0, 0}, tiles_[id].to_npy().data);
      zarr::write_attrs(ds, {{"original_size", size_json(orig)}, {"input_size", size_json(input)}});
    }
    bar.advance();
  }
  if (!cache_dir_.empty()) {  // the signature last: a cache without it is partial
    root["data_signature"] = signature;
    root["tile_shape"] = size_json(tile_shape_);
    root["halo"] = size_json(halo_);
    root["model_type"] = m.architecture;
    root["input_size"] = nullptr;
    root["original_size"] = nullptr;
    root["medicosam"] = {{"model_name", fs::path(m.path).stem().string()},
                         {"layout", "micro_sam zarr v2, tiled"}};
    zarr::write_attrs(cache_dir_, root);
  }
}

std::vector<predict::Prediction> TiledImageSegmenter::predict_batch(
    const std::vector<predict::Prompt>& prompts, bool multimask_output) {
  if (!tiling_) throw Error("no image set: call set_image before predict_batch");
  const auto shape = tiling_->shape();
  std::vector<predict::Prediction> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    predict::validate_prompt(prompts[i], shape, 0, prompts.size() > 1 ? i + 1 : 0);
    predict::Prompt local;
    int lost = 0;
    const int id = route_prompt(*tiling_, prompts[i], &local, &lost);
    dropped_ += lost;
    predictor_->set_embedding(tiles_[id]);
    auto p = predictor_->predict(local, multimask_output);
    const Block o = tiling_->outer(id);
    predict::Prediction full = p;
    full.height = shape.height;
    full.width = shape.width;
    full.masks.assign(size_t(p.num_masks) * shape.height * shape.width, 0);
    for (int k = 0; k < p.num_masks; ++k)
      for (int y = 0; y < o.height(); ++y)
        std::copy_n(p.masks.data() + (size_t(k) * o.height() + y) * o.width(), o.width(),
                    full.masks.data() + (size_t(k) * shape.height + y + o.begin[0]) * shape.width +
                        o.begin[1]);
    full.logits.clear();
    out.push_back(std::move(full));
  }
  return out;
}

}  // namespace medicosam::segment
