#pragma once
// Automatic semantic segmentation: the UNETR decoder that micro_sam /
// MedicoSAM train on top of SAM's image encoder (torch_em's UNETR with
// use_skip_connection=False, REFERENCE §2.10), run on the encoder's neck
// output (B, 256, g, g) - so it also runs on cached embeddings - and turned
// into a label map on the original image.
//
// Its weights are micro_sam's `decoder_state` (the UNETR state dict without
// the encoder): keys deconv1..4.*, base.*, decoder.blocks.*, decoder.samplers.*,
// deconv_out.*, decoder_head.*, out_conv.*. Where they are found:
//   - a joint checkpoint {"model_state": ..., "decoder_state": ...}
//     (micro_sam export_custom_sam_model(with_segmentation_decoder=True),
//     JointSamTrainer checkpoints);
//   - a safetensors file with the SAM keys plus the head's keys under the
//     prefix "decoder_state." (what save_sam writes with a head);
//   - a separate decoder file (micro_sam's decoder_path): a plain state dict
//     (.pth) or safetensors, keys bare or prefixed "decoder_state.".
//
// Torch-free (pimpl); the modules are in unetr_module.hpp.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medicosam/core/npy.hpp"

namespace medicosam::model {

// Key prefix of the head's tensors in a safetensors file that also holds SAM.
inline constexpr const char* kDecoderStatePrefix = "decoder_state.";

// The shape of a UNETR head, derived from its tensors.
struct UnetrConfig {
  int64_t embed_dim = 256;         // channels of the encoder output it reads
  int64_t initial_features = 64;   // decoder features are 8f, 4f, 2f, f (512, 256, 128, 64)
  int64_t num_classes = 1;         // out_conv channels (MedicoSAM: classes incl. background)
  bool conv_transpose = false;     // upsampling by ConvTranspose2d(k2, s2) instead of bilinear + 1x1 conv
  // The decoder's feature counts, deepest first.
  std::vector<int64_t> features() const {
    return {8 * initial_features, 4 * initial_features, 2 * initial_features, initial_features};
  }
  // Output side / embedding grid side.
  static constexpr int64_t kUpscale = 16;
  // e.g. "UNETR decoder, 3 classes, features 512/256/128/64, bilinear upsampling"
  std::string describe() const;
};

// The head of a checkpoint, ready to segment.
class SemanticHead {
 public:
  // Reads the head of `checkpoint` (joint checkpoint or safetensors with
  // "decoder_state." keys), or of `decoder_file` when given (then the
  // checkpoint is not read). CheckpointError naming the file when there is no
  // head, or a key is missing, unexpected or mis-shaped.
  static SemanticHead load(const std::string& checkpoint, const std::string& decoder_file = "",
                           const std::string& device = "cpu");

  SemanticHead();
  ~SemanticHead();
  SemanticHead(SemanticHead&&) noexcept;
  SemanticHead& operator=(SemanticHead&&) noexcept;

  const UnetrConfig& config() const;
  const std::string& source() const;  // the file the weights came from

  // features: the image encoder's output (1, C, g, g), float32 or float16, as
  // predict::Embedding::to_npy() or the embedding cache give it. input_h/w:
  // the image after resize-longest-side (inside the img_size square), and
  // original_h/w the image the embedding was made from. Returns the label map
  // (original_h x original_w, row-major): argmax over the classes, or
  // logit > 0 (sigmoid > 0.5) for a one-class head. InputError if the
  // features do not fit the head.
  std::vector<uint16_t> segment(const NpyArray& features, int input_h, int input_w, int original_h,
                                int original_w, int img_size) const;
  // The same, but the per-class logits (C x original_h x original_w, float32).
  NpyArray logits(const NpyArray& features, int input_h, int input_w, int original_h, int original_w,
                  int img_size) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace medicosam::model
