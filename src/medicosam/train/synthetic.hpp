#pragma once
// Deterministic synthetic images for promptable-segmentation pretraining:
// objects of varied shape (ellipses, blobs, polygons, rings, thin curves),
// texture, contrast (strong to faint), noise (Gaussian, speckle), blur and
// colour, on structured backgrounds, with exact instance labels. Sample i of
// seed s is always the same image.
#include <cstdint>

#include "medicosam/train/sample.hpp"

namespace medicosam::train {

struct SyntheticOptions {
  int min_side = 192;  // image sides are drawn in [min_side, max_side]
  int max_side = 320;
  int min_objects = 1;
  int max_objects = 6;
  int min_object_area = 40;  // visible pixels; smaller objects are dropped
};

TrainSample make_synthetic_sample(uint64_t seed, uint64_t index,
                                  const SyntheticOptions& options = {});

}  // namespace medicosam::train
