#pragma once
// Deterministic training batches, built in a background thread: batch k of a
// run with seed s always holds the same samples, augmentations, objects and
// start prompts, whatever the number of processes (rank r builds its slice of
// the global batch) and whether the run was resumed.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/prompt_sampling.hpp"
#include "medicosam/train/augment.hpp"
#include "medicosam/train/datasets.hpp"

namespace medicosam::train {

struct BatchOptions {
  int input_size = 1024;  // model input side
  int images = 4;         // images in this process's part of the batch
  int first_slot = 0;     // index of this process's first image in the global batch
  int objects_per_image = 5;
  double box_distortion = 0.025;
  uint64_t seed = 0;
  AugmentOptions augment;
};

// One object of a batch, with its start prompts (model input frame).
struct BatchObject {
  int image = 0;               // index into Batch::images
  int index_in_image = 0;      // k-th object of its image
  int objects_in_image = 1;    // how many objects its image contributes
  segment::BinaryMask mask;    // input_size x input_size, 0 in the padding
  predict::Point start_point;  // a random object pixel (label 1)
  predict::Box box;            // tight box, distorted
};

struct Batch {
  int64_t iteration = 0;
  std::vector<ModelInput> images;
  std::vector<BatchObject> objects;  // up to objects_per_image per image, grouped by image
};

// Builds batch `iteration` for this process (no thread).
Batch make_batch(const std::vector<std::shared_ptr<SampleSource>>& sources,
                 const std::vector<double>& weights, const BatchOptions& options,
                 int64_t iteration);

// Prefetches batches first_iteration, first_iteration + 1, ... in a thread.
class BatchPrefetcher {
 public:
  BatchPrefetcher(std::vector<std::shared_ptr<SampleSource>> sources, std::vector<double> weights,
                  BatchOptions options, int64_t first_iteration, int depth = 4);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // Blocks until the next batch is ready; rethrows errors of the worker.
  Batch next();
  // Seconds the consumer spent waiting in next() (data starvation).
  double wait_seconds() const { return wait_seconds_; }

 private:
  void run();
  std::vector<std::shared_ptr<SampleSource>> sources_;
  std::vector<double> weights_;
  BatchOptions options_;
  int64_t next_iteration_;
  int depth_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::thread thread_;
  double wait_seconds_ = 0;
};

// splitmix64 combination of values, for per-(seed, iteration, slot) RNG streams.
uint64_t seed_mix(uint64_t a, uint64_t b, uint64_t c = 0);

}  // namespace medicosam::train
