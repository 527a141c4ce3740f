#include "medicosam/eval/interactive3d.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/segment/volume_slices.hpp"

namespace medicosam::eval {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ------------------------------------------------------------------ dataset

// "case.nii.gz" -> ("case", true); other files -> ("", false).
std::pair<std::string, bool> volume_stem(const fs::path& p) {
  const std::string n = p.filename().string();
  for (const char* ext : {".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"}) {
    const std::string e = ext;
    if (n.size() > e.size() && n.compare(n.size() - e.size(), e.size(), e) == 0) {
      return {n.substr(0, n.size() - e.size()), true};
    }
  }
  return {"", false};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The case a label map belongs to: "brain1_label" -> "brain1"; "" if not a label.
std::string label_case(const std::string& stem) {
  for (const char* suffix : {"_label", "_labels", "_seg", "_mask"})
    if (ends_with(stem, suffix)) return stem.substr(0, stem.size() - std::string(suffix).size());
  return "";
}

// --------------------------------------------------------------- slicers

// Caches each slice's SAM embedding in memory, so every propagation setting of
// a grid search decodes without re-encoding.
class EmbeddingSlices : public segment::SliceSegmenter {
 public:
  EmbeddingSlices(predict::SamPredictor& predictor, const segment::VolumeSlices& slices,
                  double* encode_seconds)
      : predictor_(predictor),
        slices_(slices),
        cache_(size_t(slices.count())),
        encode_seconds_(encode_seconds) {}
  int num_slices() const override { return slices_.count(); }
  predict::Size2 slice_size() const override { return slices_.model_size(); }
  int low_res_size() const override { return predictor_.model().low_res_size; }
  // Slice z's embedding, encoded the first time it is needed.
  const predict::Embedding& embedding(int z) {
    if (!cache_[size_t(z)]) {
      const auto t0 = Clock::now();
      const auto img = slices_.model_image(z);
      cache_[size_t(z)] = predictor_.encode(img.data.data(), img.height, img.width, 3);
      if (encode_seconds_) *encode_seconds_ += seconds_since(t0);
    }
    return *cache_[size_t(z)];
  }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask) override {
    embedding(z);
    if (z != current_) {
      predictor_.set_embedding(*cache_[size_t(z)]);
      current_ = z;
    }
    ++decoded_;
    return predictor_.predict(prompt, multimask);
  }
  // All requests through the decoder at once (SamPredictor::predict_each).
  std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests,
                                                bool multimask) override {
    std::vector<predict::Embedding> embeddings;
    std::vector<predict::Prompt> prompts;
    for (const auto& r : requests) {
      embeddings.push_back(embedding(r.z));
      prompts.push_back(r.prompt);
    }
    decoded_ += static_cast<int>(requests.size());
    return predictor_.predict_each(embeddings, prompts, multimask);
  }
  int decoded() const { return decoded_; }

 private:
  predict::SamPredictor& predictor_;
  const segment::VolumeSlices& slices_;
  std::vector<std::optional<predict::Embedding>> cache_;
  double* encode_seconds_;
  int current_ = -1;
  int decoded_ = 0;
};

// Any other ImageSegmenter: the slice is set when it changes; segmenters that
// may see the truth get the current object's slice of it.
class SegmenterSlices : public segment::SliceSegmenter {
 public:
  SegmenterSlices(segment::ImageSegmenter& seg, const segment::VolumeSlices& slices,
                  double* encode_seconds)
      : seg_(seg),
        slices_(slices),
        oracle_(dynamic_cast<GroundTruthAware*>(&seg)),
        encode_seconds_(encode_seconds) {}
  int num_slices() const override { return slices_.count(); }
  predict::Size2 slice_size() const override { return slices_.model_size(); }
  int low_res_size() const override { return seg_.low_res_size(); }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask) override {
    if (z != current_ || truth_version_ != truth_seen_) {
      const auto t0 = Clock::now();
      const auto img = slices_.model_image(z);
      seg_.set_image(img.data.data(), img.height, img.width);
      if (oracle_ && truth_) oracle_->set_ground_truth((*truth_)[size_t(z)]);
      if (encode_seconds_) *encode_seconds_ += seconds_since(t0);
      current_ = z;
      truth_seen_ = truth_version_;
    }
    ++decoded_;
    return seg_.predict_batch({prompt}, multimask).front();
  }
  // The truth of the object being segmented, per slice on the model grid (oracles only).
  void set_truth(const std::vector<segment::BinaryMask>* truth) {
    truth_ = truth;
    ++truth_version_;
  }
  int decoded() const { return decoded_; }

 private:
  segment::ImageSegmenter& seg_;
  const segment::VolumeSlices& slices_;
  GroundTruthAware* oracle_;
  double* encode_seconds_;
  const std::vector<segment::BinaryMask>* truth_ = nullptr;
  int truth_version_ = 0, truth_seen_ = -1;
  int current_ = -1;
  int decoded_ = 0;
};

// Remembers decoder answers for one object: the grid's IoU thresholds only
// decide where propagation stops, so for one projection and box extension
// they replay the same prompts, which are then decoded once.
class MemoSlices : public segment::SliceSegmenter {
 public:
  explicit MemoSlices(segment::SliceSegmenter& base) : base_(&base) {}
  int num_slices() const override { return base_->num_slices(); }
  predict::Size2 slice_size() const override { return base_->slice_size(); }
  int low_res_size() const override { return base_->low_res_size(); }
  predict::Prediction predict(int z, const predict::Prompt& p, bool multimask) override {
    return predict_many({{z, p}}, multimask).front();
  }
  // Answers remembered requests and sends the others to the base in one batch.
  std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests,
                                                bool multimask) override {
    std::vector<predict::Prediction> out(requests.size());
    std::vector<Request> missing;
    std::vector<size_t> where;
    std::vector<std::string> keys;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto key = key_of(requests[i].z, requests[i].prompt, multimask);
      auto it = memo_.find(key);
      if (it != memo_.end()) {
        out[i] = it->second;
        continue;
      }
      missing.push_back(requests[i]);
      where.push_back(i);
      keys.push_back(std::move(key));
    }
    if (!missing.empty()) {
      auto preds = base_->predict_many(missing, multimask);
      for (size_t j = 0; j < missing.size(); ++j) {
        memo_.emplace(std::move(keys[j]), preds[j]);
        out[where[j]] = std::move(preds[j]);
      }
    }
    return out;
  }
  void clear() { memo_.clear(); }

 private:
  static std::string key_of(int z, const predict::Prompt& p, bool multimask) {
    std::string key = std::to_string(z) + (multimask ? "m" : "s");
    char buf[128];
    for (const auto& pt : p.points) {
      std::snprintf(buf, sizeof buf, "|%.17g,%.17g,%d", pt.x, pt.y, pt.label);
      key += buf;
    }
    if (p.box) {
      std::snprintf(buf, sizeof buf, "|b%.17g,%.17g,%.17g,%.17g", p.box->x0, p.box->y0, p.box->x1,
                    p.box->y1);
      key += buf;
    }
    if (p.mask_input) {
      uint64_t h = 0xcbf29ce484222325ULL;
      const auto* bytes = reinterpret_cast<const unsigned char*>(p.mask_input->data());
      for (size_t i = 0; i < p.mask_input->size() * sizeof(float); ++i)
        h = (h ^ bytes[i]) * 0x100000001b3ULL;
      key += "|m" + std::to_string(h);
    }
    return key;
  }
  segment::SliceSegmenter* base_;
  std::map<std::string, predict::Prediction> memo_;
};

struct Object3D {
  uint16_t label = 0;
  std::string name;
  int z_min = 0, z_max = 0, z_mid = 0;
  bool skipped = false;
  std::vector<segment::BinaryMask> truth;  // per slice, model grid
};

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

}  // namespace

// ------------------------------------------------------------------ Dataset3D

Dataset3D Dataset3D::from_entries(std::string name, std::vector<VolumeEntry> entries) {
  Dataset3D d;
  d.name_ = std::move(name);
  d.split_description_ = std::to_string(entries.size()) + " volumes";
  d.entries_ = std::move(entries);
  return d;
}

Dataset3D Dataset3D::open(const std::string& dir, const std::string& split, int64_t limit) {
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::is_directory(root, ec)) throw InputError("--data '" + dir + "': not a folder");
  std::vector<fs::path> folders{root};
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) folders.push_back(e.path());
  std::sort(folders.begin() + 1, folders.end());

  std::map<std::string, VolumeEntry> cases;
  for (const auto& folder : folders) {
    std::map<std::string, std::string> images, labels;  // stem -> path
    for (const auto& e : fs::directory_iterator(folder)) {
      if (!e.is_regular_file()) continue;
      const auto [stem, ok] = volume_stem(e.path());
      if (!ok) continue;
      (label_case(stem).empty() ? images : labels)[stem] = e.path().string();
    }
    for (const auto& [lstem, lpath] : labels) {
      const std::string c = label_case(lstem);
      std::string image;
      std::string name = c;
      for (const std::string& candidate : {c + "_image", c + "_img", c}) {
        if (images.count(candidate)) {
          image = images[candidate];
          break;
        }
      }
      if (image.empty() && images.size() == 1) {
        image = images.begin()->second;
        name = images.begin()->first + "_" + lstem;
      }
      if (image.empty() || cases.count(name)) continue;
      cases[name] = VolumeEntry{name, image, lpath};
    }
  }

  std::vector<std::string> names;
  std::string desc;
  const fs::path split_path = root / "split.json";
  if (split != "all" && fs::exists(split_path, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(split_path.string()));
    } catch (const nlohmann::json::exception& e) {
      throw FormatError("'" + split_path.string() + "': not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains(split) || !j[split].is_array()) {
      throw InputError("--split '" + split + "': '" + split_path.string() + "' has no such list");
    }
    for (const auto& n : j[split]) {
      const std::string s = n.get<std::string>();
      if (!cases.count(s))
        throw InputError("'" + split_path.string() + "' lists '" + s + "' but no such volume pair");
      names.push_back(s);
    }
    desc = split;
  } else {
    for (const auto& [n, e] : cases) names.push_back(n);
    desc = split == "all" ? "all" : "all (no split.json)";
  }
  if (names.empty()) {
    throw InputError("--data '" + dir +
                     "': no volume/label pairs found (expected <case>_image.nrrd + " +
                     "<case>_label.nrrd, or .nii.gz / .mha, in the folder or its sub-folders)");
  }
  if (limit > 0 && int64_t(names.size()) > limit) names.resize(size_t(limit));
  Dataset3D d;
  d.name_ = fs::absolute(root).lexically_normal().filename().string();
  if (d.name_.empty())
    d.name_ = fs::absolute(root).lexically_normal().parent_path().filename().string();
  for (const auto& n : names) d.entries_.push_back(cases.at(n));
  d.split_description_ = desc + " (" + std::to_string(d.entries_.size()) + " volumes)";
  return d;
}

// ------------------------------------------------------------------ settings

std::string PropagationSetting::to_string() const {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s, iou %.2g, ext %.3g", segment::projection_name(projection),
                iou_threshold, box_extension);
  return buf;
}

GridSearch parse_grid_search(const std::string& s) {
  if (s == "none") return GridSearch::kNone;
  if (s == "small") return GridSearch::kSmall;
  if (s == "full") return GridSearch::kFull;
  throw InputError("grid search '" + s + "': use none, small or full");
}

std::vector<PropagationSetting> grid_settings(GridSearch g) {
  std::vector<double> ious, exts;
  if (g == GridSearch::kFull) {
    for (int i = 0; i < 5; ++i) ious.push_back(0.5 + 0.1 * i);
    for (int i = 0; i <= 10; ++i) exts.push_back(0.025 * i);
  } else if (g == GridSearch::kSmall) {
    ious = {0.5, 0.7, 0.9};
    exts = {0.0, 0.1, 0.25};
  } else {
    return {};
  }
  // Ordered so that settings differing only in the IoU threshold follow each
  // other (they share decoder calls, see MemoSlices).
  std::vector<PropagationSetting> out;
  for (auto p :
       {segment::Projection::kMask, segment::Projection::kPoints, segment::Projection::kBox,
        segment::Projection::kPointsAndMask, segment::Projection::kSinglePoint})
    for (double e : exts)
      for (double iou : ious) out.push_back({p, iou, e});
  return out;
}

// ------------------------------------------------------------------ protocol

std::vector<VolumeResult> run_interactive3d_volume(
    segment::ImageSegmenter& segmenter, const io::Volume& volume, const io::LabelMap& labels,
    const std::string& dataset, const std::string& name, const Interactive3DOptions& o,
    double* encode_seconds, const std::function<void(const VolumeResult&)>& on_result) {
  if (o.starts.empty()) throw InputError("interactive3d: no start prompt (point and/or box)");
  if (labels.size() != volume.size()) {
    throw InputError("volume '" + name + "': label map size differs from the image");
  }
  const segment::VolumeSlices slices(volume, o.axis, o.normalization, /*square_pixels=*/true);
  const int Z = slices.count();
  const auto model = slices.model_size();

  // Objects: every label value; truth per slice on the model grid.
  std::vector<Object3D> objects;
  for (uint16_t label : labels.labels_present()) {
    Object3D obj;
    obj.label = label;
    obj.name = "label_" + std::to_string(label);
    obj.z_min = Z;
    obj.z_max = -1;
    for (int z = 0; z < Z; ++z) {
      const io::Mask2D m = io::label_slice(labels, slices.placement(z), label);
      const segment::BinaryMask slice_mask(int(m.height), int(m.width), m.data);
      if (!slice_mask.empty()) {
        obj.z_min = std::min(obj.z_min, z);
        obj.z_max = std::max(obj.z_max, z);
      }
      obj.truth.push_back(slices.mask_to_model(slice_mask));
    }
    obj.z_mid = (obj.z_min + obj.z_max) / 2;  // floor of the mean (both >= 0)
    const io::Mask2D mid = io::label_slice(labels, slices.placement(obj.z_mid), label);
    int64_t area = 0;
    for (auto v : mid.data) area += v != 0;
    obj.skipped = area < o.min_size;
    objects.push_back(std::move(obj));
  }

  std::unique_ptr<segment::SliceSegmenter> slicer;
  SegmenterSlices* generic = nullptr;
  if (auto* sam = dynamic_cast<segment::SamImageSegmenter*>(&segmenter)) {
    slicer = std::make_unique<EmbeddingSlices>(sam->predictor(), slices, encode_seconds);
  } else {
    auto s = std::make_unique<SegmenterSlices>(segmenter, slices, encode_seconds);
    generic = s.get();
    slicer = std::move(s);
  }
  auto decoded = [&]() {
    if (generic) return generic->decoded();
    return static_cast<EmbeddingSlices*>(slicer.get())->decoded();
  };

  // Truth per evaluated class, on the volume grid.
  const auto& geo = volume.geometry();
  const std::array<double, 3> spacing = geo.spacing;
  const int64_t n = labels.num_voxels();
  std::map<uint16_t, std::vector<uint8_t>> truth;
  for (const auto& obj : objects) {
    if (obj.skipped) continue;
    auto& t = truth[obj.label];
    t.assign(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) t[size_t(i)] = labels.data()[i] == obj.label;
  }

  const auto grid = grid_settings(o.grid);
  std::vector<VolumeResult> out;
  for (StartPrompt start : o.starts) {
    const auto t_case = Clock::now();
    const int decoded_before = decoded();
    VolumeResult r;
    r.dataset = dataset;
    r.volume = name;
    r.start = start;
    r.n_objects = int(objects.size());
    for (const auto& obj : objects) r.n_skipped += obj.skipped;

    // The middle-slice segmentation, shared by every propagation setting.
    std::vector<segment::BinaryMask> first(objects.size());
    for (size_t i = 0; i < objects.size(); ++i) {
      const auto& obj = objects[i];
      if (obj.skipped) continue;
      const auto& gt = obj.truth[size_t(obj.z_mid)];
      predict::Prompt p;
      if (start == StartPrompt::kBox) {
        p.box = segment::bounding_box(gt);
      } else {
        segment::Rng rng(case_seed(o.seed, dataset, name, obj.name, start));
        p.points = segment::random_points(gt, 1, 1, o.point_dilation, rng);
      }
      if (generic) generic->set_truth(&obj.truth);
      const auto pred = slicer->predict(obj.z_mid, p, /*multimask_output=*/false);
      first[i] = segment::BinaryMask(pred.height, pred.width, pred.mask(0));
    }

    // Propagates every object with one setting; returns per-class metrics.
    std::vector<MemoSlices> memos;
    for (size_t i = 0; i < objects.size(); ++i) memos.emplace_back(*slicer);
    auto evaluate = [&](const PropagationSetting& s, bool with_surface, bool memoize) {
      io::LabelMap pred(geo);
      segment::PropagationOptions po;
      po.projection = segment::projection_flags(s.projection);
      po.iou_threshold = s.iou_threshold;
      po.box_extension = s.box_extension;
      for (size_t i = 0; i < objects.size(); ++i) {
        const auto& obj = objects[i];
        if (obj.skipped) continue;
        std::vector<segment::BinaryMask> seg(size_t(Z),
                                             segment::BinaryMask(model.height, model.width));
        seg[size_t(obj.z_mid)] = first[i];
        if (generic) generic->set_truth(&obj.truth);
        segment::segment_mask_in_volume(
            memoize ? static_cast<segment::SliceSegmenter&>(memos[i]) : *slicer, seg, {obj.z_mid},
            po);
        for (int z = 0; z < Z; ++z) {
          if (seg[size_t(z)].empty()) continue;
          const auto m = slices.mask_to_slice(seg[size_t(z)]);
          io::paste_slice(pred, slices.placement(z), io::Mask2D{m.height, m.width, m.data},
                          obj.label,
                          /*replace=*/false);
        }
      }
      std::vector<ClassResult3D> classes;
      std::vector<uint8_t> p(static_cast<size_t>(n));
      for (const auto& [label, t] : truth) {
        for (int64_t k = 0; k < n; ++k) p[size_t(k)] = pred.data()[k] == label;
        MaskView pv{p.data(), geo.size, spacing}, tv{t.data(), geo.size, spacing};
        classes.push_back({"label_" + std::to_string(label),
                           compute_metrics(pv, tv, o.nsd_tolerance_mm, with_surface)});
      }
      return classes;
    };
    auto average = [](const std::vector<ClassResult3D>& classes) {
      std::vector<double> d, i, s, h;
      for (const auto& c : classes) {
        d.push_back(c.metrics.dice);
        i.push_back(c.metrics.iou);
        if (!std::isnan(c.metrics.nsd)) s.push_back(c.metrics.nsd);
        if (!std::isnan(c.metrics.hd95)) h.push_back(c.metrics.hd95);
      }
      Metrics m;
      m.dice = mean_of(d);
      m.iou = mean_of(i);
      m.nsd = mean_of(s);
      m.hd95 = mean_of(h);  // infinite if any class is undefined
      return m;
    };

    if (!truth.empty()) {
      r.classes = evaluate(o.fixed, true, false);
      r.fixed = average(r.classes);
      if (!grid.empty()) {
        r.grid_size = int(grid.size());
        double best = -1;
        const PropagationSetting* last = nullptr;
        for (const auto& s : grid) {  // ordered by projection, extension, then IoU threshold
          if (!last || last->projection != s.projection || last->box_extension != s.box_extension) {
            for (auto& m : memos) m.clear();
          }
          last = &s;
          const Metrics m = average(evaluate(s, false, true));
          if (m.dice > best) {
            best = m.dice;
            r.best_setting = s;
          }
        }
        for (auto& m : memos) m.clear();
        r.best = average(evaluate(*r.best_setting, true, false));
      }
    } else {
      r.fixed.dice = r.fixed.iou = r.fixed.nsd = r.fixed.hd95 = std::nan("");
    }
    r.decoded_slices = decoded() - decoded_before;
    r.seconds = seconds_since(t_case);
    if (on_result) on_result(r);
    out.push_back(std::move(r));
  }
  return out;
}

Interactive3DResult run_interactive3d(segment::ImageSegmenter& segmenter, const Dataset3D& dataset,
                                      const Interactive3DOptions& options) {
  const auto t0 = Clock::now();
  Interactive3DResult res;
  res.method = segmenter.name();
  res.dataset = dataset.name();
  res.split = dataset.split_description();
  res.options = options;
  Progress progress(int64_t(dataset.size() * options.starts.size()),
                    res.method + " on " + res.dataset + " (3D)", options.progress);
  for (size_t i = 0; i < dataset.size(); ++i) {
    const auto& e = dataset.entry(i);
    const io::Volume vol = io::read_image(e.image_path);
    io::LabelMap labels = io::read_label_map(e.label_path);
    if (labels.size() != vol.size()) {
      throw InputError("'" + e.label_path + "': label map size differs from '" + e.image_path +
                       "'");
    }
    // A label map is defined on its image's grid (NIfTI/NRRD round-offs aside).
    if (!io::same_grid(labels.geometry(), vol.geometry(), 1e-3))
      labels.set_geometry(vol.geometry());
    auto results = run_interactive3d_volume(
        segmenter, vol, labels, dataset.name(), e.name, options, &res.encode_seconds,
        [&](const VolumeResult& r) {
          progress.advance(1, e.name + " (" + start_name(r.start) + " start)");
        });
    for (auto& r : results) res.volumes.push_back(std::move(r));
  }
  progress.finish();
  res.wall_seconds = seconds_since(t0);
  return res;
}

std::vector<Interactive3DSummary> summarize(const Interactive3DResult& result) {
  std::vector<Interactive3DSummary> out;
  for (StartPrompt start : result.options.starts) {
    Interactive3DSummary s;
    s.start = start;
    std::vector<double> d, nsd, hd, g;
    for (const auto& v : result.volumes) {
      if (v.start != start || v.classes.empty()) continue;
      ++s.n_volumes;
      d.push_back(v.fixed.dice);
      nsd.push_back(v.fixed.nsd);
      if (std::isfinite(v.fixed.hd95)) {
        hd.push_back(v.fixed.hd95);
      } else {
        ++s.hd95_undefined;
      }
      if (v.best_setting) g.push_back(v.best.dice);
    }
    s.dice = mean_of(d);
    s.nsd = mean_of(nsd);
    s.hd95 = mean_of(hd);
    if (!g.empty()) s.grid_dice = mean_of(g);
    out.push_back(s);
  }
  return out;
}

}  // namespace medicosam::eval
