#pragma once
// A trained semantic segmentation network, ready for inference on 2D images:
// SAM's image encoder + a UNETR head (any checkpoint with a head: micro_sam /
// MedicoSAM joint exports, our trainer's best.pt, safetensors with
// "decoder_state." keys, or a SAM checkpoint plus a separate decoder file), or
// our U-Net baseline (model/unet.hpp). Torch-free interface.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace medicosam::train {

class SemanticNet {
 public:
  // CheckpointError / InputError naming the file when it has neither a head
  // nor a U-Net, or its tensors do not fit.
  // threads > 0: torch's CPU thread count.
  static SemanticNet load(const std::string& path, const std::string& decoder_file = "",
                          const std::string& device = "cpu", int threads = 0);
  SemanticNet();
  ~SemanticNet();
  SemanticNet(SemanticNet&&) noexcept;
  SemanticNet& operator=(SemanticNet&&) noexcept;

  int num_classes() const;
  int input_size() const;         // model input side
  std::string describe() const;   // "SAM vit_b encoder + UNETR decoder, ..." / "2D U-Net, ..."
  bool is_unet() const;

  // 8-bit RGB image (height x width x 3) -> label map (height x width):
  // argmax over the classes, or logit > 0 for one class. The image is resized
  // (longest side, SAM's resize) and padded to the input square exactly as in
  // training; the logits come back to the image's size as SAM's masks do.
  std::vector<uint16_t> segment(const uint8_t* rgb, int height, int width) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace medicosam::train
