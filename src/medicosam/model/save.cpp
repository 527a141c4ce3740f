#include "medicosam/model/save.hpp"

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/unetr.hpp"

namespace medicosam::model {

WeightsFormat weights_format_for(const std::string& path) {
  const std::string ext = ".safetensors";
  const bool st = path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
  return st ? WeightsFormat::kSafetensors : WeightsFormat::kPth;
}

void save_sam(const std::string& path, SamImpl& sam, const SaveOptions& options) {
  if (options.dtype != torch::kFloat32 && options.dtype != torch::kFloat16 &&
      options.dtype != torch::kBFloat16) {
    throw InputError("'" + path + "': weights can be written as float32, float16 or bfloat16");
  }
  checkpoint::StateDict sd;
  for (const auto& [name, t] : sam_state_dict(sam))
    sd.push_back({name, t.detach().to(torch::kCPU, options.dtype).contiguous()});
  checkpoint::StateDict head;
  for (const auto& [name, t] : options.decoder_state)
    head.push_back({name, t.detach().to(torch::kCPU, t.is_floating_point() ? options.dtype : t.scalar_type()).contiguous()});
  if (options.format.value_or(weights_format_for(path)) == WeightsFormat::kSafetensors) {
    for (const auto& nt : head) sd.push_back({kDecoderStatePrefix + nt.name, nt.tensor});
    std::map<std::string, std::string> meta = options.metadata;
    meta["format"] = "pt";
    meta["medicosam.architecture"] = sam.config.architecture_name();
    meta["medicosam.decoder_num_heads"] = std::to_string(sam.config.decoder.num_heads);
    for (const auto& nt : head)
      if (nt.name == "out_conv.weight") meta["medicosam.semantic_classes"] = std::to_string(nt.tensor.size(0));
    checkpoint::write_safetensors(path, sd, meta);
  } else if (!head.empty()) {
    checkpoint::PyValue::Dict root;
    root.set("model_state", checkpoint::state_dict_to_value(sd));
    root.set("decoder_state", checkpoint::state_dict_to_value(head));
    checkpoint::write_pytorch_checkpoint(path, checkpoint::PyValue(std::move(root)));
  } else {
    checkpoint::write_state_dict_pth(path, sd);
  }
}

}  // namespace medicosam::model
