#pragma once
// Reading and writing SAM / MedicoSAM checkpoints without Python.
//
// Formats (detected by magic bytes, never by extension):
//   "pytorch-zip"  torch.save's zip archive (torch >= 1.6), read through a
//                  restricted unpickler that executes nothing and refuses any
//                  global other than tensors and plain containers;
//   "safetensors"  the safetensors format.
// Checkpoint layouts understood (micro_sam `_load_checkpoint` semantics):
//   a plain state dict; a trainer checkpoint {"model_state": ..., "optimizer_state":
//   ..., "iteration": ...} (torch_em / micro_sam); micro_sam's export
//   {"model_state": ..., "decoder_state": ...}; {"state_dict": ...} and
//   {"model": ...} wrappers. A key prefix "module.sam." / "sam." / "module."
//   carried by every SAM key is stripped.
//
// Every error is a medicosam::InputError (missing file), FormatError
// (malformed, truncated or unsafe file) or CheckpointError (keys that clash),
// and its message names the file and the problem.
#include <ATen/core/Tensor.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medicosam/checkpoint/value.hpp"

namespace medicosam::checkpoint {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};
// In file order; every tensor contiguous, on the CPU, in its stored dtype.
using StateDict = std::vector<NamedTensor>;

struct SamCheckpoint {
  std::string path;
  std::string format;           // "pytorch-zip" | "safetensors"
  std::string layout;           // "state_dict", "trainer checkpoint (model_state)", ...
  std::string stripped_prefix;  // "", "sam.", "module.sam.", "module."
  StateDict model_state;        // keys as in SAM: image_encoder.*, prompt_encoder.*, mask_decoder.*
                                // (plus any non-SAM keys of the file, unchanged)
  StateDict decoder_state;      // micro_sam's UNETR "decoder_state", else empty
  nlohmann::json metadata;      // scalar entries of a wrapper dict (iteration, epoch,
                                // best_metric, ...) and safetensors __metadata__
};

// Reads a checkpoint and unwraps it to SAM's state dict.
SamCheckpoint read_sam_checkpoint(const std::string& path);
// read_sam_checkpoint(path).model_state.
StateDict read_state_dict_any(const std::string& path);

// A Python value with real tensors (see value.hpp): what our trainer saves and
// resumes from, e.g. {"model_state": OrderedDict, "optimizer_state": {...},
// "iteration": 12, "epoch": 3, "best_metric": 0.12, "config": "<json>"}.
using PyValue = BasicValue<at::Tensor>;

// The whole object of a torch.save file with tensors materialised (CPU,
// contiguous, one copy per pickled tensor even if the file shared a storage).
// A safetensors file reads as an OrderedDict of its tensors.
PyValue read_pytorch_checkpoint(const std::string& path);

// OrderedDict name -> tensor, as torch's Module.state_dict() returns.
PyValue state_dict_to_value(const StateDict& sd);
// The tensors of a dict with string keys, in order. Throws FormatError naming
// `what` (e.g. "'best.pt' entry 'model_state'") if an entry is not a tensor.
StateDict value_to_state_dict(const PyValue& value, const std::string& what);

struct WriteOptions {
  bool force_zip64 = false;  // ZIP64 records even when not needed (tests)
};

// Writes `root` as torch.save would (zip, pickle protocol 2, version 3,
// 64-byte aligned storages, tensors moved to the CPU), atomically. Python's
// torch.load reads it (tested with torch 1.13; the layout and opcodes are the
// ones torch 2.x writes itself). weights_only=True works too as long as the
// object holds no floats or bytes, which 1.13's weights_only unpickler lacks
// opcodes for. Tensors must have one of the dtypes in dtype.hpp.
// Throws InputError for values that cannot be saved, IoError if writing fails.
void write_pytorch_checkpoint(const std::string& path, const PyValue& root,
                              const WriteOptions& options = {});
// A plain OrderedDict state dict, loadable by segment_anything's builders.
void write_state_dict_pth(const std::string& path, const StateDict& sd);
// safetensors, tensors in the given order; `metadata` becomes __metadata__.
void write_safetensors(const std::string& path, const StateDict& sd,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace medicosam::checkpoint
