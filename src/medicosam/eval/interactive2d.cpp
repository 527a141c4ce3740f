#include "medicosam/eval/interactive2d.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"

namespace medicosam::eval {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t fnv1a(uint64_t h, const std::string& s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= 0xff;  // separator, so ("ab","c") and ("a","bc") differ
  h *= 0x100000001b3ULL;
  return h;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void validate(const Interactive2DOptions& o) {
  if (o.n_iterations < 1) throw InputError("interactive2d: need at least 1 iteration");
  if (o.starts.empty()) throw InputError("interactive2d: no start prompt (point and/or box)");
  if (o.min_object_size < 1) throw InputError("interactive2d: min_object_size must be >= 1");
  if (o.batch_size < 1) throw InputError("interactive2d: batch_size must be >= 1");
  if (!(o.nsd_tolerance_mm >= 0)) throw InputError("interactive2d: NSD tolerance must be >= 0");
}

// Decodes all prompts in chunks of batch_size.
std::vector<predict::Prediction> predict_all(segment::ImageSegmenter& seg,
                                             const std::vector<predict::Prompt>& prompts,
                                             bool multimask, int batch_size) {
  std::vector<predict::Prediction> out;
  out.reserve(prompts.size());
  for (size_t b = 0; b < prompts.size(); b += size_t(batch_size)) {
    const size_t e = std::min(prompts.size(), b + size_t(batch_size));
    std::vector<predict::Prompt> chunk(prompts.begin() + b, prompts.begin() + e);
    auto preds = seg.predict_batch(chunk, multimask);
    if (preds.size() != chunk.size()) {
      throw Error("segmenter '" + seg.name() + "' returned " + std::to_string(preds.size()) +
                  " predictions for " + std::to_string(chunk.size()) + " prompts");
    }
    for (auto& p : preds) out.push_back(std::move(p));
  }
  return out;
}

// The protocol for one class and start prompt; the segmenter's image is set.
std::optional<CaseDetail> run_case(segment::ImageSegmenter& seg, const Sample2D& sample,
                                   const ClassMask& cls, const std::string& dataset,
                                   StartPrompt start, const Interactive2DOptions& o,
                                   bool keep_detail) {
  const auto objects = segment::connected_components(cls.mask, o.min_object_size);
  if (objects.empty()) return std::nullopt;
  if (auto* oracle = dynamic_cast<GroundTruthAware*>(&seg)) oracle->set_ground_truth(cls.mask);

  segment::Rng rng(case_seed(o.seed, dataset, sample.name, cls.name, start));
  const int H = sample.rgb.height, W = sample.rgb.width;
  std::vector<predict::Prompt> prompts(objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    if (start == StartPrompt::kBox) {
      prompts[i].box = segment::bounding_box(objects[i]);
    } else {
      prompts[i].points.push_back(segment::object_center(objects[i]));
    }
  }
  const bool feed_logits = o.use_masks && seg.low_res_size() > 0;

  CaseDetail d;
  CaseResult& r = d.result;
  r.dataset = dataset;
  r.image = sample.name;
  r.class_name = cls.name;
  r.start = start;
  r.n_objects = int(objects.size());
  r.gt_pixels = cls.mask.area();
  for (int it = 0; it < o.n_iterations; ++it) {
    // micro_sam: multimask only for the single-point start.
    const bool multimask = it == 0 && start == StartPrompt::kPoint;
    const auto t0 = Clock::now();
    const auto preds = predict_all(seg, prompts, multimask, o.batch_size);
    r.decode_seconds += seconds_since(t0);

    segment::BinaryMask uni(H, W);
    std::vector<segment::BinaryMask> object_masks;
    std::vector<int> chosen;
    for (size_t i = 0; i < preds.size(); ++i) {
      const auto& p = preds[i];
      if (p.height != H || p.width != W || p.num_masks < 1) {
        throw Error("segmenter '" + seg.name() + "' returned a " + std::to_string(p.width) + "x" +
                    std::to_string(p.height) + " prediction with " + std::to_string(p.num_masks) +
                    " masks for a " + std::to_string(W) + "x" + std::to_string(H) + " image");
      }
      const int k = multimask ? p.best() : 0;
      chosen.push_back(k);
      object_masks.emplace_back(H, W, p.mask(k));
      const auto& m = object_masks.back().data;
      for (size_t j = 0; j < m.size(); ++j) uni.data[j] |= m[j] != 0;
    }
    r.iterations.push_back(
        compute_metrics(uni, cls.mask, sample.spacing, o.nsd_tolerance_mm, o.surface_metrics));
    if (keep_detail) {
      d.predictions.push_back(uni);
      d.prompts.push_back(prompts);
    }
    if (it + 1 == o.n_iterations) break;
    for (size_t i = 0; i < objects.size(); ++i) {
      const auto clicks = segment::corrective_points(objects[i], object_masks[i], rng);
      prompts[i].points.insert(prompts[i].points.end(), clicks.begin(), clicks.end());
      if (feed_logits) {
        const auto& p = preds[i];
        if (p.low_res_size == seg.low_res_size() && !p.low_res_logits.empty()) {
          prompts[i].mask_input = p.low_res(chosen[i]);
        }
      }
    }
  }
  return d;
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

}  // namespace

const char* start_name(StartPrompt s) {
  return s == StartPrompt::kBox ? "box" : "point";
}

StartPrompt parse_start(const std::string& s) {
  if (s == "point" || s == "points") return StartPrompt::kPoint;
  if (s == "box") return StartPrompt::kBox;
  throw InputError("start prompt '" + s + "': use point or box");
}

uint64_t case_seed(uint64_t seed, const std::string& dataset, const std::string& image,
                   const std::string& class_name, StartPrompt start) {
  uint64_t h = 0xcbf29ce484222325ULL;
  h = fnv1a(h, dataset);
  h = fnv1a(h, image);
  h = fnv1a(h, class_name);
  h = fnv1a(h, start_name(start));
  return splitmix64(h ^ splitmix64(seed));
}

std::vector<CaseResult> run_interactive2d_sample(segment::ImageSegmenter& segmenter,
                                                 const Sample2D& sample, const std::string& dataset,
                                                 const Interactive2DOptions& options) {
  validate(options);
  std::vector<CaseResult> out;
  if (sample.classes.empty()) return out;
  segmenter.set_image(sample.rgb.data.data(), sample.rgb.height, sample.rgb.width);
  for (const auto& cls : sample.classes)
    for (StartPrompt s : options.starts)
      if (auto d = run_case(segmenter, sample, cls, dataset, s, options, false))
        out.push_back(std::move(d->result));
  return out;
}

std::optional<CaseDetail> run_interactive2d_case(segment::ImageSegmenter& segmenter,
                                                 const Sample2D& sample, const std::string& dataset,
                                                 const std::string& class_name, StartPrompt start,
                                                 const Interactive2DOptions& options,
                                                 bool set_image) {
  validate(options);
  const ClassMask* cls = nullptr;
  for (const auto& c : sample.classes)
    if (c.name == class_name) cls = &c;
  if (!cls) throw InputError("sample '" + sample.name + "' has no class '" + class_name + "'");
  if (set_image) segmenter.set_image(sample.rgb.data.data(), sample.rgb.height, sample.rgb.width);
  return run_case(segmenter, sample, *cls, dataset, start, options, true);
}

Interactive2DResult run_interactive2d(
    segment::ImageSegmenter& segmenter, const std::string& dataset_name, size_t n_samples,
    const std::function<Sample2D(size_t)>& load_sample, const Interactive2DOptions& options,
    const std::function<void(const std::vector<CaseResult>&)>& on_image) {
  validate(options);
  const auto t_start = Clock::now();
  Interactive2DResult res;
  res.method = segmenter.name();
  res.dataset = dataset_name;
  res.split = std::to_string(n_samples) + " images";
  res.options = options;
  Progress progress(int64_t(n_samples), res.method + " on " + res.dataset, options.progress);
  // Running mean of the last iteration's Dice, for the progress note.
  double sum_last = 0;
  int n_last = 0;
  for (size_t i = 0; i < n_samples; ++i) {
    const Sample2D sample = load_sample(i);
    const auto t0 = Clock::now();
    auto cases = run_interactive2d_sample(segmenter, sample, dataset_name, options);
    double decode = 0;
    for (const auto& c : cases) decode += c.decode_seconds;
    res.decode_seconds += decode;
    res.encode_seconds += std::max(0.0, seconds_since(t0) - decode);
    if (cases.empty()) {
      ++res.images_no_objects;
    } else {
      ++res.images;
    }
    for (const auto& c : cases) {
      sum_last += c.iterations.back().dice;
      ++n_last;
    }
    if (on_image) on_image(cases);
    for (auto& c : cases) res.cases.push_back(std::move(c));
    char note[64];
    std::snprintf(note, sizeof note, "Dice@last %.3f", n_last ? sum_last / n_last : 0.0);
    progress.advance(1, note);
  }
  progress.finish();
  res.wall_seconds = seconds_since(t_start);
  return res;
}

Interactive2DResult run_interactive2d(
    segment::ImageSegmenter& segmenter, const Dataset2D& dataset,
    const Interactive2DOptions& options,
    const std::function<void(const std::vector<CaseResult>&)>& on_image) {
  auto res = run_interactive2d(
      segmenter, dataset.name(), dataset.size(), [&](size_t i) { return dataset.load(i); }, options,
      on_image);
  res.split = dataset.split_description();
  return res;
}

const StartSummary* Interactive2DSummary::find(StartPrompt s) const {
  for (const auto& x : starts)
    if (x.start == s) return &x;
  return nullptr;
}

Interactive2DSummary summarize(const Interactive2DResult& result) {
  Interactive2DSummary sum;
  sum.method = result.method;
  sum.dataset = result.dataset;
  const int n_it = result.options.n_iterations;
  for (StartPrompt start : result.options.starts) {
    StartSummary s;
    s.start = start;
    // class -> cases of this start
    std::map<std::string, std::vector<const CaseResult*>> by_class;
    std::set<std::string> images;
    for (const auto& c : result.cases) {
      if (c.start != start) continue;
      by_class[c.class_name].push_back(&c);
      images.insert(c.image);
      ++s.n_cases;
    }
    s.n_images = int(images.size());
    s.dice.assign(n_it, std::nan(""));
    s.iou = s.nsd = s.hd95 = s.dice;
    s.hd95_undefined.assign(n_it, 0);
    for (const auto& [name, cases] : by_class) {
      s.classes.push_back(name);
      std::vector<double> curve(n_it);
      for (int it = 0; it < n_it; ++it) {
        std::vector<double> v;
        for (const auto* c : cases)
          if (it < int(c->iterations.size())) v.push_back(c->iterations[it].dice);
        curve[it] = mean(v);
      }
      s.class_dice.push_back(curve);
    }
    s.worse_share.assign(n_it, std::nan(""));
    {
      int rounds = 0, worse = 0, finals = 0, worse_end = 0;
      for (int it = 1; it < n_it; ++it) {
        int n = 0, w = 0;
        for (const auto& [name, cases] : by_class)
          for (const auto* c : cases) {
            if (it >= int(c->iterations.size())) continue;
            ++n;
            w += c->iterations[it].dice < c->iterations[it - 1].dice - kWorseDiceDrop;
          }
        if (n > 0) s.worse_share[it] = double(w) / n;
        rounds += n;
        worse += w;
      }
      for (const auto& [name, cases] : by_class)
        for (const auto* c : cases) {
          if (c->iterations.size() < 2) continue;
          ++finals;
          worse_end += c->iterations.back().dice < c->iterations.front().dice - kWorseDiceDrop;
        }
      if (rounds > 0) s.worse_rounds = double(worse) / rounds;
      if (finals > 0) s.worse_final = double(worse_end) / finals;
    }
    for (int it = 0; it < n_it; ++it) {
      std::vector<double> dice, iou_v, nsd, hd;
      for (const auto& [name, cases] : by_class) {
        std::vector<double> d, i, n, h;
        for (const auto* c : cases) {
          if (it >= int(c->iterations.size())) continue;
          const auto& m = c->iterations[it];
          d.push_back(m.dice);
          i.push_back(m.iou);
          if (std::isfinite(m.nsd)) n.push_back(m.nsd);
          if (std::isfinite(m.hd95)) {
            h.push_back(m.hd95);
          } else if (std::isinf(m.hd95)) {
            ++s.hd95_undefined[it];
          }
        }
        if (!d.empty()) dice.push_back(mean(d));
        if (!i.empty()) iou_v.push_back(mean(i));
        if (!n.empty()) nsd.push_back(mean(n));
        if (!h.empty()) hd.push_back(mean(h));
      }
      s.dice[it] = mean(dice);
      s.iou[it] = mean(iou_v);
      s.nsd[it] = mean(nsd);
      s.hd95[it] = mean(hd);
    }
    if (s.n_cases > 0) {
      if (start == StartPrompt::kPoint) {
        sum.point = s.dice.front();
        sum.i_p = s.dice.back();
      } else {
        sum.box = s.dice.front();
        sum.i_b = s.dice.back();
      }
    }
    sum.starts.push_back(std::move(s));
  }
  return sum;
}

}  // namespace medicosam::eval
