#pragma once
// Training and evaluation data: 2D image folders with instance or binary masks
// (driven by split files like ../shared/data/*/split.json), slices of 3D
// volumes with label maps, and synthetic images. Samples load lazily (a
// background thread calls get()), so memory stays flat whatever the data size.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medicosam/train/sample.hpp"
#include "medicosam/train/synthetic.hpp"

namespace medicosam::train {

// One source of samples. get(i) must be thread-safe and deterministic.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual size_t size() const = 0;
  virtual TrainSample get(size_t i) const = 0;
  virtual std::string name() const = 0;
};

// Description of a dataset in a training / evaluation config (JSON):
//   {"type": "folder", "path": DIR, "split": "train"}      images/, masks/ or instances/,
//   split.json
//   {"type": "volumes", "pairs": [{"image": V, "labels": L}, ...], "axis": "axial"}
//   {"type": "volumes", "path": DIR, "split": "train"}     images/ + labels/ (same stems),
//   split.json
//   {"type": "synthetic", "count": N, "seed": S}
// Optional for all: "normalize" (io spec, default "percentile" = MedicoSAM's
// p1..p99), "weight" (sampling weight, default 1), "limit" (first N items),
// "classes" (the semantic class map of every sample, for semantic training
// and evaluation): "foreground" (default: every labelled pixel is class 1)
// or "ids" (label values are class ids: instances/ if the folder has it, else
// masks/; volumes: the label map's values).
struct DatasetSpec {
  std::string type;
  std::string path;
  std::string split;
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string axis = "axial";
  std::string normalize = "percentile";
  int64_t count = 0;
  uint64_t seed = 0;
  double weight = 1.0;
  int64_t limit = 0;
  std::string classes = "foreground";  // foreground | ids
  // Set by semantic training / evaluation (not part of the JSON): class ids
  // must be < num_classes (InputError naming the file otherwise). 0 = unchecked.
  int num_classes = 0;
  SyntheticOptions synthetic;

  static DatasetSpec from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
  std::string label() const;  // "kvasir_seg/test", "synthetic(2000)"
};

std::unique_ptr<SampleSource> open_dataset(const DatasetSpec& spec);

// A 2D folder dataset: file stems of `split` (all images when split is empty
// or the folder has no split.json). Objects: instances/<stem>.png when
// present, else the 8-connected components of masks/<stem>.png.
std::vector<std::string> folder_items(const std::string& dir, const std::string& split);

}  // namespace medicosam::train
