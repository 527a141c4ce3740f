#pragma once
// Carrying one object through a stack of 2D slices (micro_sam's
// `segment_mask_in_volume`): prompts for slice z are derived from the mask of
// its neighbour (box, mask logits, distance-maximum points or a single centre
// point), the decoder is called once per slice, and propagation outward stops
// where the new mask's IoU with its neighbour drops below a threshold. Gaps
// between annotated slices are filled from both ends towards the middle.
//
// Works over the abstract SliceSegmenter, so the same logic runs on cached SAM
// embeddings (EmbeddingCache), on any ImageSegmenter that encodes slices on
// demand, and on oracle test doubles. Slices are whatever the segmenter says
// they are: axial, coronal or sagittal cuts of a volume (see io/slice.hpp),
// frames of a time series, ...
//
// Torch-free.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/prompt_sampling.hpp"
#include "medicosam/segment/segmenter.hpp"

namespace medicosam::segment {

// A stack of equally sized 2D slices that prompts can be decoded on.
class SliceSegmenter {
 public:
  virtual ~SliceSegmenter() = default;
  virtual int num_slices() const = 0;
  // Height and width of every slice (and of every mask).
  virtual predict::Size2 slice_size() const = 0;
  // Side of the square low-res logits accepted as mask input (0: no mask prompts).
  virtual int low_res_size() const = 0;
  // Decodes one prompt on slice z (0 <= z < num_slices()).
  virtual predict::Prediction predict(int z, const predict::Prompt& prompt,
                                      bool multimask_output) = 0;
  // One prompt per request, each on its own slice, decoded together where the
  // segmenter can batch them (SAM on stored embeddings: one decoder call); the
  // default decodes them one after another in the given order. Answers are in
  // request order.
  struct Request {
    int z = 0;
    predict::Prompt prompt;
  };
  virtual std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests,
                                                        bool multimask_output);
};

// SliceSegmenter over an ImageSegmenter (SAM predictor, oracle, baseline) and a
// function that renders slice z as 8-bit RGB. A slice is encoded when it is
// first needed and kept while it stays current (propagation visits each slice
// once, so one slice is kept).
class ImageStackSegmenter : public SliceSegmenter {
 public:
  using SliceImage = std::function<io::RGB8Image(int z)>;
  ImageStackSegmenter(ImageSegmenter& segmenter, int num_slices, predict::Size2 slice_size,
                      SliceImage image);
  int num_slices() const override { return num_slices_; }
  predict::Size2 slice_size() const override { return size_; }
  int low_res_size() const override { return segmenter_.low_res_size(); }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask_output) override;
  // How many slices were encoded so far (for tests and timings).
  int encoded_slices() const { return encoded_; }

 private:
  ImageSegmenter& segmenter_;
  int num_slices_;
  predict::Size2 size_;
  SliceImage image_;
  int current_ = -1;
  int encoded_ = 0;
};

// How the mask of the previous slice becomes the prompt for the next one
// (micro_sam's projection modes).
enum class Projection { kBox, kMask, kPoints, kPointsAndMask, kSinglePoint };
// "box" | "mask" | "points" | "points_and_mask" | "single_point"; InputError otherwise.
Projection parse_projection(const std::string& name);
const char* projection_name(Projection p);

struct ProjectionFlags {
  bool use_box = false;
  bool use_mask = false;
  bool use_points = false;
  bool single_point = false;  // with use_points: only the innermost point
};
// box = (box), mask = (box + mask), points = (points), points_and_mask =
// (points + mask), single_point = (one point).
ProjectionFlags projection_flags(Projection p);

// --- prompts derived from a mask (micro_sam prompt_based_segmentation helpers)

// The mask's tight box [min_x, min_y, max_x+1, max_y+1) grown by `extension`
// on each side (>= 1: pixels; < 1: fraction of the box side), clipped to the
// mask and rounded half-to-even to integers. None for an empty mask.
std::optional<predict::Box> box_from_mask(const BinaryMask& mask, double extension = 0.0);

// Positive points at the maxima of the (Gaussian-smoothed, sigma 1) distance to
// the object's outer boundary inside the object (peak_local_max, min_distance
// 3), negative points at the maxima outside it within the extended box
// (min_distance 5). With `single_point` only the innermost point (the argmax)
// is returned. Coordinates are integer pixel indices (x, y); empty for an
// empty mask.
std::vector<predict::Point> points_from_mask(const BinaryMask& mask, double box_extension = 0.0,
                                             bool single_point = false);

// The mask as low-res logits for the decoder's mask input: the binary mask is
// resized (bilinear, antialiased) so its longest side is `low_res_size`,
// re-binarised at 0.5, zero-padded bottom/right to a square and mapped to
// +-ln((1-1e-3)/1e-3) (micro_sam's _compute_logits_from_mask).
std::vector<float> mask_logits_from_mask(const BinaryMask& mask, int low_res_size);

// The whole prompt for projecting `mask` onto a neighbouring slice. Empty
// prompt for an empty mask.
predict::Prompt prompt_from_mask(const BinaryMask& mask, const ProjectionFlags& flags,
                                 double box_extension, int low_res_size);

// Segments slice z from a mask prompt (micro_sam `segment_from_mask`, single
// mask output). An empty mask gives an empty result without a decoder call.
BinaryMask segment_from_mask(SliceSegmenter& segmenter, int z, const BinaryMask& mask,
                             const ProjectionFlags& flags, double box_extension);

// micro_sam's compute_iou: |A and B| / (|A or B| + 1e-7) (0 for two empty masks).
double mask_iou(const BinaryMask& a, const BinaryMask& b);

// --- propagation

struct PropagationOptions {
  // micro_sam annotator defaults.
  ProjectionFlags projection = projection_flags(Projection::kSinglePoint);
  double iou_threshold = 0.5;   // outward propagation stops below this IoU with the previous slice
  double box_extension = 0.05;  // see box_from_mask
  // The lowest / highest annotated slice is a stop annotation (the object
  // ends there; its mask is empty): do not propagate beyond it.
  bool stop_lower = false;
  bool stop_upper = false;
  // Called after each decoded slice (progress bars, cancellation by throwing).
  std::function<void(int z)> on_slice;
};

// One decoder step of a propagation. Every independent walk (downwards,
// upwards, each end of each gap) advances one slice per round and a round's
// slices are decoded in one predict_many call, so steps of different walks
// interleave; within a walk they are in order.
struct PropagationStep {
  int z = 0;            // slice decoded
  int from = 0;         // slice whose mask gave the prompt (-1: OR of both neighbours)
  double iou = 0.0;     // IoU with the prompting mask (outward steps)
  bool written = true;  // false: stopped here by the IoU threshold, slice left as it was
};

struct PropagationResult {
  int z_min = 0;  // lowest and highest slice the object now reaches (annotated or propagated)
  int z_max = 0;
  std::vector<PropagationStep> steps;
};

// Propagates the object in `segmentation` (one mask per slice, all of
// slice_size(); the annotated slices filled in) from `annotated_slices`
// (any order, duplicates ignored) through the stack, with micro_sam's
// `segment_mask_in_volume` order and semantics:
//  1. below the lowest annotated slice down to 0 (unless stop_lower), and
//  2. above the highest up to the last slice (unless stop_upper), each
//     stopping *before* the first slice whose IoU with its predecessor is
//     below the threshold (that slice is not written);
//  3. between consecutive annotated slices without a threshold: adjacent ->
//     nothing; lower one a stop -> downwards from the upper; upper one a stop
//     -> upwards from the lower; one slice between -> prompted with the OR of
//     both; larger gaps -> from both ends to the middle (even gaps: the middle
//     slice from the OR of its two neighbours).
// Throws InputError for no annotated slices, indices out of range, or masks of
// the wrong size.
PropagationResult segment_mask_in_volume(SliceSegmenter& segmenter,
                                         std::vector<BinaryMask>& segmentation,
                                         std::vector<int> annotated_slices,
                                         const PropagationOptions& options = {});

}  // namespace medicosam::segment

namespace medicosam::segment {

// Segments slice z from user prompts with micro_sam's choice of outputs: a
// single positive point asks for 3 masks and keeps the one with the highest
// predicted IoU (segment_from_points); anything else decodes one mask.
BinaryMask segment_from_prompt(SliceSegmenter& segmenter, int z, const predict::Prompt& prompt);

}  // namespace medicosam::segment
