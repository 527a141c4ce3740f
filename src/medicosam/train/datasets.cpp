#include "medicosam/train/datasets.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "medicosam/core/error.hpp"
#include "medicosam/io/normalize.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::train {
namespace fs = std::filesystem;

namespace {

const char* kImageExts[] = {".jpg", ".jpeg",   ".png", ".tif",  ".tiff",
                            ".bmp", ".nii.gz", ".nii", ".nrrd", ".mha"};

std::string find_with_stem(const fs::path& dir, const std::string& stem) {
  std::error_code ec;
  for (const char* ext : kImageExts) {
    const auto p = dir / (stem + ext);
    if (fs::exists(p, ec)) return p.string();
  }
  return {};
}

// Relabels the 8-connected components of every label value > 0 as 1..n.
std::vector<uint16_t> components_as_instances(int h, int w, const std::vector<uint16_t>& labels) {
  std::vector<uint16_t> out(labels.size(), 0);
  std::vector<uint16_t> values;
  for (auto v : labels)
    if (v && std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
  std::sort(values.begin(), values.end());
  uint16_t next = 1;
  for (auto v : values) {
    segment::BinaryMask m(h, w);
    for (size_t i = 0; i < labels.size(); ++i) m.data[i] = labels[i] == v;
    for (const auto& cc : segment::connected_components(m, 1)) {
      for (size_t i = 0; i < cc.data.size(); ++i)
        if (cc.data[i]) out[i] = next;
      if (next == 65535) return out;
      ++next;
    }
  }
  return out;
}

// The semantic class map of a label map: ids as they are, or foreground = 1.
std::vector<uint16_t> class_map(const std::vector<uint16_t>& labels, const DatasetSpec& spec,
                                const std::string& file) {
  std::vector<uint16_t> out(labels.size());
  const bool ids = spec.classes == "ids";
  for (size_t i = 0; i < labels.size(); ++i) {
    const uint16_t v = ids ? labels[i] : static_cast<uint16_t>(labels[i] != 0);
    if (spec.num_classes > 0 && v >= spec.num_classes) {
      throw InputError("'" + file + "' has class id " + std::to_string(v) + " but the model has " +
                       std::to_string(spec.num_classes) +
                       " classes (0 = background, ids 1.." + std::to_string(spec.num_classes - 1) +
                       "); raise num_classes or use \"classes\": \"foreground\"");
    }
    out[i] = v;
  }
  return out;
}

void fill_image(TrainSample& s, const io::RGB8Image& rgb) {
  s.height = rgb.height;
  s.width = rgb.width;
  s.image = rgb.data;
}

class FolderSource : public SampleSource {
 public:
  explicit FolderSource(const DatasetSpec& spec) : spec_(spec), dir_(spec.path) {
    items_ = folder_items(spec.path, spec.split);
    if (spec.limit > 0 && static_cast<int64_t>(items_.size()) > spec.limit)
      items_.resize(spec.limit);
    norm_ = io::parse_normalization(spec.normalize);
    use_instances_ = fs::is_directory(dir_ / "instances");
  }
  size_t size() const override { return items_.size(); }
  std::string name() const override { return spec_.label(); }

  TrainSample get(size_t i) const override {
    const auto& stem = items_.at(i);
    const auto image_path = find_with_stem(dir_ / "images", stem);
    if (image_path.empty())
      throw InputError("dataset '" + dir_.string() + "': no image for '" + stem + "' in images/");
    const auto mask_dir = use_instances_ ? dir_ / "instances" : dir_ / "masks";
    const auto mask_path = find_with_stem(mask_dir, stem);
    if (mask_path.empty()) {
      throw InputError("dataset '" + dir_.string() + "': no mask for '" + stem + "' in " +
                       mask_dir.filename().string());
    }
    TrainSample s;
    s.name = stem;
    const auto vol = io::read_image(image_path);
    fill_image(s, io::to_rgb8(vol, norm_));
    const auto labels = io::read_label_map(mask_path);
    if (labels.size()[0] != s.width || labels.size()[1] != s.height) {
      throw InputError("'" + mask_path + "' is " + std::to_string(labels.size()[0]) + "x" +
                       std::to_string(labels.size()[1]) + " but its image is " +
                       std::to_string(s.width) + "x" + std::to_string(s.height));
    }
    std::vector<uint16_t> lab(labels.data(),
                              labels.data() + static_cast<size_t>(s.height) * s.width);
    s.classes = class_map(lab, spec_, mask_path);
    if (use_instances_) {
      s.instances = std::move(lab);
    } else {
      s.instances = components_as_instances(s.height, s.width, lab);
    }
    return s;
  }

 private:
  DatasetSpec spec_;
  fs::path dir_;
  std::vector<std::string> items_;
  io::Normalization norm_;
  bool use_instances_ = false;
};

// Slices of 3D volumes that contain at least one labelled voxel.
class VolumeSource : public SampleSource {
 public:
  explicit VolumeSource(const DatasetSpec& spec) : spec_(spec) {
    norm_ = io::parse_normalization(spec.normalize);
    axis_ = io::parse_axis(spec.axis);
    auto pairs = spec.pairs;
    if (!spec.path.empty()) {
      const fs::path dir(spec.path);
      for (const auto& stem : folder_items(spec.path, spec.split)) {
        pairs.emplace_back(find_with_stem(dir / "images", stem),
                           find_with_stem(dir / "labels", stem));
      }
    }
    for (size_t p = 0; p < pairs.size(); ++p) {
      const auto labels = io::read_label_map(pairs[p].second);
      const int64_t n = io::num_slices(labels.geometry(), axis_);
      for (int64_t k = 0; k < n; ++k) {
        const auto placement = io::slice_placement(labels.geometry(), axis_, k);
        const auto m = io::label_slice(labels, placement, 0);
        if (std::any_of(m.data.begin(), m.data.end(), [](uint8_t v) { return v != 0; }))
          items_.push_back({p, k});
      }
    }
    pairs_ = std::move(pairs);
    if (spec.limit > 0 && static_cast<int64_t>(items_.size()) > spec.limit)
      items_.resize(spec.limit);
  }
  size_t size() const override { return items_.size(); }
  std::string name() const override { return spec_.label(); }

  TrainSample get(size_t i) const override {
    const auto [p, k] = items_.at(i);
    const auto& [image, labels] = load(p);
    const auto slice = io::extract_slice(*image, axis_, k);
    TrainSample s;
    s.name = fs::path(pairs_[p].first).filename().string() + "#" + std::to_string(k);
    fill_image(s, io::Normalizer(norm_, *image)(slice.image));
    std::vector<uint16_t> lab(static_cast<size_t>(s.height) * s.width, 0);
    for (const auto& seg_value : label_values(*labels)) {
      const auto m = io::label_slice(*labels, slice.placement, seg_value);
      for (size_t j = 0; j < lab.size(); ++j)
        if (m.data[j]) lab[j] = seg_value;
    }
    s.classes = class_map(lab, spec_, pairs_[p].second);
    s.instances = components_as_instances(s.height, s.width, lab);
    return s;
  }

 private:
  using Loaded = std::pair<std::shared_ptr<io::Volume>, std::shared_ptr<io::LabelMap>>;
  // Volumes are small next to memory; keep them once read.
  const Loaded& load(size_t p) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(p);
    if (it == cache_.end()) {
      Loaded l{std::make_shared<io::Volume>(io::read_image(pairs_[p].first)),
               std::make_shared<io::LabelMap>(io::read_label_map(pairs_[p].second))};
      it = cache_.emplace(p, std::move(l)).first;
    }
    return it->second;
  }
  static std::vector<uint16_t> label_values(const io::LabelMap& l) {
    std::vector<bool> seen(65536, false);
    const uint16_t* d = l.data();
    for (int64_t i = 0; i < l.geometry().num_voxels(); ++i) seen[d[i]] = true;
    std::vector<uint16_t> v;
    for (int i = 1; i < 65536; ++i)
      if (seen[i]) v.push_back(static_cast<uint16_t>(i));
    return v;
  }

  DatasetSpec spec_;
  io::Normalization norm_;
  io::Axis axis_;
  std::vector<std::pair<std::string, std::string>> pairs_;
  std::vector<std::pair<size_t, int64_t>> items_;
  mutable std::mutex mutex_;
  mutable std::map<size_t, Loaded> cache_;
};

class SyntheticSource : public SampleSource {
 public:
  explicit SyntheticSource(const DatasetSpec& spec) : spec_(spec) {}
  size_t size() const override { return static_cast<size_t>(spec_.count); }
  std::string name() const override { return spec_.label(); }
  TrainSample get(size_t i) const override {
    auto s = make_synthetic_sample(spec_.seed, i, spec_.synthetic);
    s.classes.resize(s.instances.size());
    for (size_t k = 0; k < s.instances.size(); ++k) s.classes[k] = s.instances[k] != 0;
    return s;
  }

 private:
  DatasetSpec spec_;
};

}  // namespace

std::vector<std::string> folder_items(const std::string& dir, const std::string& split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError("dataset folder '" + dir + "' does not exist");
  const fs::path split_file = fs::path(dir) / "split.json";
  if (!split.empty() && fs::exists(split_file, ec)) {
    std::ifstream in(split_file);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw FormatError("'" + split_file.string() + "' is not valid JSON: " + e.what());
    }
    if (!j.contains(split) || !j[split].is_array()) {
      throw InputError("'" + split_file.string() + "' has no list '" + split + "'");
    }
    return j[split].get<std::vector<std::string>>();
  }
  if (!split.empty() && split != "all") {
    throw InputError("dataset '" + dir + "' has no split.json, so split '" + split +
                     "' cannot be chosen (use \"all\")");
  }
  std::vector<std::string> stems;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "images", ec)) {
    std::string name = e.path().filename().string();
    for (const char* ext : kImageExts) {
      const std::string x(ext);
      if (name.size() > x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0) {
        stems.push_back(name.substr(0, name.size() - x.size()));
        break;
      }
    }
  }
  std::sort(stems.begin(), stems.end());
  if (stems.empty()) throw InputError("dataset '" + dir + "': no images in images/");
  return stems;
}

DatasetSpec DatasetSpec::from_json(const nlohmann::json& j, const std::string& where) {
  auto fail = [&](const std::string& why) { return InputError(where + ": " + why); };
  if (!j.is_object()) throw fail("a dataset must be a JSON object");
  DatasetSpec s;
  s.type = j.value("type", std::string("folder"));
  s.path = j.value("path", std::string());
  s.split = j.value("split", std::string());
  s.axis = j.value("axis", std::string("axial"));
  s.normalize = j.value("normalize", std::string("percentile"));
  s.count = j.value("count", int64_t{0});
  s.seed = j.value("seed", uint64_t{0});
  s.weight = j.value("weight", 1.0);
  s.limit = j.value("limit", int64_t{0});
  s.classes = j.value("classes", std::string("foreground"));
  if (s.classes != "foreground" && s.classes != "ids")
    throw fail("\"classes\" must be \"foreground\" or \"ids\", not '" + s.classes + "'");
  if (j.contains("pairs")) {
    for (const auto& p : j["pairs"])
      s.pairs.emplace_back(p.at("image").get<std::string>(), p.at("labels").get<std::string>());
  }
  if (j.contains("min_side")) s.synthetic.min_side = j["min_side"];
  if (j.contains("max_side")) s.synthetic.max_side = j["max_side"];
  if (j.contains("max_objects")) s.synthetic.max_objects = j["max_objects"];
  if (s.type == "folder" && s.path.empty()) throw fail("folder dataset needs \"path\"");
  if (s.type == "volumes" && s.path.empty() && s.pairs.empty())
    throw fail("volumes dataset needs \"path\" or \"pairs\"");
  if (s.type == "synthetic" && s.count <= 0) throw fail("synthetic dataset needs \"count\" > 0");
  if (s.type != "folder" && s.type != "volumes" && s.type != "synthetic") {
    throw fail("unknown dataset type '" + s.type + "' (folder, volumes or synthetic)");
  }
  if (s.weight <= 0) throw fail("\"weight\" must be positive");
  return s;
}

nlohmann::json DatasetSpec::to_json() const {
  nlohmann::json j{{"type", type}, {"normalize", normalize}, {"weight", weight}};
  if (!path.empty()) j["path"] = path;
  if (!split.empty()) j["split"] = split;
  if (type == "volumes") j["axis"] = axis;
  if (!pairs.empty()) {
    for (const auto& [i, l] : pairs) j["pairs"].push_back({{"image", i}, {"labels", l}});
  }
  if (type == "synthetic") {
    j["count"] = count;
    j["seed"] = seed;
    j["min_side"] = synthetic.min_side;
    j["max_side"] = synthetic.max_side;
    j["max_objects"] = synthetic.max_objects;
  }
  if (limit > 0) j["limit"] = limit;
  if (classes != "foreground") j["classes"] = classes;
  return j;
}

std::string DatasetSpec::label() const {
  if (type == "synthetic") return "synthetic(" + std::to_string(count) + ")";
  std::string base = path.empty() ? "volumes" : fs::path(path).filename().string();
  if (base.empty()) base = fs::path(path).parent_path().filename().string();
  return split.empty() ? base : base + "/" + split;
}

std::unique_ptr<SampleSource> open_dataset(const DatasetSpec& spec) {
  if (spec.type == "folder") return std::make_unique<FolderSource>(spec);
  if (spec.type == "volumes") return std::make_unique<VolumeSource>(spec);
  return std::make_unique<SyntheticSource>(spec);
}

}  // namespace medicosam::train
