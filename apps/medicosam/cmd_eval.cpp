// `medicosam eval`: models and classical baselines through MedicoSAM's
// evaluation protocols on datasets, into a report folder (docs/evaluation.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "cli_common.hpp"
#include "commands.hpp"
#include "eval_amg.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/eval/boxfill.hpp"
#include "medicosam/eval/dataset.hpp"
#include "medicosam/eval/grabcut.hpp"
#include "medicosam/eval/interactive2d.hpp"
#include "medicosam/eval/interactive3d.hpp"
#include "medicosam/eval/report.hpp"
#include "medicosam/eval/semantic.hpp"
#include "medicosam/segment/segmenter.hpp"
#include "medicosam/train/semantic_net.hpp"

namespace medicosam::cli {
namespace fs = std::filesystem;

namespace {

struct EvalArgs {
  std::vector<std::string> models;
  std::vector<std::string> data;
  std::vector<std::string> baselines;
  std::string split = "test";
  std::string protocol = "interactive2d";
  std::string out;
  int threads = 0;
  std::string device = "cpu";
  // interactive2d
  int iterations = 8;
  std::vector<std::string> starts{"point", "box"};
  uint64_t seed = 0;
  bool no_masks = false;
  int min_size = 0;  // 0 = the protocol's (2D 20, 3D 10)
  int64_t limit = 0;
  int resize = 0;
  std::string normalize;  // "" = the protocol's (2D minmax, 3D minmax:volume)
  bool instance_classes = false;
  double nsd_tolerance = 2.0;
  int overlays = 1;
  int batch_size = 32;
  bool quiet = false;
  // interactive3d
  std::string grid = "none";
  std::string projection = "single_point";
  double iou_threshold = 0.5;
  double box_extension = 0.05;
  std::string axis = "axial";
  // semantic
  std::string decoder;
  std::string classes = "foreground";
  // GrabCut
  int grabcut_iterations = 3;
  int grabcut_max_side = 256;
};

// A method to evaluate: a model checkpoint or a baseline.
struct Method {
  std::string name;
  std::string checkpoint;  // empty for baselines
  std::string baseline;    // "grabcut" or "boxfill"
};

std::string quote_if_needed(const std::string& s) {
  if (!s.empty() && s.find_first_of(" \t\"'$`\\") == std::string::npos) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The command line as it would reproduce this report (canonical order).
std::string command_line(const EvalArgs& a) {
  std::ostringstream s;
  s << "medicosam eval";
  for (const auto& m : a.models) s << " --model " << quote_if_needed(m);
  for (const auto& b : a.baselines) s << " --baseline " << b;
  for (const auto& d : a.data) s << " --data " << quote_if_needed(d);
  s << " --split " << a.split << " --protocol " << a.protocol;
  if (a.protocol == "interactive2d") {
    s << " --iterations " << a.iterations << " --starts ";
    for (size_t i = 0; i < a.starts.size(); ++i) s << (i ? "," : "") << a.starts[i];
    if (a.seed) s << " --seed " << a.seed;
    if (a.no_masks) s << " --no-masks";
    if (a.resize) s << " --resize " << a.resize;
  } else if (a.protocol == "interactive3d") {
    s << " --starts ";
    for (size_t i = 0; i < a.starts.size(); ++i) s << (i ? "," : "") << a.starts[i];
    s << " --projection " << a.projection << " --iou-threshold " << a.iou_threshold
      << " --box-extension " << a.box_extension << " --grid-search " << a.grid;
    if (a.axis != "axial") s << " --axis " << a.axis;
    if (a.seed) s << " --seed " << a.seed;
  } else if (a.protocol == "semantic") {
    if (!a.decoder.empty()) s << " --decoder " << quote_if_needed(a.decoder);
    s << " --classes " << a.classes;
  }
  if (a.min_size) s << " --min-size " << a.min_size;
  if (a.limit) s << " --limit " << a.limit;
  if (!a.normalize.empty()) s << " --normalize " << a.normalize;
  if (a.instance_classes) s << " --instance-classes";
  s << " --out " << quote_if_needed(a.out);
  return s.str();
}

std::vector<Method> methods_of(const EvalArgs& a) {
  std::vector<Method> out;
  auto unique_name = [&](std::string n) {
    std::string candidate = n;
    for (int k = 2;; ++k) {
      bool taken = false;
      for (const auto& m : out) taken |= m.name == candidate;
      if (!taken) return candidate;
      candidate = n + "-" + std::to_string(k);
    }
  };
  std::vector<std::string> models = a.models;
  if (models.empty() && a.baselines.empty()) models.push_back(default_model_path());
  for (const auto& m : models) {
    if (!fs::exists(m)) throw InputError("--model '" + m + "': no such file");
    out.push_back({unique_name(fs::path(m).stem().string()), m, ""});
  }
  for (const auto& b : a.baselines) out.push_back({unique_name(b), "", b});
  return out;
}

std::unique_ptr<segment::ImageSegmenter> make_segmenter(const Method& m, const EvalArgs& a) {
  if (m.baseline == "boxfill") return std::make_unique<eval::BoxFillSegmenter>(m.name);
  if (!m.baseline.empty()) {
    eval::GrabCutOptions o;
    o.iterations = a.grabcut_iterations;
    o.max_side = a.grabcut_max_side;
    return std::make_unique<eval::GrabCutSegmenter>(o, m.name);
  }
  auto predictor = std::make_shared<predict::SamPredictor>(
      m.checkpoint, predict::PredictorOptions{a.threads, a.device});
  return std::make_unique<segment::SamImageSegmenter>(predictor, m.name);
}

void print_summary(const std::vector<eval::Interactive2DResult>& results) {
  std::printf("%-24s %-24s %7s %7s %7s %7s %7s\n", "dataset", "method", "images", "Point", "Box",
              "I_P", "I_B");
  auto f = [](const std::optional<double>& v) {
    return v ? eval::format_number(*v, 3) : std::string("-");
  };
  for (const auto& r : results) {
    const auto s = eval::summarize(r);
    std::printf("%-24s %-24s %7d %7s %7s %7s %7s\n", r.dataset.c_str(), r.method.c_str(), r.images,
                f(s.point).c_str(), f(s.box).c_str(), f(s.i_p).c_str(), f(s.i_b).c_str());
  }
}

void run_interactive2d(const EvalArgs& a, const std::vector<Method>& methods) {
  eval::Dataset2DOptions dopts;
  dopts.split = a.split;
  dopts.limit = a.limit;
  dopts.resize_to = a.resize;
  dopts.instance_classes = a.instance_classes;
  dopts.normalization = io::parse_normalization(a.normalize.empty() ? "minmax" : a.normalize);
  std::vector<eval::Dataset2D> datasets;
  for (const auto& d : a.data) {
    datasets.push_back(eval::Dataset2D::open(d, dopts));
    if (datasets.back().size() == 0) {
      throw InputError("--data '" + d + "': no images with ground truth in split '" + a.split +
                       "'");
    }
  }
  eval::Interactive2DOptions o;
  o.starts.clear();
  for (const auto& s : a.starts) o.starts.push_back(eval::parse_start(s));
  o.n_iterations = a.iterations;
  o.use_masks = !a.no_masks;
  o.seed = a.seed;
  o.min_object_size = a.min_size > 0 ? a.min_size : 20;
  o.nsd_tolerance_mm = a.nsd_tolerance;
  o.batch_size = a.batch_size;
  o.progress = !a.quiet;

  eval::ReportOptions ropts;
  ropts.command = command_line(a);
  ropts.notes.push_back(
      a.resize > 0
          ? "Images and masks resized directly to " + std::to_string(a.resize) + "x" +
                std::to_string(a.resize) + " (the paper's preprocessing), Dice at that size."
          : "Images evaluated at their own size (the predictor does SAM's resize); Dice "
            "at the image's size.");
  ropts.notes.push_back("Intensity normalisation: " + io::to_string(dopts.normalization) + ".");
  for (const auto& m : methods) {
    if (m.baseline == "boxfill") {
      ropts.notes.push_back(
          "boxfill: the filled prompt box (every pixel whose centre lies in the tight box), the "
          "trivial baseline a model must beat; box start only, corrective clicks change nothing.");
    }
    if (m.baseline == "grabcut") {
      ropts.notes.push_back(
          "grabcut: OpenCV GrabCut, " + std::to_string(a.grabcut_iterations) +
          " iterations per call, " +
          (a.grabcut_max_side > 0 ? "region of interest downscaled to at most " +
                                        std::to_string(a.grabcut_max_side) + " px"
                                  : std::string("full resolution")) +
          "; box = GrabCut's rectangle; clicks = sure foreground/background discs; the point "
          "start uses a prior square (20% of the shorter image side) and is weak by construction.");
    }
  }

  std::vector<eval::Interactive2DResult> results;
  std::vector<eval::OverlayRecord> overlays;
  fs::create_directories(a.out);
  for (const auto& m : methods) {
    auto seg = make_segmenter(m, a);
    auto mo = o;
    if (m.baseline == "boxfill") {
      // The filled box has no point start: it runs the box start (if asked for) only.
      mo.starts.erase(std::remove(mo.starts.begin(), mo.starts.end(), eval::StartPrompt::kPoint),
                      mo.starts.end());
      if (mo.starts.empty()) {
        throw InputError("--baseline boxfill fills the prompt box: it needs the box start "
                         "(--starts box)");
      }
    }
    for (const auto& ds : datasets) {
      results.push_back(eval::run_interactive2d(*seg, ds, mo));
      const auto ov =
          eval::write_interactive2d_overlays(a.out, *seg, ds, results.back(), a.overlays);
      overlays.insert(overlays.end(), ov.begin(), ov.end());
      // Rewritten after every run: an interrupted evaluation leaves a valid partial report.
      eval::write_interactive2d_report(a.out, results, overlays, ropts);
    }
  }
  print_summary(results);
  std::printf("report: %s\n", (fs::path(a.out) / "summary.md").string().c_str());
}

void run_interactive3d(const EvalArgs& a, const std::vector<Method>& methods) {
  for (const auto& m : methods)
    if (m.baseline == "boxfill")
      throw InputError("--baseline boxfill is a 2D baseline (a filled box carried through "
                       "propagation stays that box); use it with --protocol interactive2d");
  std::vector<eval::Dataset3D> datasets;
  for (const auto& d : a.data) datasets.push_back(eval::Dataset3D::open(d, a.split, a.limit));
  eval::Interactive3DOptions o;
  o.starts.clear();
  for (const auto& s : a.starts) o.starts.push_back(eval::parse_start(s));
  o.axis = io::parse_axis(a.axis);
  if (!a.normalize.empty()) o.normalization = io::parse_normalization(a.normalize);
  if (a.min_size > 0) o.min_size = a.min_size;
  o.fixed.projection = segment::parse_projection(a.projection);
  o.fixed.iou_threshold = a.iou_threshold;
  o.fixed.box_extension = a.box_extension;
  o.grid = eval::parse_grid_search(a.grid);
  o.seed = a.seed;
  o.nsd_tolerance_mm = a.nsd_tolerance;
  o.progress = !a.quiet;

  eval::ReportOptions ropts;
  ropts.command = command_line(a);
  ropts.notes.push_back("Intensity normalisation: " + io::to_string(o.normalization) + ".");
  for (const auto& m : methods) {
    if (m.baseline == "grabcut") {
      ropts.notes.push_back(
          "grabcut: OpenCV GrabCut per slice through the same propagation (box and point prompts "
          "as in 2D; mask prompts are ignored).");
    }
  }
  std::vector<eval::Interactive3DResult> results;
  fs::create_directories(a.out);
  for (const auto& m : methods) {
    auto seg = make_segmenter(m, a);
    for (const auto& ds : datasets) {
      results.push_back(eval::run_interactive3d(*seg, ds, o));
      eval::write_interactive3d_report(a.out, results, ropts);
    }
  }
  std::printf("%-28s %-24s %-6s %8s %8s %8s %10s\n", "dataset", "method", "start", "volumes",
              "Dice", "HD95", "grid Dice");
  for (const auto& r : results)
    for (const auto& s : eval::summarize(r)) {
      std::printf("%-28s %-24s %-6s %8d %8s %8s %10s\n", r.dataset.c_str(), r.method.c_str(),
                  eval::start_name(s.start), s.n_volumes, eval::format_number(s.dice, 3).c_str(),
                  eval::format_number(s.hd95, 1).c_str(),
                  s.grid_dice ? eval::format_number(*s.grid_dice, 3).c_str() : "-");
    }
  std::printf("report: %s\n", (fs::path(a.out) / "summary.md").string().c_str());
}

// A semantic model (SAM encoder + UNETR head, or U-Net) in the semantic protocol.
class NetSegmenter : public eval::SemanticSegmenter {
 public:
  NetSegmenter(train::SemanticNet net, std::string name) : net_(std::move(net)), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  int num_classes() const override { return net_.num_classes(); }
  std::vector<uint16_t> segment(const uint8_t* rgb, int h, int w) override { return net_.segment(rgb, h, w); }
  const train::SemanticNet& net() const { return net_; }

 private:
  train::SemanticNet net_;
  std::string name_;
};

void run_semantic(const EvalArgs& a) {
  if (!a.baselines.empty())
    throw InputError("--protocol semantic: --baseline " + a.baselines.front() +
                     " is interactive; the semantic baseline is a U-Net checkpoint given with --model "
                     "(train it with objective semantic, semantic.model unet)");
  if (a.models.empty())
    throw InputError("--protocol semantic needs --model: a checkpoint with a UNETR head or a medicosam U-Net");
  const auto methods = methods_of(a);
  std::vector<std::pair<train::DatasetSpec, std::unique_ptr<train::SampleSource>>> datasets;
  const std::string normalize = a.normalize.empty() ? "percentile" : a.normalize;
  for (const auto& d : a.data) {
    train::DatasetSpec spec;
    spec.type = "folder";
    spec.path = d;
    spec.split = a.split;
    spec.normalize = normalize;
    spec.classes = a.classes;
    spec.limit = a.limit;
    auto src = train::open_dataset(spec);
    if (src->size() == 0) throw InputError("--data '" + d + "': no images in split '" + a.split + "'");
    datasets.emplace_back(spec, std::move(src));
  }
  eval::SemanticEvalOptions o;
  o.nsd_tolerance_mm = a.nsd_tolerance;
  o.progress = !a.quiet;
  eval::ReportOptions ropts;
  ropts.title = "medicosam semantic evaluation";
  ropts.command = command_line(a);
  ropts.notes.push_back("Intensity normalisation: " + normalize +
                        " (must match the model's training data); class maps: " + a.classes + ".");
  std::vector<eval::SemanticResult> results;
  fs::create_directories(a.out);
  for (const auto& m : methods) {
    NetSegmenter seg(train::SemanticNet::load(m.checkpoint, a.decoder, a.device, a.threads), m.name);
    ropts.notes.push_back(m.name + ": " + seg.net().describe());
    for (const auto& [spec, src] : datasets) {
      results.push_back(eval::run_semantic(seg, *src, spec.label(), o));
      eval::write_semantic_report(a.out, results, o, ropts);  // a valid partial report after every run
    }
  }
  std::printf("%-28s %-24s %7s %9s  %s\n", "dataset", "method", "images", "mean Dice", "Dice per class");
  for (const auto& r : results) {
    std::string per;
    for (const auto& c : r.per_class()) per += (per.empty() ? "" : " ") + eval::format_number(c.dice, 3);
    std::printf("%-28s %-24s %7zu %9s  %s\n", r.dataset.c_str(), r.method.c_str(), r.images.size(),
                eval::format_number(r.mean_dice(), 3).c_str(), per.c_str());
  }
  std::printf("report: %s\n", (fs::path(a.out) / "summary.md").string().c_str());
}

void run_eval(const EvalArgs& a) {
  if (a.protocol == "semantic") {
    run_semantic(a);
    return;
  }
  const auto methods = methods_of(a);
  if (a.protocol == "interactive2d") {
    run_interactive2d(a, methods);
  } else {
    run_interactive3d(a, methods);
  }
}

}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval",
                                 "Evaluate models (and classical baselines) with MedicoSAM's "
                                 "protocols; writes a report folder");
  cmd->add_option("--model,-m", a->models,
                  "Checkpoint to evaluate (repeatable; default: the built-in model)");
  cmd->add_option("--data,-d", a->data,
                  "Dataset folder: images/ + masks/ or instances/ [+ split.json] (repeatable)")
      ->required();
  cmd->add_option("--baseline", a->baselines,
                  "Baseline in the same harness (repeatable): grabcut (OpenCV GrabCut) or boxfill "
                  "(the filled prompt box; box start only, clicks change nothing)")
      ->check(CLI::IsMember({"grabcut", "boxfill"}));
  cmd->add_option("--split", a->split,
                  "Split of split.json to use, or 'all' (default test; all without split.json)");
  cmd->add_option("--protocol", a->protocol, "interactive2d (default), interactive3d, semantic or amg")
      ->check(CLI::IsMember({"interactive2d", "interactive3d", "semantic", "amg"}));
  cmd->add_option("--out,-o", a->out, "Report folder (created; files in it are replaced)")
      ->required();
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", a->device, "cpu or cuda (when libtorch has CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--iterations", a->iterations,
                  "Iterations incl. the start prompt (default 8: Point/Box + 7 rounds)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--starts", a->starts, "Start prompts: point,box (default both)")
      ->delimiter(',')
      ->check(CLI::IsMember({"point", "box"}));
  cmd->add_option("--seed", a->seed, "Seed of the corrective clicks (default 0)");
  cmd->add_flag("--no-masks", a->no_masks,
                "Do not feed the previous low-res logits back as mask input");
  cmd->add_option("--min-size", a->min_size,
                  "Smallest object prompted, px (2D: connected component, default 20; 3D: in its "
                  "middle slice, "
                  "default 10)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--limit", a->limit, "First N images of each dataset's split (default all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--resize", a->resize,
                  "Resize images and masks to NxN first (the paper: 1024); default 0 = keep each "
                  "image's size")
      ->check(CLI::Range(0, 4096));
  cmd->add_flag("--instance-classes", a->instance_classes,
               "2D: read instances/ first and make each instance id a class (for datasets whose "
               "ids name the same structure in every image, e.g. organs); default: masks/ first");
  cmd->add_option(
      "--normalize", a->normalize,
      "Intensity normalisation (io spec; default minmax as MedicoSAM, minmax:volume for 3D)");
  cmd->add_option("--nsd-tolerance", a->nsd_tolerance,
                  "NSD tolerance in mm (px for PNG/JPEG; default 2)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--overlays", a->overlays,
                  "Best and worst cases drawn per dataset, method and start (default 1)")
      ->check(CLI::Range(0, 20));
  cmd->add_option("--batch-size", a->batch_size, "Objects per decoder call (default 32)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option(
         "--grid-search", a->grid,
         "3D: also the paper's per-volume grid search over propagation settings (an oracle): none "
         "(default), small (45 settings) or full (275)")
      ->check(CLI::IsMember({"none", "small", "full"}));
  cmd->add_option("--projection", a->projection,
                  "3D fixed setting: box, mask, points, points_and_mask or single_point (default)")
      ->check(CLI::IsMember({"box", "mask", "points", "points_and_mask", "single_point"}));
  cmd->add_option("--iou-threshold", a->iou_threshold,
                  "3D fixed setting: stop below this IoU (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--box-extension", a->box_extension,
                  "3D fixed setting: box extension (default 0.05)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--axis", a->axis, "3D: slice axis, axial (default), coronal or sagittal")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--grabcut-iterations", a->grabcut_iterations,
                  "GrabCut iterations per call (default 3)")
      ->check(CLI::Range(1, 20));
  cmd->add_option("--grabcut-max-side", a->grabcut_max_side,
                  "GrabCut works on the region of interest downscaled to this side (default 256; 0 "
                  "= full size)")
      ->check(CLI::Range(0, 8192));
  cmd->add_option("--decoder", a->decoder,
                  "semantic: a separate UNETR decoder file for the --model checkpoint(s)");
  cmd->add_option("--classes", a->classes,
                  "semantic: ground-truth classes: foreground (default: every labelled pixel is class 1) "
                  "or ids (label values are class ids; instances/ if present, else masks/)")
      ->check(CLI::IsMember({"foreground", "ids"}));
  cmd->add_flag("--quiet,-q", a->quiet, "No progress bars");
  auto amg = std::make_shared<AmgEvalArgs>();  // --protocol amg (cmd_eval_amg.cpp)
  add_amg_eval_options(*cmd, *amg);
  cmd->callback([a, amg]() {
    if (a->protocol == "amg") {
      run_amg_eval({a->models, a->data, a->baselines, a->split, a->limit, a->normalize, a->min_size, a->out,
                    a->threads, a->device, a->quiet},
                   *amg);
      return;
    }
    run_eval(*a);
  });
}

}  // namespace medicosam::cli
