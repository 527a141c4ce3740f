#include "medicosam/train/batches.hpp"

#include <algorithm>
#include <chrono>

#include "medicosam/core/error.hpp"

namespace medicosam::train {

uint64_t seed_mix(uint64_t a, uint64_t b, uint64_t c) {
  auto sm = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return sm(sm(sm(a) ^ b) ^ c);
}

namespace {

// Draws a sample with at least one object after augmentation.
TrainSample draw_sample(const std::vector<std::shared_ptr<SampleSource>>& sources,
                        const std::vector<double>& weights, const AugmentOptions& aug,
                        segment::Rng& rng) {
  double total = 0;
  for (double w : weights) total += w;
  for (int attempt = 0; attempt < 50; ++attempt) {
    double r = rng.uniform() * total;
    size_t d = 0;
    while (d + 1 < weights.size() && r >= weights[d]) r -= weights[d++];
    const auto& src = *sources[d];
    if (src.size() == 0) continue;
    const auto raw =
        src.get(static_cast<size_t>(rng.uniform_int(static_cast<int64_t>(src.size()))));
    auto s = augment(raw, aug, rng);
    if (s.max_label() > 0) return s;
  }
  throw InputError("training data: 50 samples in a row had no object; check the masks");
}

}  // namespace

Batch make_batch(const std::vector<std::shared_ptr<SampleSource>>& sources,
                 const std::vector<double>& weights, const BatchOptions& o, int64_t iteration) {
  Batch b;
  b.iteration = iteration;
  std::vector<std::vector<uint16_t>> ids(o.images);
  for (int i = 0; i < o.images; ++i) {
    // Objects smaller than a pixel can vanish in the resize: draw again from a
    // fresh stream of the same slot (still deterministic).
    for (uint64_t attempt = 0; ids[i].empty(); ++attempt) {
      if (attempt == 20)
        throw InputError("training data: 20 samples in a row lost every object when resized");
      segment::Rng rng(seed_mix(o.seed, static_cast<uint64_t>(iteration),
                                (static_cast<uint64_t>(o.first_slot + i) << 8) | attempt));
      auto input = to_model_input(draw_sample(sources, weights, o.augment, rng), o.input_size);
      std::vector<int64_t> area(65536, 0);
      for (auto v : input.instances) ++area[v];
      for (int v = 1; v < 65536; ++v)
        if (area[v] > 0) ids[i].push_back(static_cast<uint16_t>(v));
      if (!ids[i].empty()) b.images.push_back(std::move(input));
    }
  }
  // Up to objects_per_image objects per image. (micro_sam truncates all images
  // to the smallest count in the batch; that would make a process's batch
  // depend on the other processes' images, so instead each image's loss is the
  // mean over its own objects, which keeps the per-image loss the same.)
  for (int i = 0; i < o.images; ++i) {
    const size_t n = std::min(static_cast<size_t>(o.objects_per_image), ids[i].size());
    segment::Rng rng(seed_mix(o.seed ^ 0x5bd1e995ull, static_cast<uint64_t>(iteration),
                              static_cast<uint64_t>(o.first_slot + i)));
    auto chosen = ids[i];
    for (size_t k = 0; k < n; ++k)
      std::swap(chosen[k], chosen[k + rng.uniform_int(chosen.size() - k)]);
    chosen.resize(n);
    std::sort(chosen.begin(), chosen.end());
    const auto& img = b.images[i];
    for (size_t k = 0; k < chosen.size(); ++k) {
      const auto id = chosen[k];
      BatchObject obj;
      obj.image = i;
      obj.index_in_image = static_cast<int>(k);
      obj.objects_in_image = static_cast<int>(n);
      obj.mask = segment::BinaryMask(img.size, img.size);
      for (size_t p = 0; p < img.instances.size(); ++p) obj.mask.data[p] = img.instances[p] == id;
      obj.start_point = segment::random_points(obj.mask, 1, 0, 0, rng).at(0);
      obj.box = segment::distort_box(*segment::bounding_box(obj.mask), o.box_distortion, img.height,
                                     img.width, rng);
      b.objects.push_back(std::move(obj));
    }
  }
  return b;
}

BatchPrefetcher::BatchPrefetcher(std::vector<std::shared_ptr<SampleSource>> sources,
                                 std::vector<double> weights, BatchOptions options,
                                 int64_t first_iteration, int depth)
    : sources_(std::move(sources)),
      weights_(std::move(weights)),
      options_(std::move(options)),
      next_iteration_(first_iteration),
      depth_(std::max(1, depth)) {
  thread_ = std::thread([this] { run(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BatchPrefetcher::run() {
  try {
    for (;;) {
      int64_t it;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < depth_; });
        if (stop_) return;
        it = next_iteration_++;
      }
      Batch b = make_batch(sources_, weights_, options_, it);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch BatchPrefetcher::next() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (queue_.empty() && error_) std::rethrow_exception(error_);
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace medicosam::train
