// The semantic segmentation protocol and its report (semantic.hpp).
#include "medicosam/eval/semantic.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"

namespace medicosam::eval {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean(double sum, int n) { return n > 0 ? sum / n : kNaN; }

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

std::vector<SemanticClassSummary> SemanticResult::per_class() const {
  const int K = std::max(1, num_classes - 1);
  std::vector<SemanticClassSummary> out(K);
  std::vector<double> dice(K, 0), iou(K, 0), nsd(K, 0), hd(K, 0);
  for (const auto& im : images) {
    for (int k = 0; k < K && k < static_cast<int>(im.metrics.size()); ++k) {
      if (!im.in_gt[k] && !im.in_pred[k]) continue;
      const auto& m = im.metrics[k];
      ++out[k].images;
      dice[k] += m.dice;
      iou[k] += m.iou;
      nsd[k] += m.nsd;
      if (im.in_gt[k] && im.in_pred[k]) {
        ++out[k].both_present;
        hd[k] += m.hd95;
      }
    }
  }
  for (int k = 0; k < K; ++k) {
    out[k].class_id = k + 1;
    out[k].dice = mean(dice[k], out[k].images);
    out[k].iou = mean(iou[k], out[k].images);
    out[k].nsd = mean(nsd[k], out[k].images);
    out[k].hd95 = mean(hd[k], out[k].both_present);
  }
  return out;
}

double SemanticResult::mean_dice() const {
  double s = 0;
  int n = 0;
  for (const auto& c : per_class())
    if (c.images > 0) s += c.dice, ++n;
  return mean(s, n);
}

SemanticResult run_semantic(SemanticSegmenter& model, const train::SampleSource& data,
                            const std::string& dataset_name, const SemanticEvalOptions& o) {
  const auto t0 = Clock::now();
  SemanticResult r;
  r.dataset = dataset_name;
  r.method = model.name();
  r.num_classes = model.num_classes();
  const int K = std::max(1, r.num_classes - 1);
  Progress bar(static_cast<int64_t>(data.size()), "semantic " + dataset_name + " / " + r.method,
               o.progress);
  for (size_t i = 0; i < data.size(); ++i) {
    const auto s = data.get(i);
    if (s.classes.size() != static_cast<size_t>(s.height) * s.width)
      throw InputError("dataset '" + dataset_name + "': sample '" + s.name + "' has no class map");
    for (uint16_t v : s.classes) {
      if (v > K) {
        throw InputError("dataset '" + dataset_name + "': '" + s.name + "' has class id " +
                         std::to_string(v) + " but model '" + r.method + "' has " +
                         std::to_string(r.num_classes) + " classes");
      }
    }
    const auto ts = Clock::now();
    const auto pred = model.segment(s.image.data(), s.height, s.width);
    SemanticImageResult ir;
    ir.seconds = std::chrono::duration<double>(Clock::now() - ts).count();
    if (pred.size() != s.classes.size())
      throw Error("model '" + r.method + "' returned a label map of the wrong size for '" + s.name + "'");
    ir.image = s.name;
    ir.height = s.height;
    ir.width = s.width;
    for (int k = 0; k < K; ++k) {
      const uint16_t c = static_cast<uint16_t>(k + 1);
      segment::BinaryMask p(s.height, s.width), g(s.height, s.width);
      for (size_t j = 0; j < pred.size(); ++j) {
        p.data[j] = pred[j] == c;
        g.data[j] = s.classes[j] == c;
      }
      const bool in_p = std::any_of(p.data.begin(), p.data.end(), [](uint8_t v) { return v != 0; });
      const bool in_g = std::any_of(g.data.begin(), g.data.end(), [](uint8_t v) { return v != 0; });
      ir.in_gt.push_back(in_g);
      ir.in_pred.push_back(in_p);
      ir.metrics.push_back(in_p || in_g ? compute_metrics(p, g, o.spacing, o.nsd_tolerance_mm)
                                        : Metrics{1.0, 1.0, 1.0, 0.0});
    }
    r.images.push_back(std::move(ir));
    char note[64];
    std::snprintf(note, sizeof note, "mean Dice %.3f", r.mean_dice());
    bar.advance(1, note);
  }
  bar.finish();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

void write_semantic_report(const std::string& out_dir, const std::vector<SemanticResult>& results,
                           const SemanticEvalOptions& o, const ReportOptions& report) {
  fs::create_directories(out_dir);
  std::ostringstream csv, per_image, md;
  nlohmann::json j;
  j["protocol"] = "semantic";
  j["nsd_tolerance_mm"] = o.nsd_tolerance_mm;
  j["command"] = report.command;
  csv << "dataset,method,class,images,both_present,dice,iou,nsd,hd95\n";
  per_image << "dataset,method,image,class,in_gt,in_pred,dice,iou,nsd,hd95,seconds\n";
  md << "# " << (report.title.empty() ? "medicosam semantic evaluation" : report.title) << "\n\n";
  md << "Protocol: semantic segmentation without prompts (argmax over the model's classes); per image "
        "and class: Dice, IoU, NSD at "
     << format_number(o.nsd_tolerance_mm, 2)
     << " mm and HD95 (mm; pixel spacing 1 for PNG/JPEG). A class's Dice/IoU/NSD average the images "
        "where it is in the ground truth or the prediction; HD95 the images where it is in both "
        "(`both` column); mean Dice averages the classes.\n\n";
  for (const auto& n : report.notes) md << "- " << n << "\n";
  if (!report.command.empty()) md << "\nCommand: `" << report.command << "`\n";
  md << "\n| dataset | method | images | mean Dice | class | n | both | Dice | IoU | NSD | HD95 | s/image |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : results) {
    nlohmann::json jr{{"dataset", r.dataset},
                      {"method", r.method},
                      {"num_classes", r.num_classes},
                      {"images", r.images.size()},
                      {"mean_dice", num(r.mean_dice())},
                      {"seconds", r.seconds}};
    double model_seconds = 0;
    for (const auto& im : r.images) model_seconds += im.seconds;
    const double per = r.images.empty() ? kNaN : model_seconds / r.images.size();
    jr["model_seconds_per_image"] = num(per);
    bool first = true;
    for (const auto& c : r.per_class()) {
      jr["classes"].push_back({{"class", c.class_id},
                               {"images", c.images},
                               {"both_present", c.both_present},
                               {"dice", num(c.dice)},
                               {"iou", num(c.iou)},
                               {"nsd", num(c.nsd)},
                               {"hd95", num(c.hd95)}});
      csv << csv_field(r.dataset) << "," << csv_field(r.method) << "," << c.class_id << "," << c.images
          << "," << c.both_present << "," << format_number(c.dice) << "," << format_number(c.iou) << ","
          << format_number(c.nsd) << "," << format_number(c.hd95) << "\n";
      md << "| " << (first ? r.dataset : "") << " | " << (first ? r.method : "") << " | "
         << (first ? std::to_string(r.images.size()) : "") << " | "
         << (first ? format_number(r.mean_dice(), 3) : "") << " | " << c.class_id << " | " << c.images
         << " | " << c.both_present << " | " << format_number(c.dice, 3) << " | "
         << format_number(c.iou, 3) << " | " << format_number(c.nsd, 3) << " | "
         << format_number(c.hd95, 1) << " | " << (first ? format_number(per, 3) : "") << " |\n";
      first = false;
    }
    for (const auto& im : r.images)
      for (size_t k = 0; k < im.metrics.size(); ++k) {
        const auto& m = im.metrics[k];
        per_image << csv_field(r.dataset) << "," << csv_field(r.method) << "," << csv_field(im.image) << ","
                  << k + 1 << "," << int(im.in_gt[k]) << "," << int(im.in_pred[k]) << ","
                  << format_number(m.dice) << "," << format_number(m.iou) << "," << format_number(m.nsd)
                  << "," << format_number(m.hd95) << "," << format_number(im.seconds) << "\n";
      }
    j["results"].push_back(std::move(jr));
  }
  write_file_atomic((fs::path(out_dir) / "summary.md").string(), md.str());
  write_file_atomic((fs::path(out_dir) / "summary.json").string(), j.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "summary.csv").string(), csv.str());
  write_file_atomic((fs::path(out_dir) / "per_image.csv").string(), per_image.str());
}

}  // namespace medicosam::eval
