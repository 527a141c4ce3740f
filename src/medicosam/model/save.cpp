#include "medicosam/model/save.hpp"

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/safetensors.hpp"
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

namespace {

checkpoint::SafetensorsHeader safetensors_header_of(const checkpoint::MappedFile& f) {
  if (!checkpoint::looks_like_safetensors(f.bytes()))
    throw InputError("'" + f.path() + "' is not a .safetensors file (metadata can only be written to safetensors)");
  return checkpoint::parse_safetensors(f.bytes(), f.path());
}

}  // namespace

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  checkpoint::MappedFile f(path);
  return safetensors_header_of(f).metadata;
}

void rewrite_safetensors_metadata(const std::string& in, const std::string& out,
                                  const std::map<std::string, std::string>& set,
                                  const std::vector<std::string>& remove) {
  // The mapping stays valid when `out` == `in`: the new file is renamed over
  // the old name, the mapped inode lives until it is unmapped.
  checkpoint::MappedFile f(in);
  const auto header = safetensors_header_of(f);
  auto meta = header.metadata;
  for (const auto& k : remove) meta.erase(k);
  for (const auto& [k, v] : set) meta[k] = v;
  std::vector<checkpoint::SafetensorsTensor> tensors;
  tensors.reserve(header.entries.size());
  for (const auto& e : header.entries)
    tensors.push_back({e.name, e.dtype, e.shape, f.data() + e.begin, size_t(e.end - e.begin)});
  checkpoint::write_safetensors_file(out, tensors, meta);
}

}  // namespace medicosam::model
