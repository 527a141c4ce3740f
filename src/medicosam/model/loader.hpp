#pragma once
// Building a SAM from a checkpoint file: format detection and unwrapping are
// done by medicosam::checkpoint, the architecture is derived from the tensor
// shapes, and every key is matched by name.
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "medicosam/model/sam.hpp"

namespace medicosam::model {

struct LoadedSam {
  Sam sam{nullptr};
  std::string path;
  std::string format;           // "pytorch-zip" | "safetensors"
  std::string layout;           // how the state dict was wrapped
  std::string stripped_prefix;  // "sam.", "module.sam.", ...
  std::string stored_dtype;     // dtype of the weights in the file (e.g. "float32", "float16")
  int64_t num_parameters = 0;
  nlohmann::json metadata;
  // The UNETR semantic head's tensors when the file carries one (micro_sam's
  // "decoder_state", or safetensors keys "decoder_state.*", prefix removed);
  // empty otherwise. Built by unetr_from_tensors (unetr_module.hpp).
  std::vector<std::pair<std::string, torch::Tensor>> decoder_state;
};

// Reads `path`, derives the configuration, builds the model in eval mode on
// `device` with float32 weights. Throws CheckpointError listing every missing,
// unexpected or mis-shaped key at once.
LoadedSam load_sam(const std::string& path, const torch::Device& device = torch::kCPU);

// "[a,b,c]": a tensor shape in error messages.
std::string shape_str(c10::IntArrayRef s);

// Copies `tensors` into the module parameters/buffers `expected` (a state dict
// of the module, names -> its own tensors), strictly: CheckpointError starting
// with `what` and listing every missing, unexpected and mis-shaped key otherwise.
void copy_state_strict(const std::vector<std::pair<std::string, torch::Tensor>>& expected,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::string& what);
// Copies `tensors` into `sam` by name. `source` names the file in errors.
void load_state_dict(SamImpl& sam, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::string& source);

// Derives the configuration from named tensors (see derive_config).
SamConfig config_from_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::string& source, const std::map<std::string, std::string>& hints = {});

// Same check as load_sam, reduced to metadata, for `medicosam info`; with a
// semantic head, "semantic_head" describes it (or says why it does not load).
nlohmann::json describe_checkpoint(const std::string& path);

}  // namespace medicosam::model
