#pragma once
// Prompt-based segmentation with a SAM model: an image is encoded once into an
// embedding, then any number of prompts (points, box, previous low-res logits)
// are decoded against it in milliseconds.
//
// Torch-free public API (pimpl): callers compile without torch headers.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/core/npy.hpp"
#include "medicosam/predict/transforms.hpp"

namespace medicosam::predict {

// A point prompt in original image pixels (x right, y down). label 1 marks the
// object, 0 the background.
struct Point {
  double x = 0, y = 0;
  int label = 1;
};

// A box prompt in original image pixels: x0,y0 top-left, x1,y1 bottom-right.
struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// Everything that prompts one object.
struct Prompt {
  std::vector<Point> points;
  std::optional<Box> box;
  // Previous low-res logits (low_res_size x low_res_size) fed back as mask input.
  std::optional<std::vector<float>> mask_input;
  bool empty() const { return points.empty() && !box && !mask_input; }
};

// The decoder's answer for one prompt.
struct Prediction {
  int height = 0, width = 0;  // original image size
  int num_masks = 0;
  std::vector<uint8_t> masks;           // num_masks x H x W, 0/1 (logit > threshold)
  std::vector<float> iou_predictions;   // num_masks
  int low_res_size = 0;
  std::vector<float> low_res_logits;    // num_masks x L x L
  std::vector<float> logits;            // num_masks x H x W, only with want_logits

  // Index of the mask with the highest predicted IoU.
  int best() const;
  // Copy of mask i (H x W).
  std::vector<uint8_t> mask(int i) const;
  std::vector<float> low_res(int i) const;
};

// Throws InputError if `p` is empty, has points or a box outside an image of
// `image_size`, a label other than 0/1, or a mask input that is not
// low_res_size^2 values (low_res_size 0 skips that check). `index` numbers the
// prompt in messages about batches.
void validate_prompt(const Prompt& p, Size2 image_size, int low_res_size = 0, size_t index = 0);

struct PredictorOptions {
  int threads = 0;             // 0 = all cores
  std::string device = "cpu";  // "cpu" or "cuda" (when libtorch has CUDA)
  // Precision: "fp32" (the reference numerics), "bf16" (bfloat16 matrix
  // products in the image encoder and in the decoder's products over image
  // tokens, float32 norms, residuals and logits; several times faster on CPUs
  // with avx512_bf16/AMX, slower where emulated) or "auto" (bf16 on a CPU with
  // native bfloat16, fp32 otherwise and on CUDA). Embeddings are float32 either
  // way. Anything else: InputError. The library default stays fp32; the CLI
  // and the server pass the user's --precision (default auto).
  std::string precision = "fp32";
};

// The image embedding and the geometry needed to decode against it.
class Embedding {
 public:
  Embedding();
  ~Embedding();
  Embedding(const Embedding&);
  Embedding& operator=(const Embedding&);
  Embedding(Embedding&&) noexcept;
  Embedding& operator=(Embedding&&) noexcept;

  bool empty() const;
  Size2 original_size() const;
  Size2 input_size() const;
  std::vector<int64_t> shape() const;  // (1, C, g, g)
  // float32 (1, C, g, g) array, e.g. for `medicosam embed --out`.
  NpyArray to_npy() const;
  // Wraps stored features (float32 or float16 (1, C, g, g)) for decoding.
  static Embedding from_npy(const NpyArray& features, Size2 original_size, Size2 input_size);

  struct Impl;
  std::shared_ptr<const Impl> impl;
};

struct ModelSummary {
  std::string path, format, layout, architecture;
  int64_t parameters = 0;
  int img_size = 0;          // model input side
  int embedding_size = 0;    // grid side
  int embedding_channels = 0;
  int low_res_size = 0;
  std::string precision;     // "fp32" or "bf16": what the encoder and decoder compute in
};

class SamPredictor {
 public:
  // Loads a checkpoint (any supported format and configuration).
  SamPredictor(const std::string& checkpoint, const PredictorOptions& options = {});
  ~SamPredictor();
  SamPredictor(SamPredictor&&) noexcept;
  SamPredictor& operator=(SamPredictor&&) noexcept;

  const ModelSummary& model() const;

  // Encodes an 8-bit image (HxWxC row-major, C = 1 gray or 3 RGB) with SAM's
  // preprocessing and makes it the current image.
  void set_image(const uint8_t* pixels, int height, int width, int channels);
  // Computes an embedding without changing the current one.
  Embedding encode(const uint8_t* pixels, int height, int width, int channels) const;
  // Makes a precomputed embedding current (e.g. from a cache).
  void set_embedding(const Embedding& e);
  const Embedding& embedding() const;

  // Decodes one prompt. Coordinates must lie inside the image (InputError otherwise).
  Prediction predict(const Prompt& prompt, bool multimask_output, bool want_logits = false) const;
  // Decodes many objects against the current embedding; prompts with the same
  // structure (point count, box, mask) go through the decoder in one call.
  std::vector<Prediction> predict_batch(const std::vector<Prompt>& prompts, bool multimask_output,
                                        bool want_logits = false) const;
  // Decodes against an explicit embedding instead of the current one (it must
  // fit this model: check_embedding). Does not change the predictor's state,
  // so several threads can decode on different images with one predictor.
  std::vector<Prediction> predict_batch(const Embedding& embedding, const std::vector<Prompt>& prompts,
                                        bool multimask_output, bool want_logits = false) const;
  // Decodes prompts[i] against embeddings[i]: one batch over several images of
  // the same size (e.g. the two slices that both directions of a propagation
  // reach at one step). Prompts of the same structure go through the decoder
  // together, so the per-call overheads and the GEMMs' small sizes are paid
  // once. Each embedding must fit this model (check_embedding) and all must
  // share one original size (InputError otherwise).
  std::vector<Prediction> predict_each(const std::vector<Embedding>& embeddings, const std::vector<Prompt>& prompts,
                                       bool multimask_output, bool want_logits = false) const;
  // InputError if `e` is empty or was not made by a model of this shape.
  void check_embedding(const Embedding& e) const;

  struct Impl;

 private:
  // Decodes prompts[i] on *embeddings[i] (all checked, one image size).
  std::vector<Prediction> decode(const std::vector<const Embedding*>& embeddings, const std::vector<Prompt>& prompts,
                                 bool multimask_output, bool want_logits) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace medicosam::predict
