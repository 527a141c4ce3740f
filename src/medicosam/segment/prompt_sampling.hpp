#pragma once
// Prompts derived from masks, as micro_sam's training and evaluation do it:
// tight boxes, object centres, random points, box distortion, and the
// iterative corrective clicks drawn from the false-negative / false-positive
// regions of a prediction (micro_sam IterativePromptGenerator semantics).
// Seeded and deterministic; torch-free (used by train/ and eval/).
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "medicosam/predict/predictor.hpp"

namespace medicosam::segment {

// A binary mask, row-major, 0 = outside.
struct BinaryMask {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> data;

  BinaryMask() = default;
  BinaryMask(int h, int w) : height(h), width(w), data(static_cast<size_t>(h) * w, 0) {}
  BinaryMask(int h, int w, std::vector<uint8_t> d) : height(h), width(w), data(std::move(d)) {}
  uint8_t at(int y, int x) const { return data[static_cast<size_t>(y) * width + x]; }
  int64_t area() const;
  bool empty() const { return area() == 0; }
};

// Deterministic random numbers with a stable algorithm (std::mt19937_64 is
// specified exactly; the distributions are ours so results do not depend on
// the standard library).
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  // Uniform integer in [0, n).
  int64_t uniform_int(int64_t n);
  // Uniform double in [0, 1).
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();
  bool bernoulli(double p) { return uniform() < p; }

 private:
  std::mt19937_64 engine_;
};

// Tight box [x0, y0, x1, y1) with exclusive max (regionprops convention); none for an empty mask.
std::optional<predict::Box> bounding_box(const BinaryMask& m);

// The point inside the object farthest from its boundary (maximum of the
// Euclidean distance transform), as micro_sam's evaluation "center"; x, y in pixels.
predict::Point object_center(const BinaryMask& m);

// Moves each side of `box` outward by U(0, factor) * side length (micro_sam's
// box distortion), clipped to the image.
predict::Box distort_box(const predict::Box& box, double factor, int height, int width, Rng& rng);

// Uniformly random object pixels (positives, label 1) and background pixels
// near the object (negatives, label 0): the bbox grown by `dilation` minus the
// object dilated `dilation` times, falling back to any background pixel.
std::vector<predict::Point> random_points(const BinaryMask& m, int n_positive, int n_negative, int dilation, Rng& rng);

// One corrective click pair for a prediction of `gt`: a positive point from the
// false negatives (else from the true positives) and a negative point from the
// false positives (else from the ring of the GT box grown by 3 px minus the
// object, else from any background pixel). Returns {positive, negative}.
std::vector<predict::Point> corrective_points(const BinaryMask& gt, const BinaryMask& prediction, Rng& rng);

// Connected components (8-connectivity) of `labels == id` for every id > 0,
// keeping those of at least `min_size` pixels: the objects of the evaluation protocol.
std::vector<BinaryMask> connected_components(const BinaryMask& m, int min_size = 1);

// Dice 2|A∩B| / (|A|+|B|) with eps 1e-7 (MedicoSAM's); 1 when both are empty.
double dice(const BinaryMask& a, const BinaryMask& b);
double iou(const BinaryMask& a, const BinaryMask& b);

}  // namespace medicosam::segment
