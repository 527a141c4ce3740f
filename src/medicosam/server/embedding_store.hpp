#pragma once
// Image embeddings shared by every request and session of the server: one
// SliceEmbeddings per (model, image, axis, normalisation), keyed like the
// zarr cache (segment/embedding_cache.hpp), so a slice is encoded once and
// then reused by every click, every session and every restart of the server.
//
//  - memory: embeddings in RAM are bounded by a byte budget; the least
//    recently used ones are dropped (they stay in the on-disk cache);
//  - disk: each entry writes every slice it computes to its zarr cache as
//    soon as it is done (resumable, shared with `medicosam embed/propagate`);
//  - background: after an image is opened, a worker thread encodes its
//    missing slices, nearest to the slice the user is on first (prefetch()
//    moves that centre), so later clicks do not wait.
//
// Torch-free header.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/volume_slices.hpp"

namespace medicosam::server {

// A loaded model the server offers.
struct Model {
  std::string name;
  std::string path;
  std::shared_ptr<predict::SamPredictor> predictor;
  std::mutex encode_mutex;  // one encoder run at a time per model (2-core machines)
  // One decoder run at a time per model: concurrent decodes would only share
  // the same cores (each already uses every torch thread) and all finish late;
  // queued, each click finishes as early as it can.
  std::mutex decode_mutex;
};

class EmbeddingStore;

class SliceEmbeddings {
 public:
  const segment::VolumeSlices& slices() const { return *slices_; }
  std::shared_ptr<const segment::VolumeSlices> slices_ptr() const { return slices_; }
  Model& model() const { return *model_; }
  // The embedding of slice z: from memory, else the disk cache, else encoded now.
  predict::Embedding get(int z);
  // Moves the background worker's centre to slice z.
  void prefetch(int z);
  int count() const { return slices_->count(); }
  int available() const;  // slices in memory or on disk

 private:
  friend class EmbeddingStore;
  SliceEmbeddings() = default;
  bool missing(int z) const;
  EmbeddingStore* store_ = nullptr;
  std::shared_ptr<Model> model_;
  std::shared_ptr<segment::VolumeSlices> slices_;
  std::unique_ptr<segment::EmbeddingCache> cache_;
  mutable std::mutex cache_mutex_;  // the zarr cache is not thread-safe
  std::atomic<int> center_{0};
  std::string key_;
};

// SliceSegmenter on a SliceEmbeddings (decodes with the model's predictor on
// the slice's embedding, without touching the predictor's current image).
class StoredSliceSegmenter : public segment::SliceSegmenter {
 public:
  explicit StoredSliceSegmenter(std::shared_ptr<SliceEmbeddings> embeddings);
  int num_slices() const override { return embeddings_->count(); }
  predict::Size2 slice_size() const override { return embeddings_->slices().model_size(); }
  int low_res_size() const override;
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask_output) override;
  // All requests through the decoder at once (SamPredictor::predict_each).
  std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests,
                                                bool multimask_output) override;

 private:
  std::shared_ptr<SliceEmbeddings> embeddings_;
};

class EmbeddingStore {
 public:
  // budget_bytes: embeddings held in RAM; cache_root: where the zarr caches go.
  EmbeddingStore(uint64_t budget_bytes, std::string cache_root);
  ~EmbeddingStore();

  // The embeddings of `slices` (already loaded from `image_key`'s file) for
  // `model`; the same object for the same key. Starts background encoding.
  std::shared_ptr<SliceEmbeddings> open(const std::shared_ptr<Model>& model, const std::string& image_key,
                                        std::shared_ptr<segment::VolumeSlices> slices);
  // The open entry for these, or null.
  std::shared_ptr<SliceEmbeddings> find(const Model& model, const std::string& image_key, io::Axis axis,
                                        const io::Normalization& normalization) const;
  // Forgets the entries of an image (its file changed or was deleted).
  void forget(const std::string& image_key);

  uint64_t bytes_in_memory() const;
  uint64_t budget() const { return budget_; }
  void stop();

 private:
  friend class SliceEmbeddings;
  struct Slot {
    SliceEmbeddings* owner;
    int z;
  };
  bool lookup(SliceEmbeddings* e, int z, predict::Embedding& out);
  void insert(SliceEmbeddings* e, int z, const predict::Embedding& emb);
  void wake(SliceEmbeddings* e);
  void worker();

  uint64_t budget_;
  std::string cache_root_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<SliceEmbeddings>> entries_;
  // LRU: most recent at the front.
  std::list<std::pair<Slot, predict::Embedding>> lru_;
  std::map<std::pair<SliceEmbeddings*, int>, std::list<std::pair<Slot, predict::Embedding>>::iterator> index_;
  uint64_t bytes_ = 0;
  std::weak_ptr<SliceEmbeddings> background_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace medicosam::server
