#pragma once
// The embedding cache: image embeddings of every slice of a volume (or of one
// 2D image) in micro_sam's zarr layout, so micro_sam and medicosam read each
// other's caches for the same model and data (docs/volumes.md):
//
//   DIR/.zgroup, DIR/.zattrs     root attributes: data_signature (SHA-1 of the
//                                slice stack's raw bytes), tile_shape, halo,
//                                model_type, input_size, original_size, and
//                                "medicosam": {normalization, axis, model_sha1,
//                                model_name, slice_size, ...}
//   DIR/features/.zarray         float32 (or float16) (Z, 1, C, g, g), one
//                                chunk (1, 1, C, g, g) per slice; 2D images:
//                                (1, C, g, g)
//   DIR/features/k.0.0.0.0       slice k (absent = not computed yet)
//
// input_size/original_size are written last, when every slice is present: a
// cache without them is partial and is resumed (micro_sam does the same).
// Opening a cache made for other data, another model or another
// normalisation is refused with an InputError that says which and how.
#include <functional>
#include <string>
#include <vector>

#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/propagation.hpp"
#include "medicosam/segment/volume_slices.hpp"
#include "medicosam/segment/zarr.hpp"

namespace medicosam::segment {

// What a cache is for: the data, the model and the preprocessing.
struct CacheSpec {
  std::string data_signature;
  int num_slices = 1;
  bool volume = true;      // 3D layout (Z, 1, C, g, g); false: one 2D image (1, C, g, g)
  std::string model_type;  // "vit_b", ... (micro_sam's model_type)
  std::string model_name;  // checkpoint file stem
  std::string model_sha1;  // of the checkpoint file ("" = do not check)
  std::vector<int64_t> embedding_shape;  // (1, C, g, g)
  std::string normalization;             // io::to_string(...), e.g. "minmax:slice"
  std::string axis;                      // "axial", ...; "" for 2D images
  predict::Size2 original_size;          // the image the model sees (model grid)
  predict::Size2 input_size;             // after resize-longest-side
};

// The spec for embedding `slices` with `predictor` (hashes the checkpoint and the data).
CacheSpec make_cache_spec(const predict::SamPredictor& predictor, const VolumeSlices& slices);

struct CacheOptions {
  bool fp16 =
      false;  // store float16 (half the size; medicosam reads it, micro_sam reads it as float16)
  std::string compressor;  // "" (none) | "zlib" | "gzip"
};

class EmbeddingCache {
 public:
  // Opens the cache in `dir` for `spec`, creating it when `dir` is absent or
  // an empty folder. An existing cache must match the spec (InputError).
  EmbeddingCache(std::string dir, const CacheSpec& spec, const CacheOptions& options = {});
  // Opens an existing cache for reading without a spec check (inspection, tests).
  static EmbeddingCache open_existing(const std::string& dir);

  const std::string& dir() const { return dir_; }
  int num_slices() const { return num_slices_; }
  bool has(int z) const;
  int count_present() const;
  // All slices present and the cache marked complete.
  bool complete() const;
  bool written_by_micro_sam() const { return foreign_; }
  const std::string& dtype() const { return meta_.dtype; }
  predict::Size2 original_size() const { return original_; }
  predict::Size2 input_size() const { return input_; }
  const nlohmann::json& attributes() const { return attrs_; }

  predict::Embedding load(int z) const;
  void store(int z, const predict::Embedding& e);
  // Writes input_size / original_size (call when every slice is present).
  void mark_complete();

 private:
  EmbeddingCache() = default;
  std::vector<int64_t> chunk_index(int z) const;
  std::string dir_, features_;
  zarr::ArrayMeta meta_;
  nlohmann::json attrs_;
  int num_slices_ = 0;
  bool volume_ = true;
  bool foreign_ = false;
  predict::Size2 original_, input_;
};

struct EmbedStats {
  int computed = 0;
  int reused = 0;
  double seconds = 0;  // encoding time of the computed slices
};

// Computes every slice missing from `cache` (progress bar with ETA on stderr
// when `progress`), writing each as soon as it is done, so an interrupted run
// resumes where it stopped; marks the cache complete at the end.
EmbedStats compute_embeddings(const predict::SamPredictor& predictor, const VolumeSlices& slices,
                              EmbeddingCache& cache, bool progress = true);

// SliceSegmenter that decodes on cached embeddings (one embedding load per
// slice change; propagation visits each slice once).
class CachedSliceSegmenter : public SliceSegmenter {
 public:
  CachedSliceSegmenter(predict::SamPredictor& predictor, const EmbeddingCache& cache);
  int num_slices() const override { return cache_.num_slices(); }
  predict::Size2 slice_size() const override { return cache_.original_size(); }
  int low_res_size() const override { return predictor_.model().low_res_size; }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask_output) override;
  // All requests through the decoder at once (SamPredictor::predict_each).
  std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests,
                                                bool multimask_output) override;

 private:
  predict::SamPredictor& predictor_;
  const EmbeddingCache& cache_;
  int current_ = -1;
};

}  // namespace medicosam::segment

namespace medicosam::segment {

// Opens (or creates) the cache in `dir` for embedding `slices` with
// `predictor`. A complete cache whose images are the slices' own pixel grid
// (e.g. written by micro_sam for anisotropic slices, which it does not
// resample) switches `slices` to that grid.
EmbeddingCache open_cache(const predict::SamPredictor& predictor, VolumeSlices& slices,
                          const std::string& dir, const CacheOptions& options = {});

}  // namespace medicosam::segment
