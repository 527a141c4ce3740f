#pragma once
// One training sample: an 8-bit RGB image and its instance label map
// (0 = background, 1..n = objects), on the same pixel grid, and optionally its
// semantic class map (0 = background, 1..C-1 = classes) for semantic training.
#include <cstdint>
#include <string>
#include <vector>

namespace medicosam::train {

struct TrainSample {
  int height = 0, width = 0;
  std::vector<uint8_t> image;       // height x width x 3
  std::vector<uint16_t> instances;  // height x width
  std::vector<uint16_t> classes;    // height x width, or empty (no class map)
  std::string name;                 // for logs and errors

  uint16_t max_label() const;
};

}  // namespace medicosam::train
