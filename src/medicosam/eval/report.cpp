#include "medicosam/eval/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/report/line_plot.hpp"

namespace medicosam::eval {
namespace fs = std::filesystem;

namespace {

std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out.empty() ? "_" : out;
}

void make_dirs(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) throw IoError("cannot create folder '" + p.string() + "': " + ec.message());
}

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

nlohmann::json curve_json(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(number_or_null(x));
  return a;
}

nlohmann::json options_json(const Interactive2DOptions& o) {
  nlohmann::json j;
  j["n_iterations"] = o.n_iterations;
  nlohmann::json starts = nlohmann::json::array();
  for (auto s : o.starts) starts.push_back(start_name(s));
  j["starts"] = starts;
  j["min_object_size"] = o.min_object_size;
  j["use_masks"] = o.use_masks;
  j["seed"] = o.seed;
  j["batch_size"] = o.batch_size;
  j["nsd_tolerance_mm"] = o.nsd_tolerance_mm;
  j["surface_metrics"] = o.surface_metrics;
  return j;
}

// Unique names in first-appearance order.
template <typename F>
std::vector<std::string> ordered(const std::vector<Interactive2DResult>& results, F key) {
  std::vector<std::string> out;
  for (const auto& r : results)
    if (std::find(out.begin(), out.end(), key(r)) == out.end()) out.push_back(key(r));
  return out;
}

// Markdown cell: "–" where the value is missing.
std::string md_number(double v, int decimals) {
  const std::string s = format_number(v, decimals);
  return s.empty() ? "–" : s;
}

std::string fmt_opt(const std::optional<double>& v, bool bold) {
  if (!v || !std::isfinite(*v)) return "–";
  const std::string s = format_number(*v, 3);
  return bold ? "**" + s + "**" : s;
}

// ---------------------------------------------------------------- overlays

cv::Mat to_bgr(const io::RGB8Image& img) {
  cv::Mat rgb(img.height, img.width, CV_8UC3, const_cast<uint8_t*>(img.data.data())), bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

cv::Mat mask_mat(const segment::BinaryMask& m, int f) {
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data()));
  cv::Mat bin = src != 0, out;
  if (f == 1) return bin;
  cv::resize(bin, out, cv::Size(m.width * f, m.height * f), 0, 0, cv::INTER_NEAREST);
  return out;
}

void put_label(cv::Mat& img, const std::string& s, cv::Point at, double scale = 0.45) {
  cv::putText(img, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
}

cv::Mat draw_panel(const cv::Mat& image, int f, const segment::BinaryMask& gt,
                   const segment::BinaryMask& pred, const std::vector<predict::Prompt>& prompts,
                   const std::string& header) {
  cv::Mat img = image.clone();
  const cv::Mat p = mask_mat(pred, f), g = mask_mat(gt, f);
  // Prediction: blue tint and outline; truth: green outline on top.
  cv::Mat tint(img.size(), img.type(), cv::Scalar(255, 120, 0));
  cv::Mat blended;
  cv::addWeighted(img, 0.55, tint, 0.45, 0, blended);
  blended.copyTo(img, p);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(p.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  cv::drawContours(img, contours, -1, cv::Scalar(255, 80, 0), 1, cv::LINE_AA);
  contours.clear();
  cv::findContours(g.clone(), contours, cv::RETR_LIST, cv::CHAIN_APPROX_NONE);
  cv::drawContours(img, contours, -1, cv::Scalar(0, 220, 0), 2, cv::LINE_AA);
  for (const auto& pr : prompts) {
    if (pr.box) {
      cv::rectangle(img, cv::Point(int(pr.box->x0 * f), int(pr.box->y0 * f)),
                    cv::Point(int(pr.box->x1 * f) - 1, int(pr.box->y1 * f) - 1),
                    cv::Scalar(0, 230, 255), 2);
    }
    for (const auto& pt : pr.points) {
      const cv::Point c(int((pt.x + 0.5) * f), int((pt.y + 0.5) * f));
      cv::circle(img, c, 5, cv::Scalar(0, 0, 0), -1, cv::LINE_AA);
      cv::circle(img, c, 4, pt.label == 1 ? cv::Scalar(0, 255, 0) : cv::Scalar(0, 0, 255), -1,
                 cv::LINE_AA);
    }
  }
  cv::Mat out(img.rows + 26, img.cols, CV_8UC3, cv::Scalar(255, 255, 255));
  img.copyTo(out(cv::Rect(0, 26, img.cols, img.rows)));
  put_label(out, header, {4, 18});
  return out;
}

}  // namespace

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

std::string format_number(double v, int decimals) {
  if (std::isnan(v)) return "";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::vector<uint8_t> render_case_png(const Sample2D& sample, const CaseDetail& detail,
                                     const std::string& title) {
  const ClassMask* cls = nullptr;
  for (const auto& c : sample.classes)
    if (c.name == detail.result.class_name) cls = &c;
  if (!cls)
    throw InputError("render_case_png: sample '" + sample.name + "' has no class '" +
                     detail.result.class_name + "'");
  if (detail.predictions.empty()) throw InputError("render_case_png: case without predictions");
  const int H = sample.rgb.height, W = sample.rgb.width;
  // Small images are enlarged (integer factor) so outlines and clicks stay readable.
  int f = std::max(1, 256 / std::max(1, std::min(H, W)));
  while (f > 1 && std::max(H, W) * f > 1024) --f;
  cv::Mat image = to_bgr(sample.rgb);
  if (f > 1) cv::resize(image, image, cv::Size(W * f, H * f), 0, 0, cv::INTER_NEAREST);

  const size_t last = detail.predictions.size() - 1;
  const auto& its = detail.result.iterations;
  char h0[96], h1[96];
  std::snprintf(h0, sizeof h0, "iteration 0 (%s): Dice %.3f", start_name(detail.result.start),
                its.front().dice);
  std::snprintf(h1, sizeof h1, "iteration %zu: Dice %.3f", last, its[last].dice);
  const cv::Mat a =
      draw_panel(image, f, cls->mask, detail.predictions.front(), detail.prompts.front(), h0);
  const cv::Mat b =
      draw_panel(image, f, cls->mask, detail.predictions[last], detail.prompts[last], h1);
  const int gap = 6, top = 28, bottom = 24;
  const int width = std::max(a.cols + gap + b.cols, 560);
  cv::Mat out(top + std::max(a.rows, b.rows) + bottom, width, CV_8UC3, cv::Scalar(255, 255, 255));
  a.copyTo(out(cv::Rect(0, top, a.cols, a.rows)));
  b.copyTo(out(cv::Rect(a.cols + gap, top, b.cols, b.rows)));
  put_label(out, title, {4, 19}, 0.5);
  put_label(out,
            "green: ground truth, blue: prediction, yellow: box, dots: clicks (green +, red -)",
            {4, out.rows - 8}, 0.4);
  std::vector<uint8_t> png;
  if (!cv::imencode(".png", out, png)) throw IoError("render_case_png: PNG encoding failed");
  return png;
}

std::vector<OverlayRecord> write_interactive2d_overlays(const std::string& out_dir,
                                                        segment::ImageSegmenter& segmenter,
                                                        const Dataset2D& dataset,
                                                        const Interactive2DResult& result,
                                                        int per_kind) {
  std::vector<OverlayRecord> records;
  if (per_kind <= 0) return records;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < dataset.size(); ++i) index[dataset.entry(i).name] = i;
  const fs::path dir = fs::path(out_dir) / "overlays" / safe_name(result.dataset);
  make_dirs(dir);
  for (StartPrompt start : result.options.starts) {
    std::vector<const CaseResult*> cases;
    for (const auto& c : result.cases)
      if (c.start == start && !c.iterations.empty()) cases.push_back(&c);
    if (cases.empty()) continue;
    std::stable_sort(cases.begin(), cases.end(), [](const CaseResult* a, const CaseResult* b) {
      return a->iterations.back().dice > b->iterations.back().dice;
    });
    std::vector<std::pair<std::string, const CaseResult*>> picks;
    const size_t k = std::min(cases.size(), size_t(per_kind));
    for (size_t i = 0; i < k; ++i) picks.emplace_back("best", cases[i]);
    for (size_t i = 0; i < k && cases.size() - 1 - i >= k; ++i)
      picks.emplace_back("worst", cases[cases.size() - 1 - i]);
    for (const auto& [kind, c] : picks) {
      const auto it = index.find(c->image);
      if (it == index.end()) continue;
      const Sample2D sample = dataset.load(it->second);
      const auto detail = run_interactive2d_case(segmenter, sample, result.dataset, c->class_name,
                                                 start, result.options);
      if (!detail) continue;
      std::string title = result.dataset + " / " + c->image;
      if (sample.classes.size() > 1 || c->class_name != "foreground")
        title += " / " + c->class_name;
      title += " - " + result.method + ", " + start_name(start) + " start (" + kind + ")";
      const auto png = render_case_png(sample, *detail, title);
      std::string file = safe_name(result.method) + "_" + start_name(start) + "_" + kind + "_" +
                         safe_name(c->image);
      if (c->class_name != "foreground") file += "_" + safe_name(c->class_name);
      file += ".png";
      write_file_atomic((dir / file).string(),
                        std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
      OverlayRecord r;
      r.dataset = result.dataset;
      r.method = result.method;
      r.image = c->image;
      r.class_name = c->class_name;
      r.start = start;
      r.kind = kind;
      r.path = (fs::path("overlays") / safe_name(result.dataset) / file).string();
      r.dice_first = detail->result.iterations.front().dice;
      r.dice_last = detail->result.iterations.back().dice;
      records.push_back(r);
    }
  }
  return records;
}

void write_interactive2d_report(const std::string& out_dir,
                                const std::vector<Interactive2DResult>& results,
                                const std::vector<OverlayRecord>& overlays,
                                const ReportOptions& options) {
  const fs::path root(out_dir);
  make_dirs(root / "plots");
  std::vector<Interactive2DSummary> sums;
  for (const auto& r : results) sums.push_back(summarize(r));
  const auto datasets = ordered(results, [](const Interactive2DResult& r) { return r.dataset; });
  const auto methods = ordered(results, [](const Interactive2DResult& r) { return r.method; });

  // ---- per_image.csv / per_image.json
  {
    std::ostringstream csv;
    csv << "dataset,method,image,class,start,iteration,n_objects,gt_pixels,dice,iou,nsd,hd95\n";
    nlohmann::json cases = nlohmann::json::array();
    for (const auto& r : results)
      for (const auto& c : r.cases) {
        nlohmann::json jc;
        jc["dataset"] = c.dataset;
        jc["method"] = r.method;
        jc["image"] = c.image;
        jc["class"] = c.class_name;
        jc["start"] = start_name(c.start);
        jc["n_objects"] = c.n_objects;
        jc["gt_pixels"] = c.gt_pixels;
        jc["decode_seconds"] = c.decode_seconds;
        std::vector<double> d, i, n, h;
        for (size_t it = 0; it < c.iterations.size(); ++it) {
          const auto& m = c.iterations[it];
          csv << csv_field(c.dataset) << ',' << csv_field(r.method) << ',' << csv_field(c.image)
              << ',' << csv_field(c.class_name) << ',' << start_name(c.start) << ',' << it << ','
              << c.n_objects << ',' << c.gt_pixels << ',' << format_number(m.dice, 6) << ','
              << format_number(m.iou, 6) << ',' << format_number(m.nsd, 6) << ','
              << format_number(m.hd95, 4) << '\n';
          d.push_back(m.dice);
          i.push_back(m.iou);
          n.push_back(m.nsd);
          h.push_back(m.hd95);
        }
        jc["dice"] = curve_json(d);
        jc["iou"] = curve_json(i);
        jc["nsd"] = curve_json(n);
        jc["hd95"] = curve_json(h);
        cases.push_back(jc);
      }
    write_file_atomic((root / "per_image.csv").string(), csv.str());
    nlohmann::json j;
    j["protocol"] = "interactive2d";
    j["note"] = "hd95 null = undefined (prediction or ground truth empty) or not computed";
    j["cases"] = cases;
    write_file_atomic((root / "per_image.json").string(), j.dump(1));
  }

  // ---- summary.csv / summary.json
  {
    std::ostringstream csv;
    csv << "dataset,method,start,iteration,dice,iou,nsd,hd95,hd95_undefined,n_cases,n_images\n";
    nlohmann::json jr = nlohmann::json::array();
    for (size_t k = 0; k < results.size(); ++k) {
      const auto& r = results[k];
      const auto& s = sums[k];
      nlohmann::json j;
      j["dataset"] = r.dataset;
      j["method"] = r.method;
      j["split"] = r.split;
      j["images"] = r.images;
      j["images_no_objects"] = r.images_no_objects;
      j["encode_seconds"] = r.encode_seconds;
      j["decode_seconds"] = r.decode_seconds;
      j["wall_seconds"] = r.wall_seconds;
      j["options"] = options_json(r.options);
      j["point"] = s.point ? number_or_null(*s.point) : nullptr;
      j["box"] = s.box ? number_or_null(*s.box) : nullptr;
      j["i_p"] = s.i_p ? number_or_null(*s.i_p) : nullptr;
      j["i_b"] = s.i_b ? number_or_null(*s.i_b) : nullptr;
      nlohmann::json starts;
      for (const auto& st : s.starts) {
        nlohmann::json js;
        js["n_cases"] = st.n_cases;
        js["n_images"] = st.n_images;
        js["dice"] = curve_json(st.dice);
        js["iou"] = curve_json(st.iou);
        js["nsd"] = curve_json(st.nsd);
        js["hd95"] = curve_json(st.hd95);
        js["hd95_undefined"] = st.hd95_undefined;
        js["worse_share"] = curve_json(st.worse_share);
        js["worse_rounds"] = number_or_null(st.worse_rounds);
        js["worse_final"] = number_or_null(st.worse_final);
        nlohmann::json per_class;
        for (size_t c = 0; c < st.classes.size(); ++c)
          per_class[st.classes[c]] = curve_json(st.class_dice[c]);
        js["class_dice"] = per_class;
        starts[start_name(st.start)] = js;
        for (size_t it = 0; it < st.dice.size(); ++it) {
          csv << csv_field(r.dataset) << ',' << csv_field(r.method) << ',' << start_name(st.start)
              << ',' << it << ',' << format_number(st.dice[it], 6) << ','
              << format_number(st.iou[it], 6) << ',' << format_number(st.nsd[it], 6) << ','
              << format_number(st.hd95[it], 4) << ',' << st.hd95_undefined[it] << ',' << st.n_cases
              << ',' << st.n_images << '\n';
        }
      }
      j["starts"] = starts;
      jr.push_back(j);
    }
    write_file_atomic((root / "summary.csv").string(), csv.str());
    nlohmann::json j;
    j["title"] = options.title;
    j["protocol"] = "interactive2d";
    j["command"] = options.command;
    j["results"] = jr;
    nlohmann::json ov = nlohmann::json::array();
    for (const auto& o : overlays) {
      ov.push_back({{"dataset", o.dataset},
                    {"method", o.method},
                    {"image", o.image},
                    {"class", o.class_name},
                    {"start", start_name(o.start)},
                    {"kind", o.kind},
                    {"path", o.path},
                    {"dice_first", o.dice_first},
                    {"dice_last", o.dice_last}});
    }
    j["overlays"] = ov;
    write_file_atomic((root / "summary.json").string(), j.dump(1));
  }

  // ---- plots
  std::map<std::string, std::string> plot_of;
  for (const auto& ds : datasets) {
    int n_it = 1;
    for (const auto& r : results)
      if (r.dataset == ds) n_it = std::max(n_it, r.options.n_iterations);
    report::LinePlot plot(ds + ": Dice per iteration",
                          "iteration (0 = start prompt, then correction rounds)", "Dice");
    plot.set_y_range(0, 1);
    plot.set_x_range(0, std::max(1, n_it - 1));
    for (size_t k = 0; k < results.size(); ++k) {
      if (results[k].dataset != ds) continue;
      const size_t m =
          size_t(std::find(methods.begin(), methods.end(), results[k].method) - methods.begin());
      for (const auto& st : sums[k].starts) {
        if (st.n_cases == 0) continue;
        std::vector<double> xs;
        for (size_t it = 0; it < st.dice.size(); ++it) xs.push_back(double(it));
        auto& s = plot.add_series(results[k].method + " (" + start_name(st.start) + " start)", xs,
                                  st.dice);
        s.color = report::palette_color(m);
        s.dashed = st.start == StartPrompt::kPoint;
      }
    }
    const std::string file = "plots/" + safe_name(ds) + "_dice.png";
    plot.save_png((root / file).string());
    plot_of[ds] = file;
  }

  // ---- summary.md
  std::ostringstream md;
  md << "# " << options.title << " - interactive 2D\n\n";
  if (!options.command.empty()) md << "Command: `" << options.command << "`\n\n";
  if (!results.empty()) {
    const auto& o = results.front().options;
    md << "Protocol (MedicoSAM, docs/evaluation.md): per image and class, connected components of "
          "at least "
       << o.min_object_size << " px are the objects; start = ";
    std::vector<std::string> st;
    for (auto s : o.starts)
      st.push_back(
          s == StartPrompt::kPoint
              ? "one positive point at each object's centre (multimask, best predicted IoU)"
              : "each object's tight box");
    for (size_t i = 0; i < st.size(); ++i) md << (i ? " or " : "") << st[i];
    md << "; then " << (o.n_iterations - 1)
       << " correction rounds, each adding per object one positive click (false negatives) and one "
          "negative click "
          "(false positives); previous low-res logits fed back: "
       << (o.use_masks ? "yes (where the method has them)" : "no") << "; seed " << o.seed
       << ". Dice of the union of the objects' masks against the class's ground truth, per image; "
          "per class the "
          "mean over images, then the mean over classes. NSD at "
       << md_number(o.nsd_tolerance_mm, 1)
       << " mm and HD95 in mm (pixels for PNG/JPEG images, which have no "
       << "physical pixel size).\n\n";
  }
  for (const auto& n : options.notes) md << "- " << n << "\n";
  if (!options.notes.empty()) md << "\n";

  md << "## Dice: Point, Box, I_P, I_B\n\n"
     << "Point / Box = the start prompt alone (iteration 0); I_P / I_B = after the last correction "
        "round, starting "
        "from a point / a box. Best per dataset in bold.\n\n"
     << "| dataset | split | method | images | Point | Box | I_P | I_B "
        "|\n|---|---|---|---:|---:|---:|---:|---:|\n";
  for (const auto& ds : datasets) {
    double best[4] = {-1, -1, -1, -1};
    int n_methods = 0;
    for (size_t k = 0; k < results.size(); ++k) {
      if (results[k].dataset != ds) continue;
      ++n_methods;
      const std::optional<double> v[4] = {sums[k].point, sums[k].box, sums[k].i_p, sums[k].i_b};
      for (int i = 0; i < 4; ++i)
        if (v[i] && std::isfinite(*v[i])) best[i] = std::max(best[i], *v[i]);
    }
    for (size_t k = 0; k < results.size(); ++k) {
      if (results[k].dataset != ds) continue;
      const auto& s = sums[k];
      const std::optional<double> v[4] = {s.point, s.box, s.i_p, s.i_b};
      md << "| " << ds << " | " << results[k].split << " | " << results[k].method << " | "
         << results[k].images;
      for (int i = 0; i < 4; ++i)
        md << " | " << fmt_opt(v[i], n_methods > 1 && v[i] && *v[i] == best[i] && best[i] >= 0);
      md << " |\n";
    }
  }
  md << "\n";

  {
    // Corrections that made things worse, per dataset x method x start.
    std::ostringstream rows;
    for (const auto& ds : datasets)
      for (size_t k = 0; k < results.size(); ++k) {
        if (results[k].dataset != ds) continue;
        for (const auto& st : sums[k].starts) {
          if (st.n_cases == 0 || !std::isfinite(st.worse_rounds)) continue;
          int worst_it = 0;
          for (size_t it = 1; it < st.worse_share.size(); ++it)
            if (std::isfinite(st.worse_share[it]) &&
                (worst_it == 0 || st.worse_share[it] > st.worse_share[worst_it]))
              worst_it = int(it);
          rows << "| " << ds << " | " << results[k].method << " | " << start_name(st.start)
               << " | " << md_number(100 * st.worse_rounds, 1) << " % | "
               << md_number(100 * st.worse_final, 1) << " % | ";
          if (worst_it > 0)
            rows << worst_it << " (" << md_number(100 * st.worse_share[worst_it], 1) << " %)";
          rows << " |\n";
        }
      }
    if (!rows.str().empty()) {
      md << "## Corrections that made it worse\n\nA correction round is worse when the case's "
            "Dice drops by more than "
         << kWorseDiceDrop
         << " from the round before. rounds = share of all (case, round) pairs; end below start "
            "= share of cases whose last Dice is below their start Dice; worst round = the round "
            "with the highest share (its share).\n\n"
            "| dataset | method | start | rounds worse | end below start | worst round "
            "|\n|---|---|---|---:|---:|---|\n"
         << rows.str() << "\n";
    }
  }

  md << "## Surface metrics\n\nNSD = share of both outlines within the tolerance of the other (1 = "
        "perfect); HD95 = "
        "95th-percentile outline distance (lower is better; cases where prediction or truth is "
        "empty are left out and "
        "counted as undefined).\n\n"
     << "| dataset | method | start | NSD first | NSD last | HD95 first | HD95 last | HD95 "
        "undefined (last) |\n"
     << "|---|---|---|---:|---:|---:|---:|---:|\n";
  for (size_t k = 0; k < results.size(); ++k)
    for (const auto& st : sums[k].starts) {
      if (st.n_cases == 0) continue;
      md << "| " << results[k].dataset << " | " << results[k].method << " | "
         << start_name(st.start) << " | " << md_number(st.nsd.front(), 3) << " | "
         << md_number(st.nsd.back(), 3) << " | " << md_number(st.hd95.front(), 1) << " | "
         << md_number(st.hd95.back(), 1) << " | " << st.hd95_undefined.back() << " |\n";
    }
  md << "\n";

  md << "## Dice per iteration\n\n";
  for (const auto& ds : datasets) {
    md << "### " << ds << "\n\n![" << ds << " Dice per iteration](" << plot_of[ds] << ")\n\n";
    int n_it = 0;
    for (const auto& r : results)
      if (r.dataset == ds) n_it = std::max(n_it, r.options.n_iterations);
    md << "| method | start |";
    for (int it = 0; it < n_it; ++it) md << " " << it << " |";
    md << "\n|---|---|";
    for (int it = 0; it < n_it; ++it) md << "---:|";
    md << "\n";
    for (size_t k = 0; k < results.size(); ++k) {
      if (results[k].dataset != ds) continue;
      for (const auto& st : sums[k].starts) {
        if (st.n_cases == 0) continue;
        md << "| " << results[k].method << " | " << start_name(st.start) << " |";
        for (int it = 0; it < n_it; ++it)
          md << " " << (it < int(st.dice.size()) ? md_number(st.dice[it], 3) : "") << " |";
        md << "\n";
      }
    }
    md << "\n";
    // Per-class table for multi-class datasets.
    std::set<std::string> classes;
    for (size_t k = 0; k < results.size(); ++k)
      if (results[k].dataset == ds)
        for (const auto& st : sums[k].starts) classes.insert(st.classes.begin(), st.classes.end());
    if (classes.size() > 1) {
      md << "Per class (Dice at the first / last iteration):\n\n| class | method | start | first | "
            "last |\n"
         << "|---|---|---|---:|---:|\n";
      for (const auto& cname : classes)
        for (size_t k = 0; k < results.size(); ++k) {
          if (results[k].dataset != ds) continue;
          for (const auto& st : sums[k].starts) {
            const auto pos = std::find(st.classes.begin(), st.classes.end(), cname);
            if (pos == st.classes.end()) continue;
            const auto& curve = st.class_dice[size_t(pos - st.classes.begin())];
            md << "| " << cname << " | " << results[k].method << " | " << start_name(st.start)
               << " | " << md_number(curve.front(), 3) << " | " << md_number(curve.back(), 3)
               << " |\n";
          }
        }
      md << "\n";
    }
  }

  if (!overlays.empty()) {
    md << "## Best and worst cases\n\nRanked by Dice at the last iteration; left: the start "
          "prompt, right: after the "
          "last correction round.\n\n";
    for (const auto& ds : datasets) {
      bool header = false;
      for (const auto& o : overlays) {
        if (o.dataset != ds) continue;
        if (!header) {
          md << "### " << ds << "\n\n";
          header = true;
        }
        md << "**" << o.method << ", " << start_name(o.start) << " start, " << o.kind
           << "**: " << o.image;
        if (o.class_name != "foreground") md << " / " << o.class_name;
        md << " (Dice " << md_number(o.dice_first, 3) << " -> " << md_number(o.dice_last, 3)
           << ")\n\n![" << o.image << "](" << o.path << ")\n\n";
      }
    }
  }

  md << "## Timing\n\n| dataset | method | images | encode (s) | decode (s) | wall (s) "
        "|\n|---|---|---:|---:|---:|---:|\n";
  for (const auto& r : results) {
    md << "| " << r.dataset << " | " << r.method << " | " << r.images << " | "
       << md_number(r.encode_seconds, 1) << " | " << md_number(r.decode_seconds, 1) << " | "
       << md_number(r.wall_seconds, 1) << " |\n";
  }
  md << "\nencode = setting the image (SAM: image encoder; GrabCut: colour conversion); decode = "
        "all prompt rounds "
        "(SAM: mask decoder; GrabCut: the graph cuts).\n\n"
     << "Files: summary.json / summary.csv (these numbers and the full curves), per_image.csv / "
        "per_image.json (every "
        "image x class x start x iteration), plots/, overlays/. See docs/evaluation.md.\n";
  write_file_atomic((root / "summary.md").string(), md.str());
}

void write_interactive3d_report(const std::string& out_dir,
                                const std::vector<Interactive3DResult>& results,
                                const ReportOptions& options) {
  const fs::path root(out_dir);
  make_dirs(root);
  // ---- per_volume.csv
  {
    std::ostringstream csv;
    csv << "dataset,method,volume,start,setting,class,dice,iou,nsd,hd95,objects,skipped,decoded_"
           "slices,seconds\n";
    for (const auto& r : results)
      for (const auto& v : r.volumes) {
        auto row = [&](const std::string& setting, const std::string& cls, const Metrics& m) {
          csv << csv_field(r.dataset) << ',' << csv_field(r.method) << ',' << csv_field(v.volume)
              << ',' << start_name(v.start) << ',' << csv_field(setting) << ',' << csv_field(cls)
              << ',' << format_number(m.dice, 6) << ',' << format_number(m.iou, 6) << ','
              << format_number(m.nsd, 6) << ',' << format_number(m.hd95, 4) << ',' << v.n_objects
              << ',' << v.n_skipped << ',' << v.decoded_slices << ',' << format_number(v.seconds, 2)
              << '\n';
        };
        const std::string fixed = "fixed: " + r.options.fixed.to_string();
        for (const auto& c : v.classes) row(fixed, c.name, c.metrics);
        row(fixed, "mean", v.fixed);
        if (v.best_setting)
          row("grid-search oracle: " + v.best_setting->to_string(), "mean", v.best);
      }
    write_file_atomic((root / "per_volume.csv").string(), csv.str());
  }
  // ---- summary.json
  {
    nlohmann::json jr = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json j;
      j["dataset"] = r.dataset;
      j["method"] = r.method;
      j["split"] = r.split;
      j["fixed_setting"] = r.options.fixed.to_string();
      j["grid"] = r.options.grid == GridSearch::kFull    ? "full"
                  : r.options.grid == GridSearch::kSmall ? "small"
                                                         : "none";
      j["min_size"] = r.options.min_size;
      j["seed"] = r.options.seed;
      j["nsd_tolerance_mm"] = r.options.nsd_tolerance_mm;
      j["encode_seconds"] = r.encode_seconds;
      j["wall_seconds"] = r.wall_seconds;
      nlohmann::json starts;
      for (const auto& s : summarize(r)) {
        starts[start_name(s.start)] = {
            {"n_volumes", s.n_volumes},
            {"dice", number_or_null(s.dice)},
            {"nsd", number_or_null(s.nsd)},
            {"hd95", number_or_null(s.hd95)},
            {"hd95_undefined", s.hd95_undefined},
            {"grid_search_oracle_dice",
             s.grid_dice ? number_or_null(*s.grid_dice) : nlohmann::json(nullptr)}};
      }
      j["starts"] = starts;
      nlohmann::json vols = nlohmann::json::array();
      for (const auto& v : r.volumes) {
        nlohmann::json jv = {{"volume", v.volume},
                             {"start", start_name(v.start)},
                             {"objects", v.n_objects},
                             {"skipped", v.n_skipped},
                             {"dice", number_or_null(v.fixed.dice)},
                             {"nsd", number_or_null(v.fixed.nsd)},
                             {"hd95", number_or_null(v.fixed.hd95)},
                             {"decoded_slices", v.decoded_slices},
                             {"seconds", v.seconds}};
        nlohmann::json cls;
        for (const auto& c : v.classes) cls[c.name] = number_or_null(c.metrics.dice);
        jv["class_dice"] = cls;
        if (v.best_setting) {
          jv["grid_search_oracle"] = {{"setting", v.best_setting->to_string()},
                                      {"dice", number_or_null(v.best.dice)},
                                      {"nsd", number_or_null(v.best.nsd)},
                                      {"hd95", number_or_null(v.best.hd95)},
                                      {"settings_tried", v.grid_size}};
        }
        vols.push_back(jv);
      }
      j["volumes"] = vols;
      jr.push_back(j);
    }
    nlohmann::json j;
    j["title"] = options.title;
    j["protocol"] = "interactive3d";
    j["command"] = options.command;
    j["results"] = jr;
    write_file_atomic((root / "summary.json").string(), j.dump(1));
  }
  // ---- summary.md
  std::ostringstream md;
  md << "# " << options.title << " - interactive 3D\n\n";
  if (!options.command.empty()) md << "Command: `" << options.command << "`\n\n";
  if (!results.empty()) {
    const auto& o = results.front().options;
    md << "Protocol (MedicoSAM 3D, docs/evaluation.md): per object (label value) its middle slice "
          "along the "
       << io::axis_name(o.axis)
       << " axis is prompted with one random positive and one random negative point, or its "
       << "tight box; the mask is propagated through the volume (micro_sam "
          "segment_mask_in_volume); objects with fewer "
       << "than " << o.min_size << " px in their middle slice are skipped. Dice, NSD at "
       << md_number(o.nsd_tolerance_mm, 1)
       << " mm and HD95 (mm) per class on the voxel grid, averaged over "
       << "classes per volume, then over volumes. Fixed setting: " << o.fixed.to_string() << ".";
    if (o.grid != GridSearch::kNone) {
      md << " **Grid-search oracle**: per volume, the best Dice over "
         << grid_settings(o.grid).size()
         << " propagation settings (iou_threshold x projection x box_extension), as in the paper; "
            "it looks at the "
            "truth to choose, so it is an upper bound, not what a user gets.";
    }
    md << "\n\n";
  }
  for (const auto& n : options.notes) md << "- " << n << "\n";
  if (!options.notes.empty()) md << "\n";
  md << "| dataset | method | start | volumes | Dice (fixed) | NSD | HD95 (mm) | Dice (grid-search "
        "oracle) |\n"
     << "|---|---|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : results)
    for (const auto& s : summarize(r)) {
      md << "| " << r.dataset << " | " << r.method << " | " << start_name(s.start) << " | "
         << s.n_volumes << " | " << md_number(s.dice, 3) << " | " << md_number(s.nsd, 3) << " | "
         << md_number(s.hd95, 1)
         << (s.hd95_undefined ? " (" + std::to_string(s.hd95_undefined) + " undefined)"
                              : std::string())
         << " | " << (s.grid_dice ? md_number(*s.grid_dice, 3) : std::string("-")) << " |\n";
    }
  md << "\n## Per volume\n\n| dataset | method | volume | start | objects (skipped) | Dice | NSD | "
        "HD95 | grid oracle "
        "Dice | best setting | decoded slices | s "
        "|\n|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|\n";
  for (const auto& r : results)
    for (const auto& v : r.volumes) {
      md << "| " << r.dataset << " | " << r.method << " | " << v.volume << " | "
         << start_name(v.start) << " | " << v.n_objects << " (" << v.n_skipped << ") | "
         << md_number(v.fixed.dice, 3) << " | " << md_number(v.fixed.nsd, 3) << " | "
         << md_number(v.fixed.hd95, 1) << " | "
         << (v.best_setting ? md_number(v.best.dice, 3) : std::string("-")) << " | "
         << (v.best_setting ? v.best_setting->to_string() : std::string("-")) << " | "
         << v.decoded_slices << " | " << md_number(v.seconds, 1) << " |\n";
    }
  md << "\n## Timing\n\n| dataset | method | encode (s) | wall (s) |\n|---|---|---:|---:|\n";
  for (const auto& r : results)
    md << "| " << r.dataset << " | " << r.method << " | " << md_number(r.encode_seconds, 1) << " | "
       << md_number(r.wall_seconds, 1) << " |\n";
  md << "\nFiles: summary.json (these numbers), per_volume.csv (every volume x start x class and "
        "setting). See "
        "docs/evaluation.md.\n";
  write_file_atomic((root / "summary.md").string(), md.str());
}

}  // namespace medicosam::eval
