#pragma once
// Writing a SAM's weights, the one writer beside load_sam (loader.hpp): the
// plain SAM state dict (keys as segment_anything's Sam module names them) as
// .pth, which `sam_model_registry[...](checkpoint=...)` loads, or as
// .safetensors with the architecture in its metadata. `medicosam export` and
// the trainer's exports both go through it.
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "medicosam/model/sam.hpp"

namespace medicosam::model {

enum class WeightsFormat { kPth, kSafetensors };

struct SaveOptions {
  // Default: from the extension (.safetensors, else .pth).
  std::optional<WeightsFormat> format;
  // float32, float16 or bfloat16 (InputError otherwise).
  torch::ScalarType dtype = torch::kFloat32;
  // Extra safetensors metadata ("medicosam.*" keys); the architecture and the
  // decoder's head count are always written.
  std::map<std::string, std::string> metadata;
  // A UNETR semantic head to write beside SAM (unetr_state_dict), as micro_sam
  // does: .pth {"model_state": SAM, "decoder_state": head}; .safetensors the
  // head's keys prefixed "decoder_state." after SAM's. Empty: SAM only.
  std::vector<std::pair<std::string, torch::Tensor>> decoder_state;
};

WeightsFormat weights_format_for(const std::string& path);

// Writes atomically; IoError if the file cannot be written.
void save_sam(const std::string& path, SamImpl& sam, const SaveOptions& options = {});

// The __metadata__ of a .safetensors file.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// Copies the .safetensors file `in` to `out` (may be `in`: replaced in place)
// with its __metadata__ changed: keys in `set` set, keys in `remove` dropped.
// The tensors (names, order, dtypes, shapes, bytes) are copied unchanged.
// Written to a temporary file and renamed: the original survives any error.
// InputError if `in` is not safetensors.
void rewrite_safetensors_metadata(const std::string& in, const std::string& out,
                                  const std::map<std::string, std::string>& set,
                                  const std::vector<std::string>& remove = {});

}  // namespace medicosam::model
