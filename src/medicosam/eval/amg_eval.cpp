#include "medicosam/eval/amg_eval.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/read.hpp"

namespace medicosam::eval {
namespace fs = std::filesystem;

namespace {

bool same(const AmgSetting& a, const AmgSetting& b) {
  return a.pred_iou_thresh == b.pred_iou_thresh && a.stability_score_thresh == b.stability_score_thresh;
}

// instances/<stem>.<image ext> beside the dataset's images, or "".
std::string instance_file(const Dataset2D& ds, const std::string& stem) {
  const fs::path dir = fs::path(ds.dir()) / "instances";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  for (const char* ext : {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".PNG", ".TIF", ".TIFF"}) {
    const fs::path p = dir / (stem + ext);
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

struct Object {
  segment::BinaryMask mask;
  int64_t area = 0;
  std::array<int, 4> box{};  // XYXY inclusive
};

Object make_object(segment::BinaryMask m) {
  Object o;
  int x0 = m.width, y0 = m.height, x1 = -1, y1 = -1;
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      if (m.data[size_t(y) * m.width + x]) {
        ++o.area;
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  o.box = {x0, y0, x1, y1};
  o.mask = std::move(m);
  return o;
}

double rate(int num, int den) { return den > 0 ? double(num) / den : std::numeric_limits<double>::quiet_NaN(); }

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string setting_str(const AmgSetting& s) {
  return format_number(s.pred_iou_thresh, 3) + " / " + format_number(s.stability_score_thresh, 3);
}

}  // namespace

std::vector<AmgSetting> AmgEvalOptions::settings() const {
  std::vector<AmgSetting> out{{amg.pred_iou_thresh, amg.stability_score_thresh}};
  for (const auto& s : sweep)
    if (std::none_of(out.begin(), out.end(), [&](const AmgSetting& o) { return same(o, s); })) out.push_back(s);
  return out;
}

AmgCandidateSource sam_candidate_source(predict::SamPredictor& predictor) {
  return [&predictor](const io::RGB8Image& img, const segment::AmgOptions& o,
                      const segment::AmgCandidateVisitor& visit) {
    return segment::generate_candidates(predictor, img.data.data(), img.height, img.width, o, visit, false);
  };
}

std::vector<segment::BinaryMask> amg_objects(const Dataset2D& ds, size_t i, const Sample2D& sample,
                                             int min_object_size, bool use_instances) {
  std::vector<segment::BinaryMask> out;
  const std::string inst = use_instances && ds.options().resize_to <= 0 ? instance_file(ds, ds.entry(i).name) : "";
  if (!inst.empty()) {
    const io::LabelMap lm = io::read_label_map(inst);
    if (lm.size()[2] != 1 || lm.size()[0] != sample.rgb.width || lm.size()[1] != sample.rgb.height)
      throw FormatError("'" + inst + "': instance map of another size than its image");
    for (uint16_t id : lm.labels_present()) {
      if (id == 0) continue;
      segment::BinaryMask m(sample.rgb.height, sample.rgb.width);
      for (size_t p = 0; p < m.data.size(); ++p) m.data[p] = lm.data()[p] == id;
      for (auto& c : segment::connected_components(m, min_object_size)) out.push_back(std::move(c));
    }
    return out;
  }
  for (const auto& c : sample.classes)
    for (auto& comp : segment::connected_components(c.mask, min_object_size)) out.push_back(std::move(comp));
  return out;
}

AmgEvalResult run_amg_eval(const AmgCandidateSource& source, const std::string& method, const Dataset2D& ds,
                           const AmgEvalOptions& o) {
  if (o.amg.min_mask_region_area > 0)
    throw InputError("the AMG evaluation does not support min_mask_region_area (it sweeps without the masks)");
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  AmgEvalResult r;
  r.method = method;
  r.dataset = ds.name();
  r.split = ds.split_description();
  r.settings = o.settings();
  // The loosest thresholds: every setting's candidates are among these.
  segment::AmgOptions loose = o.amg;
  for (const auto& s : r.settings) {
    loose.pred_iou_thresh = std::min(loose.pred_iou_thresh, s.pred_iou_thresh);
    loose.stability_score_thresh = std::min(loose.stability_score_thresh, s.stability_score_thresh);
  }
  Progress bar(int64_t(ds.size()), "amg " + ds.name(), o.progress);
  for (size_t i = 0; i < ds.size(); ++i) {
    const auto t0 = Clock::now();
    const Sample2D sample = ds.load(i);
    std::vector<Object> objects;
    for (auto& m : amg_objects(ds, i, sample, o.min_object_size, o.use_instances))
      objects.push_back(make_object(std::move(m)));
    const int W = sample.rgb.width;
    std::vector<segment::AmgCandidate> cands;
    std::vector<std::vector<float>> cand_iou;  // per candidate, per object
    const auto crops = source(sample.rgb, loose,
                              [&](const segment::AmgCandidate& c, const uint8_t* m, const std::array<int, 4>& cb) {
                                const int cw = cb[2] - cb[0];
                                // Mask pixels lie inside the candidate's box (image coords, inclusive).
                                int64_t area = 0;
                                const bool empty = c.box[2] < c.box[0];
                                if (!empty) {
                                  for (int y = c.box[1]; y <= c.box[3]; ++y) {
                                    const uint8_t* row = m + size_t(y - cb[1]) * cw - cb[0];
                                    for (int x = c.box[0]; x <= c.box[2]; ++x) area += row[x] != 0;
                                  }
                                }
                                std::vector<float> ious(objects.size(), 0.f);
                                for (size_t k = 0; k < objects.size() && area > 0; ++k) {
                                  const auto& ob = objects[k];
                                  const int x0 = std::max(ob.box[0], c.box[0]), x1 = std::min(ob.box[2], c.box[2]);
                                  const int y0 = std::max(ob.box[1], c.box[1]), y1 = std::min(ob.box[3], c.box[3]);
                                  int64_t inter = 0;
                                  for (int y = y0; y <= y1; ++y) {
                                    const uint8_t* row = m + size_t(y - cb[1]) * cw - cb[0];
                                    const uint8_t* g = ob.mask.data.data() + size_t(y) * W;
                                    for (int x = x0; x <= x1; ++x) inter += (row[x] != 0) & (g[x] != 0);
                                  }
                                  ious[k] = float(double(inter) / double(area + ob.area - inter));
                                }
                                cands.push_back(c);
                                cand_iou.push_back(std::move(ious));
                              });
    AmgImageResult im;
    im.image = sample.name;
    im.n_objects = int(objects.size());
    im.candidates = int(cands.size());
    size_t largest = 0;
    for (size_t k = 0; k < objects.size(); ++k)
      if (objects[k].area > objects[largest].area) largest = k;
    if (!objects.empty()) im.largest_object_px = objects[largest].area;
    for (const auto& s : r.settings) {
      segment::AmgOptions so = o.amg;
      so.pred_iou_thresh = s.pred_iou_thresh;
      so.stability_score_thresh = s.stability_score_thresh;
      const auto kept = segment::select_candidates(cands, crops, so);
      std::vector<double> best(objects.size(), 0.0);
      for (size_t c : kept)
        for (size_t k = 0; k < objects.size(); ++k) best[k] = std::max(best[k], double(cand_iou[c][k]));
      int matched = 0;
      for (double b : best) matched += b >= o.match_iou;
      im.masks.push_back(int(kept.size()));
      im.matched.push_back(matched);
      im.largest_matched.push_back(!objects.empty() && best[largest] >= o.match_iou);
      im.largest_best_iou.push_back(objects.empty() ? std::numeric_limits<double>::quiet_NaN() : best[largest]);
    }
    im.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.images.push_back(std::move(im));
    bar.advance();
  }
  bar.finish();
  r.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return r;
}

std::vector<AmgSettingSummary> AmgEvalResult::summarize() const {
  std::vector<AmgSettingSummary> out;
  for (size_t s = 0; s < settings.size(); ++s) {
    AmgSettingSummary x;
    x.setting = settings[s];
    int64_t masks = 0;
    int matched = 0, images_matched = 0;
    double best_sum = 0;
    for (const auto& im : images) {
      ++x.images;
      masks += im.masks[s];
      x.objects += im.n_objects;
      matched += im.matched[s];
      if (im.n_objects > 0) {
        ++x.images_with_objects;
        images_matched += im.largest_matched[s];
        best_sum += im.largest_best_iou[s];
      }
    }
    x.mean_masks = x.images ? double(masks) / x.images : std::numeric_limits<double>::quiet_NaN();
    x.object_match_rate = rate(matched, x.objects);
    x.image_match_rate = rate(images_matched, x.images_with_objects);
    x.mean_largest_best_iou =
        x.images_with_objects ? best_sum / x.images_with_objects : std::numeric_limits<double>::quiet_NaN();
    out.push_back(x);
  }
  return out;
}

std::string amg_selection_rule(double cap) {
  return "among the settings with at most " + format_number(cap, 1) +
         " masks per image on average on every dataset, the highest object match rate averaged over the "
         "datasets (ties: higher image match rate, then fewer masks); chosen on val splits only";
}

std::optional<AmgSelection> select_amg_setting(const std::vector<AmgEvalResult>& results, double cap) {
  if (results.empty()) return std::nullopt;
  const size_t n = results.front().settings.size();
  std::vector<std::vector<AmgSettingSummary>> sums;
  for (const auto& r : results) {
    if (r.settings.size() != n) throw InputError("AMG results with different settings cannot be pooled");
    sums.push_back(r.summarize());
  }
  std::optional<AmgSelection> best;
  for (size_t s = 0; s < n; ++s) {
    AmgSelection c;
    c.index = s;
    c.setting = results.front().settings[s];
    c.min_image_match_rate = 1.0;
    bool fits = true;
    int counted = 0;
    for (const auto& sm : sums) {
      const auto& x = sm[s];
      if (!(x.mean_masks <= cap)) fits = false;
      if (x.objects == 0) continue;  // no objects: no rates
      ++counted;
      c.object_match_rate += x.object_match_rate;
      c.image_match_rate += x.image_match_rate;
      c.mean_masks += x.mean_masks;
      c.min_image_match_rate = std::min(c.min_image_match_rate, x.image_match_rate);
    }
    if (!fits || counted == 0) continue;
    c.object_match_rate /= counted;
    c.image_match_rate /= counted;
    c.mean_masks /= counted;
    auto better = [&](const AmgSelection& a, const AmgSelection& b) {
      if (std::abs(a.object_match_rate - b.object_match_rate) > 1e-9) return a.object_match_rate > b.object_match_rate;
      if (std::abs(a.image_match_rate - b.image_match_rate) > 1e-9) return a.image_match_rate > b.image_match_rate;
      return a.mean_masks < b.mean_masks;
    };
    if (!best || better(c, *best)) best = c;
  }
  return best;
}

void write_amg_report(const std::string& out_dir, const std::vector<AmgEvalResult>& results,
                      const AmgEvalOptions& o, const AmgReportOptions& ro) {
  fs::create_directories(out_dir);
  const auto& a = o.amg;
  std::ostringstream md, per_image, sweep;
  nlohmann::json j;
  j["protocol"] = "amg";
  j["command"] = ro.report.command;
  j["options"] = {{"points_per_side", a.points_per_side},
                  {"points_per_batch", a.points_per_batch},
                  {"pred_iou_thresh", a.pred_iou_thresh},
                  {"stability_score_thresh", a.stability_score_thresh},
                  {"thresholds_from", ro.thresholds_note},
                  {"box_nms_thresh", a.box_nms_thresh},
                  {"crop_n_layers", a.crop_n_layers},
                  {"min_object_size", o.min_object_size},
                  {"match_iou", o.match_iou},
                  {"use_instances", o.use_instances}};
  md << "# " << (ro.report.title.empty() ? "medicosam AMG evaluation" : ro.report.title) << "\n\n";
  md << "Protocol: SAM's automatic mask generator (" << a.points_per_side << "x" << a.points_per_side
     << " point grid, box NMS " << format_number(a.box_nms_thresh, 2) << ", crop layers " << a.crop_n_layers
     << ") on every image. Ground-truth objects: connected components of at least " << o.min_object_size
     << " px of each instance id (instances/ where the dataset has it) or class mask. An object is matched "
        "when an automatic mask has IoU >= "
     << format_number(o.match_iou, 2)
     << " with it. Object match rate = matched objects / objects; image match rate = images whose largest "
        "object is matched / images with an object; best IoU = mean over images of the best IoU of a mask "
        "with the largest object.\n\n";
  md << "Thresholds in effect: predicted IoU > " << format_number(a.pred_iou_thresh, 3) << ", stability >= "
     << format_number(a.stability_score_thresh, 3) << " (" << ro.thresholds_note << ").\n\n";
  for (const auto& n : ro.report.notes) md << "- " << n << "\n";
  if (!ro.report.command.empty()) md << "\nCommand: `" << ro.report.command << "`\n";
  md << "\n| dataset | method | split | images | objects | masks/image | object match | image match | best IoU "
        "| s/image |\n|---|---|---|---|---|---|---|---|---|---|\n";
  per_image << "dataset,method,image,objects,largest_object_px,candidates,masks,matched,largest_matched,"
               "largest_best_iou,seconds\n";
  sweep << "dataset,method,pred_iou_thresh,stability_score_thresh,images,objects,mean_masks,object_match_rate,"
           "image_match_rate,mean_largest_best_iou\n";
  std::vector<std::string> datasets, methods;
  for (const auto& r : results) {
    if (std::find(datasets.begin(), datasets.end(), r.dataset) == datasets.end()) datasets.push_back(r.dataset);
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
    const auto sums = r.summarize();
    const auto& s0 = sums.front();
    double secs = 0;
    for (const auto& im : r.images) secs += im.seconds;
    const double per = r.images.empty() ? std::numeric_limits<double>::quiet_NaN() : secs / r.images.size();
    md << "| " << r.dataset << " | " << r.method << " | " << r.split << " | " << s0.images << " | " << s0.objects
       << " | " << format_number(s0.mean_masks, 1) << " | " << format_number(s0.object_match_rate, 3) << " | "
       << format_number(s0.image_match_rate, 3) << " | " << format_number(s0.mean_largest_best_iou, 3) << " | "
       << format_number(per, 1) << " |\n";
    nlohmann::json jr{{"dataset", r.dataset},
                      {"method", r.method},
                      {"split", r.split},
                      {"images", s0.images},
                      {"images_with_objects", s0.images_with_objects},
                      {"objects", s0.objects},
                      {"mean_masks", num(s0.mean_masks)},
                      {"object_match_rate", num(s0.object_match_rate)},
                      {"image_match_rate", num(s0.image_match_rate)},
                      {"mean_largest_best_iou", num(s0.mean_largest_best_iou)},
                      {"seconds", r.seconds},
                      {"seconds_per_image", num(per)}};
    for (const auto& x : sums) {
      sweep << csv_field(r.dataset) << "," << csv_field(r.method) << "," << format_number(x.setting.pred_iou_thresh)
            << "," << format_number(x.setting.stability_score_thresh) << "," << x.images << "," << x.objects << ","
            << format_number(x.mean_masks) << "," << format_number(x.object_match_rate) << ","
            << format_number(x.image_match_rate) << "," << format_number(x.mean_largest_best_iou) << "\n";
      if (sums.size() > 1)
        jr["sweep"].push_back({{"pred_iou_thresh", x.setting.pred_iou_thresh},
                               {"stability_score_thresh", x.setting.stability_score_thresh},
                               {"mean_masks", num(x.mean_masks)},
                               {"object_match_rate", num(x.object_match_rate)},
                               {"image_match_rate", num(x.image_match_rate)},
                               {"mean_largest_best_iou", num(x.mean_largest_best_iou)}});
    }
    for (const auto& im : r.images)
      per_image << csv_field(r.dataset) << "," << csv_field(r.method) << "," << csv_field(im.image) << ","
                << im.n_objects << "," << im.largest_object_px << "," << im.candidates << "," << im.masks[0] << ","
                << im.matched[0] << "," << int(im.largest_matched[0]) << ","
                << format_number(im.largest_best_iou[0]) << "," << format_number(im.seconds) << "\n";
    j["results"].push_back(std::move(jr));
  }
  j["datasets"] = datasets;
  if (!results.empty()) j["split"] = results.front().split.substr(0, results.front().split.find(' '));
  const bool is_sweep = !results.empty() && results.front().settings.size() > 1;
  if (is_sweep) {
    j["selection_rule"] = amg_selection_rule(ro.max_mean_masks);
    md << "\n## Sweep\n\nEach setting applied to the same candidates as SAM filters them (thresholds, then box "
          "NMS). Means over the datasets (per dataset: sweep.csv). Selection rule: "
       << amg_selection_rule(ro.max_mean_masks) << ".\n";
    for (const auto& m : methods) {
      std::vector<AmgEvalResult> mine;
      for (const auto& r : results)
        if (r.method == m) mine.push_back(r);
      const auto sel = select_amg_setting(mine, ro.max_mean_masks);
      md << "\n### " << m << "\n\n| pred IoU > | stability >= | masks/image | object match | image match | worst "
         << "image match | max masks/image |\n|---|---|---|---|---|---|---|\n";
      std::vector<std::vector<AmgSettingSummary>> sums;
      for (const auto& r : mine) sums.push_back(r.summarize());
      for (size_t s = 0; s < mine.front().settings.size(); ++s) {
        double om = 0, imr = 0, mm = 0, worst = 1, maxm = 0;
        int n = 0;
        for (const auto& sm : sums) {
          if (sm[s].objects == 0) continue;
          ++n;
          om += sm[s].object_match_rate, imr += sm[s].image_match_rate, mm += sm[s].mean_masks;
          worst = std::min(worst, sm[s].image_match_rate), maxm = std::max(maxm, sm[s].mean_masks);
        }
        if (n == 0) continue;
        const bool chosen = sel && sel->index == s;
        const std::string b = chosen ? "**" : "";
        md << "| " << b << format_number(mine.front().settings[s].pred_iou_thresh, 3) << b
           << (s == 0 ? " (in effect)" : "") << " | " << b
           << format_number(mine.front().settings[s].stability_score_thresh, 3) << b << " | "
           << format_number(mm / n, 1) << " | " << format_number(om / n, 3) << " | " << format_number(imr / n, 3)
           << " | " << format_number(worst, 3) << " | " << format_number(maxm, 1) << " |\n";
      }
      nlohmann::json js = nullptr;
      if (sel) {
        md << "\nSelected (" << m << "): pred_iou_thresh " << format_number(sel->setting.pred_iou_thresh, 3)
           << ", stability_score_thresh " << format_number(sel->setting.stability_score_thresh, 3)
           << ": object match " << format_number(sel->object_match_rate, 3) << ", image match "
           << format_number(sel->image_match_rate, 3) << " (worst dataset " << format_number(sel->min_image_match_rate, 3)
           << "), " << format_number(sel->mean_masks, 1) << " masks/image. Write it into a checkpoint with "
           << "`medicosam amg-defaults CKPT --from-report " << out_dir << "`.\n";
        js = {{"method", m},
              {"pred_iou_thresh", sel->setting.pred_iou_thresh},
              {"stability_score_thresh", sel->setting.stability_score_thresh},
              {"object_match_rate", sel->object_match_rate},
              {"image_match_rate", sel->image_match_rate},
              {"min_image_match_rate", sel->min_image_match_rate},
              {"mean_masks", sel->mean_masks}};
      } else {
        md << "\nNo setting keeps at most " << format_number(ro.max_mean_masks, 1) << " masks per image.\n";
      }
      j["selections"].push_back(js);
      if (methods.size() == 1 || m == methods.front()) j["selected"] = js;
    }
  }
  write_file_atomic((fs::path(out_dir) / "summary.md").string(), md.str());
  write_file_atomic((fs::path(out_dir) / "summary.json").string(), j.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "per_image.csv").string(), per_image.str());
  if (is_sweep) write_file_atomic((fs::path(out_dir) / "sweep.csv").string(), sweep.str());
}

std::vector<double> parse_threshold_list(const std::string& s, const std::string& option) {
  std::vector<double> out;
  std::stringstream ss(s);
  for (std::string tok; std::getline(ss, tok, ',');) {
    size_t used = 0;
    double v = std::numeric_limits<double>::quiet_NaN();
    try {
      v = std::stod(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != tok.size() || !(v >= 0.0 && v <= 1.0))
      throw InputError(option + " '" + s + "': expected comma-separated numbers in [0, 1]");
    out.push_back(v);
  }
  if (out.empty()) throw InputError(option + ": empty list");
  return out;
}

}  // namespace medicosam::eval
