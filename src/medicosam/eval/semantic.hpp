#pragma once
// The semantic segmentation protocol (`eval --protocol semantic`, MedicoSAM's
// semantic experiments, REFERENCE §1.7): a model labels every image of a
// dataset without prompts (argmax over its classes); per image and class c
// the prediction == c is compared with the ground truth == c: Dice, IoU, NSD at
// a tolerance and HD95 (mm, with the image's spacing; metrics.hpp).
//
// Aggregation: a class's Dice / IoU / NSD are the means over the images where
// the class is in the ground truth or the prediction (both empty: no evidence
// either way, left out - nnU-Net's convention); its HD95 the mean over the
// images where both are non-empty (HD95 is undefined otherwise; how often that
// happened is reported). Mean Dice = mean over the classes with any such image.
//
// Data come from the training datasets' loader (train/datasets.hpp), so the
// class maps are read exactly as semantic training reads them (DatasetSpec
// "classes": "foreground" or "ids").
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/eval/metrics.hpp"
#include "medicosam/eval/report.hpp"
#include "medicosam/train/datasets.hpp"

namespace medicosam::eval {

class SemanticSegmenter {
 public:
  virtual ~SemanticSegmenter() = default;
  virtual std::string name() const = 0;
  virtual int num_classes() const = 0;  // incl. background (1: one foreground channel)
  // 8-bit RGB (height x width x 3) -> label map (height x width).
  virtual std::vector<uint16_t> segment(const uint8_t* rgb, int height, int width) = 0;
};

struct SemanticEvalOptions {
  double nsd_tolerance_mm = 2.0;
  std::array<double, 2> spacing{1.0, 1.0};  // mm per pixel (x, y); 1 for raster images
  bool progress = true;
};

struct SemanticImageResult {
  std::string image;
  int height = 0, width = 0;
  // Per foreground class k (class id k + 1): metrics, and whether the class is
  // in the ground truth / the prediction.
  std::vector<Metrics> metrics;
  std::vector<uint8_t> in_gt, in_pred;
  double seconds = 0;  // the model's time for this image
};

struct SemanticClassSummary {
  int class_id = 1;
  int images = 0;        // images where the class is in the ground truth or the prediction
  int both_present = 0;  // images where HD95 is defined
  double dice = 0, iou = 0, nsd = 0, hd95 = 0;  // NaN when images / both_present is 0
};

struct SemanticResult {
  std::string dataset, method;
  int num_classes = 2;
  std::vector<SemanticImageResult> images;
  double seconds = 0;  // wall time of the whole run

  std::vector<SemanticClassSummary> per_class() const;
  double mean_dice() const;  // over classes with images > 0; NaN if none
};

// Runs `model` over every sample of `data` (ground truth = the samples'
// class maps). InputError if the model's class count cannot hold a ground
// truth class id.
SemanticResult run_semantic(SemanticSegmenter& model, const train::SampleSource& data,
                            const std::string& dataset_name, const SemanticEvalOptions& options = {});

// Report folder: summary.md, summary.json, summary.csv (dataset, method,
// class, images, dice, iou, nsd, hd95, ...), per_image.csv. Atomic writes.
void write_semantic_report(const std::string& out_dir, const std::vector<SemanticResult>& results,
                           const SemanticEvalOptions& options, const ReportOptions& report = {});

}  // namespace medicosam::eval
