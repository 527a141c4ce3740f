#include "medicosam/model/loader.hpp"

#include <set>
#include <sstream>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/unetr_module.hpp"

namespace medicosam::model {
namespace {

bool is_sam_key(const std::string& k) {
  return k.rfind("image_encoder.", 0) == 0 || k.rfind("prompt_encoder.", 0) == 0 || k.rfind("mask_decoder.", 0) == 0;
}

std::map<std::string, std::string> hints_from_metadata(const nlohmann::json& meta) {
  std::map<std::string, std::string> hints;
  if (!meta.is_object()) return hints;
  for (const char* key : {"decoder_num_heads", "encoder_num_heads", "encoder_global_attn_indexes"}) {
    std::string k = std::string("medicosam.") + key;
    if (meta.contains(k)) hints[key] = meta[k].is_string() ? meta[k].get<std::string>() : meta[k].dump();
  }
  return hints;
}

}  // namespace

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? "," : "") << s[i];
  o << "]";
  return o.str();
}

SamConfig config_from_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::string& source, const std::map<std::string, std::string>& hints) {
  ShapeMap shapes;
  for (const auto& [name, t] : tensors) shapes[name] = t.sizes().vec();
  return derive_config(shapes, source, hints);
}

void copy_state_strict(const std::vector<std::pair<std::string, torch::Tensor>>& expected,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::string& what) {
  std::map<std::string, torch::Tensor> by_name(expected.begin(), expected.end());
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      unexpected.push_back(name);
      continue;
    }
    seen.insert(name);
    if (it->second.sizes() != t.sizes()) {
      mismatched.push_back(name + " (file " + shape_str(t.sizes()) + ", model " + shape_str(it->second.sizes()) + ")");
    }
  }
  for (const auto& [name, t] : expected)
    if (!seen.count(name)) missing.push_back(name);

  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream msg;
    msg << what << ":";
    auto list = [&](const char* kind, const std::vector<std::string>& v) {
      if (v.empty()) return;
      msg << " " << v.size() << " " << kind << " (";
      for (size_t i = 0; i < v.size() && i < 20; ++i) msg << (i ? ", " : "") << v[i];
      if (v.size() > 20) msg << ", ...";
      msg << ");";
    };
    list("missing key(s)", missing);
    list("unexpected key(s)", unexpected);
    list("mis-shaped key(s)", mismatched);
    std::string s = msg.str();
    s.pop_back();
    throw CheckpointError(s);
  }

  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    auto& dst = by_name[name];
    dst.copy_(t.to(dst.dtype()));
  }
}

void load_state_dict(SamImpl& sam, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::string& source) {
  copy_state_strict(sam_state_dict(sam), tensors, "'" + source + "' does not fit the model it describes");
}

LoadedSam load_sam(const std::string& path, const torch::Device& device) {
  auto ckpt = checkpoint::read_sam_checkpoint(path);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  tensors.reserve(ckpt.model_state.size());
  std::string dtype;
  LoadedSam out;
  for (auto& nt : ckpt.decoder_state) out.decoder_state.emplace_back(nt.name, nt.tensor);
  const std::string head_prefix = kDecoderStatePrefix;
  for (auto& nt : ckpt.model_state) {
    if (nt.name.rfind(head_prefix, 0) == 0) {  // the semantic head in a safetensors file
      out.decoder_state.emplace_back(nt.name.substr(head_prefix.size()), nt.tensor);
      continue;
    }
    if (dtype.empty() && nt.tensor.is_floating_point()) {
      const auto t = nt.tensor.scalar_type();
      dtype = t == torch::kFloat32   ? "float32"
              : t == torch::kFloat16 ? "float16"
              : t == torch::kBFloat16 ? "bfloat16"
              : t == torch::kFloat64  ? "float64"
                                      : c10::toString(t);
    }
    tensors.emplace_back(nt.name, nt.tensor);
  }
  // Keys that are not SAM's (e.g. a trainer's extra heads) are reported by
  // load_state_dict unless they clearly belong to another component.
  const auto config = config_from_tensors(tensors, path, hints_from_metadata(ckpt.metadata));
  out.sam = Sam(config);
  load_state_dict(*out.sam, tensors, path);
  out.sam->eval();
  out.sam->to(device);
  out.path = path;
  out.format = ckpt.format;
  out.layout = ckpt.layout;
  out.stripped_prefix = ckpt.stripped_prefix;
  out.stored_dtype = dtype;
  out.metadata = ckpt.metadata;
  for (const auto& [name, t] : sam_state_dict(*out.sam)) {
    if (is_sam_key(name)) out.num_parameters += t.numel();
  }
  return out;
}

nlohmann::json describe_checkpoint(const std::string& path) {
  auto m = load_sam(path, torch::kCPU);
  const auto& c = m.sam->config;
  nlohmann::json j;
  j["file"] = path;
  j["format"] = m.format;
  j["layout"] = m.layout;
  j["stripped_prefix"] = m.stripped_prefix;
  j["stored_dtype"] = m.stored_dtype;
  j["architecture"] = c.architecture_name();
  j["parameters"] = m.num_parameters;
  j["image_size"] = c.encoder.img_size;
  j["patch_size"] = c.encoder.patch_size;
  j["embedding_shape"] = {1, c.encoder.out_chans, c.image_embedding_size(), c.image_embedding_size()};
  j["encoder"] = {{"embed_dim", c.encoder.embed_dim},
                  {"depth", c.encoder.depth},
                  {"num_heads", c.encoder.num_heads},
                  {"mlp_dim", c.encoder.mlp_dim},
                  {"window_size", c.encoder.window_size},
                  {"global_attn_indexes", c.encoder.global_attn_indexes}};
  j["decoder"] = {{"transformer_depth", c.decoder.transformer_depth},
                  {"num_heads", c.decoder.num_heads},
                  {"mlp_dim", c.decoder.mlp_dim},
                  {"num_multimask_outputs", c.decoder.num_multimask_outputs}};
  if (!m.metadata.is_null() && !m.metadata.empty()) j["metadata"] = m.metadata;
  if (!m.decoder_state.empty()) {
    try {
      const auto head = unetr_from_tensors(m.decoder_state, path);
      const auto& h = head->config;
      int64_t params = 0;
      for (const auto& p : head->parameters()) params += p.numel();
      j["semantic_head"] = {{"type", "unetr"},
                            {"num_classes", h.num_classes},
                            {"features", h.features()},
                            {"embed_dim", h.embed_dim},
                            {"upsampling", h.conv_transpose ? "conv_transpose" : "bilinear"},
                            {"parameters", params},
                            {"description", h.describe()}};
    } catch (const CheckpointError& e) {
      j["semantic_head"] = {{"type", "unetr"}, {"error", e.what()}};
    }
  }
  return j;
}

}  // namespace medicosam::model
