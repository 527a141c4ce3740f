#include "medicosam/server/embedding_store.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/segment/sha1.hpp"

namespace medicosam::server {
namespace fs = std::filesystem;

namespace {
std::string sha1_hex(const std::string& s) {
  segment::Sha1 h;
  h.update(s.data(), s.size());
  return h.hex_digest();
}

std::string entry_key(const std::string& model, const std::string& image_key, io::Axis axis,
                      const io::Normalization& norm) {
  return model + "|" + image_key + "|" + io::axis_name(axis) + "|" + io::to_string(norm);
}

uint64_t embedding_bytes(const predict::Embedding& e) {
  uint64_t n = 4;
  for (auto d : e.shape()) n *= static_cast<uint64_t>(d);
  return n;
}
}  // namespace

// ------------------------------------------------------------ SliceEmbeddings

bool SliceEmbeddings::missing(int z) const {
  {
    std::lock_guard<std::mutex> lock(store_->mutex_);
    if (store_->index_.count({const_cast<SliceEmbeddings*>(this), z})) return false;
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return !cache_->has(z);
}

int SliceEmbeddings::available() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return cache_->count_present();
}

void SliceEmbeddings::prefetch(int z) {
  if (z < 0 || z >= count()) return;
  center_ = z;
  store_->wake(this);
}

predict::Embedding SliceEmbeddings::get(int z) {
  slices_->check_slice(z);
  predict::Embedding e;
  if (store_->lookup(this, z, e)) return e;
  auto from_disk = [&] {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_->has(z)) e = cache_->load(z);
  };
  from_disk();
  if (e.empty()) {
    std::lock_guard<std::mutex> encode(model_->encode_mutex);
    if (store_->lookup(this, z, e)) return e;  // encoded by another request meanwhile
    from_disk();
    if (e.empty()) {
      const auto rgb = slices_->model_image(z);
      e = model_->predictor->encode(rgb.data.data(), rgb.height, rgb.width, 3);
      std::lock_guard<std::mutex> lock(cache_mutex_);
      cache_->store(z, e);
      if (cache_->count_present() == count()) cache_->mark_complete();
    }
  }
  store_->insert(this, z, e);
  return e;
}

// ------------------------------------------------------- StoredSliceSegmenter

StoredSliceSegmenter::StoredSliceSegmenter(std::shared_ptr<SliceEmbeddings> embeddings)
    : embeddings_(std::move(embeddings)) {}

int StoredSliceSegmenter::low_res_size() const {
  return embeddings_->model().predictor->model().low_res_size;
}

predict::Prediction StoredSliceSegmenter::predict(int z, const predict::Prompt& prompt, bool multimask) {
  embeddings_->prefetch(z);
  const auto e = embeddings_->get(z);
  std::lock_guard<std::mutex> lock(embeddings_->model().decode_mutex);
  return embeddings_->model().predictor->predict_batch(e, {prompt}, multimask).front();
}

std::vector<predict::Prediction> StoredSliceSegmenter::predict_many(const std::vector<Request>& requests,
                                                                    bool multimask) {
  std::vector<predict::Embedding> embeddings;
  std::vector<predict::Prompt> prompts;
  for (const auto& r : requests) {
    embeddings_->prefetch(r.z);
    embeddings.push_back(embeddings_->get(r.z));
    prompts.push_back(r.prompt);
  }
  std::lock_guard<std::mutex> lock(embeddings_->model().decode_mutex);
  return embeddings_->model().predictor->predict_each(embeddings, prompts, multimask);
}

// ------------------------------------------------------------- EmbeddingStore

EmbeddingStore::EmbeddingStore(uint64_t budget_bytes, std::string cache_root)
    : budget_(budget_bytes), cache_root_(std::move(cache_root)) {
  thread_ = std::thread([this] { worker(); });
}

EmbeddingStore::~EmbeddingStore() { stop(); }

void EmbeddingStore::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<SliceEmbeddings> EmbeddingStore::open(const std::shared_ptr<Model>& model,
                                                      const std::string& image_key,
                                                      std::shared_ptr<segment::VolumeSlices> slices) {
  const std::string key = entry_key(model->name, image_key, slices->axis(), slices->normalization());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
  }
  auto e = std::shared_ptr<SliceEmbeddings>(new SliceEmbeddings());
  e->store_ = this;
  e->model_ = model;
  e->slices_ = slices;
  e->key_ = key;
  e->center_ = slices->count() / 2;
  // One cache folder per key (readable names, a hash for uniqueness).
  std::string safe;
  for (char c : image_key) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  const auto dir = fs::path(cache_root_) / model->name /
                   (safe.substr(0, 80) + "-" + sha1_hex(key).substr(0, 12) + ".zarr");
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  try {
    e->cache_ = std::make_unique<segment::EmbeddingCache>(
        segment::open_cache(*model->predictor, *slices, dir.string()));
  } catch (const InputError&) {
    // Cached for other data (the image was replaced) or damaged: start over.
    fs::remove_all(dir, ec);
    e->cache_ = std::make_unique<segment::EmbeddingCache>(
        segment::open_cache(*model->predictor, *slices, dir.string()));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, inserted] = entries_.emplace(key, e);
    if (!inserted) return it->second;  // opened concurrently
  }
  wake(e.get());
  return e;
}

std::shared_ptr<SliceEmbeddings> EmbeddingStore::find(const Model& model, const std::string& image_key,
                                                      io::Axis axis, const io::Normalization& norm) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = entries_.find(entry_key(model.name, image_key, axis, norm));
  return it == entries_.end() ? nullptr : it->second;
}

void EmbeddingStore::forget(const std::string& image_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->first.find("|" + image_key + "|") == std::string::npos) {
      ++it;
      continue;
    }
    SliceEmbeddings* p = it->second.get();
    for (auto l = lru_.begin(); l != lru_.end();) {
      if (l->first.owner == p) {
        bytes_ -= embedding_bytes(l->second);
        index_.erase({p, l->first.z});
        l = lru_.erase(l);
      } else {
        ++l;
      }
    }
    it = entries_.erase(it);
  }
}

uint64_t EmbeddingStore::bytes_in_memory() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

bool EmbeddingStore::lookup(SliceEmbeddings* e, int z, predict::Embedding& out) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = index_.find({e, z});
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  out = it->second->second;
  return true;
}

void EmbeddingStore::insert(SliceEmbeddings* e, int z, const predict::Embedding& emb) {
  const uint64_t n = embedding_bytes(emb);
  std::lock_guard<std::mutex> lock(mutex_);
  if (index_.count({e, z}) || n > budget_) return;
  while (bytes_ + n > budget_ && !lru_.empty()) {
    const auto& last = lru_.back();
    bytes_ -= embedding_bytes(last.second);
    index_.erase({last.first.owner, last.first.z});
    lru_.pop_back();
  }
  lru_.push_front({Slot{e, z}, emb});
  index_[{e, z}] = lru_.begin();
  bytes_ += n;
}

void EmbeddingStore::wake(SliceEmbeddings* e) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(e->key_);
    if (it == entries_.end()) return;
    background_ = it->second;
  }
  cv_.notify_all();
}

void EmbeddingStore::worker() {
  for (;;) {
    std::shared_ptr<SliceEmbeddings> e;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !background_.expired(); });
      if (stop_) return;
      e = background_.lock();
    }
    if (!e) continue;
    const int c = e->center_, n = e->count();
    int pick = -1;
    for (int d = 0; d < n && pick < 0; ++d) {
      for (int z : {c - d, c + d}) {
        if (z >= 0 && z < n && e->missing(z)) {
          pick = z;
          break;
        }
      }
    }
    if (pick < 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (background_.lock() == e) background_.reset();
      continue;
    }
    try {
      e->get(pick);
    } catch (const std::exception& ex) {
      spdlog::warn("background embedding of slice {} failed: {}", pick, ex.what());
      std::lock_guard<std::mutex> lock(mutex_);
      if (background_.lock() == e) background_.reset();
    }
  }
}

}  // namespace medicosam::server
