#pragma once
// MedicoSAM's 2D interactive evaluation protocol (REFERENCE.md section 1.5,
// micro_sam `_run_inference_with_iterative_prompting_for_image`), over any
// ImageSegmenter (SAM, GrabCut, oracle):
//
//   per image and class: the connected components of at least
//   `min_object_size` px are the objects (none -> the class is skipped);
//   iteration 0: per object one positive point at its centre (maximum of the
//   distance to the boundary; multimask, best predicted IoU kept) or its tight
//   box (single mask);
//   iterations 1..n-1: per object one positive click from its false negatives
//   and one negative click from its false positives (fallbacks as micro_sam's
//   IterativePromptGenerator) are appended; the box is kept; with `use_masks`
//   the previous low-res logits are fed back as mask input;
//   after every iteration the union of the objects' masks is compared with the
//   class's full ground truth (Dice, IoU, NSD, HD95).
//
// Per dataset: per class the mean over images, then the mean over classes
// (MedicoSAM's multi-class rule). Point = iteration 0 of the point start,
// Box = iteration 0 of the box start, I_P / I_B = the last iteration.
// Corrective clicks are random but seeded per (seed, dataset, image, class,
// start): the same seed gives the same numbers, whatever the order of work.
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/eval/dataset.hpp"
#include "medicosam/eval/metrics.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::eval {

enum class StartPrompt { kPoint, kBox };
const char* start_name(StartPrompt s);  // "point", "box"
// "point" | "box"; InputError otherwise.
StartPrompt parse_start(const std::string& s);

struct Interactive2DOptions {
  std::vector<StartPrompt> starts{StartPrompt::kPoint, StartPrompt::kBox};
  int n_iterations = 8;  // iteration 0 = start prompt, then n-1 correction rounds
  int min_object_size =
      20;  // px; smaller components are not prompted (still count as ground truth)
  // Feed the previous low-res logits back as mask input (segmenters with
  // low_res_size() > 0). The paper's figures read the "with masks" runs.
  bool use_masks = true;
  uint64_t seed = 0;
  int batch_size = 32;            // objects per decoder call
  double nsd_tolerance_mm = 2.0;  // mm (pixels for raster images without spacing)
  bool surface_metrics = true;    // NSD and HD95 (cheap; off skips them)
  bool progress = true;           // progress bar on stderr (run_interactive2d)
};

// One image x class x start prompt.
struct CaseResult {
  std::string dataset, image, class_name;
  StartPrompt start = StartPrompt::kPoint;
  int n_objects = 0;
  int64_t gt_pixels = 0;
  std::vector<Metrics> iterations;  // one per iteration
  double decode_seconds = 0.0;      // segmenter calls for this case
};

// A case with everything needed to draw it: per iteration the union mask and
// the prompts given to the segmenter.
struct CaseDetail {
  CaseResult result;
  std::vector<segment::BinaryMask> predictions;       // per iteration
  std::vector<std::vector<predict::Prompt>> prompts;  // per iteration, per object
};

struct Interactive2DResult {
  std::string method;   // segmenter name
  std::string dataset;  // dataset name
  std::string split;    // Dataset2D::split_description()
  Interactive2DOptions options;
  std::vector<CaseResult> cases;
  int images = 0;             // images evaluated
  int images_no_objects = 0;  // images whose classes had no object >= min_object_size
  double encode_seconds = 0.0;
  double decode_seconds = 0.0;
  double wall_seconds = 0.0;
};

// Aggregates for one start prompt.
struct StartSummary {
  StartPrompt start = StartPrompt::kPoint;
  int n_cases = 0;
  int n_images = 0;
  std::vector<std::string> classes;
  // Per iteration, class-mean of image-means. hd95 ignores undefined
  // (infinite) values; hd95_undefined counts them per iteration.
  std::vector<double> dice, iou, nsd, hd95;
  std::vector<int> hd95_undefined;
  // Per class and iteration: mean Dice (classes in the order above).
  std::vector<std::vector<double>> class_dice;
  // Corrections that made things worse (a Dice drop of more than
  // kWorseDiceDrop): per iteration i >= 1 the share of cases whose Dice fell
  // from iteration i-1 to i (NaN at iteration 0); the share over all
  // (case, correction round) pairs; the share of cases that end below their
  // start. NaN without correction rounds.
  std::vector<double> worse_share;
  double worse_rounds = std::nan("");
  double worse_final = std::nan("");
};

// Dice drop that counts as "worse" in StartSummary (smaller changes are
// rounding and one-pixel flicker).
constexpr double kWorseDiceDrop = 1e-3;

struct Interactive2DSummary {
  std::string method, dataset;
  std::vector<StartSummary> starts;
  // The paper's four numbers (nullopt where that start was not run).
  std::optional<double> point, box, i_p, i_b;
  const StartSummary* find(StartPrompt s) const;
};
Interactive2DSummary summarize(const Interactive2DResult& result);

// Runs every class x start prompt of one sample (sets the segmenter's image
// once). The segmenter's name is not used; `dataset` only seeds the RNG and
// labels the results.
std::vector<CaseResult> run_interactive2d_sample(segment::ImageSegmenter& segmenter,
                                                 const Sample2D& sample, const std::string& dataset,
                                                 const Interactive2DOptions& options);

// One case with its masks and prompts (for overlays). Same seed, same
// numbers as in run_interactive2d_sample. With `set_image` false the
// segmenter's current image must already be `sample.rgb`. Returns nullopt if
// the class has no object >= min_object_size; throws InputError for an
// unknown class.
std::optional<CaseDetail> run_interactive2d_case(segment::ImageSegmenter& segmenter,
                                                 const Sample2D& sample, const std::string& dataset,
                                                 const std::string& class_name, StartPrompt start,
                                                 const Interactive2DOptions& options,
                                                 bool set_image = true);

// The whole dataset, with a progress bar (options.progress). `on_image` (if
// set) sees each image's results as they come (e.g. for logging).
Interactive2DResult run_interactive2d(
    segment::ImageSegmenter& segmenter, const Dataset2D& dataset,
    const Interactive2DOptions& options,
    const std::function<void(const std::vector<CaseResult>&)>& on_image = {});
// Any sample source (a trainer's validation set, in-memory samples):
// `load_sample(i)` for i in [0, n_samples).
Interactive2DResult run_interactive2d(
    segment::ImageSegmenter& segmenter, const std::string& dataset_name, size_t n_samples,
    const std::function<Sample2D(size_t)>& load_sample, const Interactive2DOptions& options,
    const std::function<void(const std::vector<CaseResult>&)>& on_image = {});

// Segmenters that may look at the truth (oracles, test doubles) implement this;
// the protocol hands them each class mask before prompting it.
class GroundTruthAware {
 public:
  virtual ~GroundTruthAware() = default;
  virtual void set_ground_truth(const segment::BinaryMask& truth) = 0;
};

// The RNG seed of one case (exposed for tests and reproducibility notes).
uint64_t case_seed(uint64_t seed, const std::string& dataset, const std::string& image,
                   const std::string& class_name, StartPrompt start);

}  // namespace medicosam::eval
