#pragma once
// Augmentation of training samples and their preparation as model input
// (resize longest side with SAM's inference resize, pad bottom/right).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "medicosam/segment/prompt_sampling.hpp"
#include "medicosam/train/sample.hpp"

namespace medicosam::train {

struct AugmentOptions {
  bool flips = true;        // horizontal / vertical, each with p = 0.5
  bool rotate90 = true;     // k * 90 degrees, k uniform in 0..3
  double brightness = 0.1;  // additive shift, fraction of 255
  double contrast = 0.2;    // multiplicative factor in [1 - c, 1 + c]
  double gamma = 0.2;       // gamma in [1 - g, 1 + g]
  double scale_min = 0.8;   // zoom: < 1 shrinks (pads), > 1 crops a region
  double scale_max = 1.25;

  static AugmentOptions none();
  static AugmentOptions from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

TrainSample augment(const TrainSample& s, const AugmentOptions& o, segment::Rng& rng);

// A sample on the model's square input grid: the image occupies the top-left
// height x width pixels, the rest is padding (zeros; instances 0).
struct ModelInput {
  int size = 0;                     // model input side
  int height = 0, width = 0;        // resized image size (before padding)
  std::vector<uint8_t> image;       // size x size x 3
  std::vector<uint16_t> instances;  // size x size
  std::vector<uint16_t> classes;    // size x size (0 in the padding), or empty
  std::string name;
};

ModelInput to_model_input(const TrainSample& s, int size);

}  // namespace medicosam::train
