// The only translation unit of the module that uses torch: it turns the
// torch-free parsers' output into at::Tensors, unwraps SAM checkpoints, and
// hands tensors' bytes to the torch-free writers.
#include <torch/torch.h>

#include <cstring>
#include <set>
#include <unordered_map>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/pytorch_archive.hpp"
#include "medicosam/checkpoint/safetensors.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::Float32:
      return at::kFloat;
    case DType::Float16:
      return at::kHalf;
    case DType::BFloat16:
      return at::kBFloat16;
    case DType::Float64:
      return at::kDouble;
    case DType::Int64:
      return at::kLong;
    case DType::Int32:
      return at::kInt;
    case DType::Int16:
      return at::kShort;
    case DType::Int8:
      return at::kChar;
    case DType::UInt8:
      return at::kByte;
    case DType::Bool:
      return at::kBool;
  }
  return at::kFloat;
}

std::optional<DType> from_scalar_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat:
      return DType::Float32;
    case at::kHalf:
      return DType::Float16;
    case at::kBFloat16:
      return DType::BFloat16;
    case at::kDouble:
      return DType::Float64;
    case at::kLong:
      return DType::Int64;
    case at::kInt:
      return DType::Int32;
    case at::kShort:
      return DType::Int16;
    case at::kChar:
      return DType::Int8;
    case at::kByte:
      return DType::UInt8;
    case at::kBool:
      return DType::Bool;
    default:
      return std::nullopt;
  }
}

enum class Format { PytorchZip, Safetensors };

Format detect_format(const MappedFile& f) {
  const std::string_view b = f.bytes();
  if (b.empty()) throw FormatError("'" + f.path() + "' is empty");
  if (looks_like_zip(b)) return Format::PytorchZip;
  if (looks_like_safetensors(b)) return Format::Safetensors;
  if (b.size() >= 2 && static_cast<std::uint8_t>(b[0]) == 0x80 && b[1] >= 2 && b[1] <= 5) {
    throw FormatError("'" + f.path() +
                      "' is a legacy (pre-1.6) torch.save file or a bare pickle, which is not "
                      "supported; re-save it with torch >= 1.6 or convert it to safetensors");
  }
  throw FormatError("'" + f.path() +
                    "' is not a checkpoint: unknown format (expected a torch.save zip archive or "
                    "a safetensors file)");
}

// A contiguous CPU tensor holding `nbytes` bytes copied from `src`. memcpy
// because the source (a safetensors offset) need not be aligned.
at::Tensor tensor_from_bytes(const char* src, DType dtype, const std::vector<std::int64_t>& sizes) {
  at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(to_scalar_type(dtype)));
  if (t.nbytes() > 0) std::memcpy(t.data_ptr(), src, t.nbytes());
  return t;
}

// Labels for error messages are capped: a hostile pickle nests long keys
// hundreds deep, and full paths would cost memory quadratic in the depth.
constexpr std::size_t kMaxLabel = 256;

std::string key_label(const PyValue& key) {
  if (const auto* s = key.get_if<std::string>()) {
    return s->size() <= 64 ? *s : s->substr(0, 64) + "...";
  }
  if (const auto* i = key.get_if<std::int64_t>()) return std::to_string(*i);
  return std::string("<") + key.type_name() + ">";
}

std::string child_label(const std::string& where, const std::string& suffix) {
  if (where.size() >= kMaxLabel) return where;  // already cut (ends with "...")
  std::string out = where + suffix;
  if (out.size() > kMaxLabel) out = out.substr(0, kMaxLabel - 3) + "...";
  return out;
}

// Tensors materialised from a torch.save archive may take at most this floor
// plus kMaxViewRatio x the bytes of the storages they come from. Real
// checkpoints materialise each storage about once (views of one storage, such
// as a split qkv weight, add up to at most the storage); a hostile pickle can
// ask for a stride-0 view of one element with 2^40 elements, or a thousand
// distinct views of one large storage, and is refused before allocating.
constexpr std::uint64_t kMaterialiseFloor = std::uint64_t{64} << 20;
constexpr std::uint64_t kMaxViewRatio = 4;

// RawValue -> PyValue, copying each tensor view out of its storage. A view
// the pickle references several times (one tensor object in Python) becomes
// one at::Tensor shared by every reference, as torch.load returns one object.
class Materialiser {
 public:
  explicit Materialiser(PytorchArchive& archive) : archive_(archive) {}

  PyValue convert(const RawValue& v, const std::string& where) {
    if (const auto* t = v.get_if<TensorRef>()) return PyValue(tensor(*t, where));
    if (const auto* l = v.get_if<RawValue::List>()) {
      PyValue::List out;
      out.reserve(l->size());
      for (std::size_t k = 0; k < l->size(); ++k) {
        out.push_back(convert((*l)[k], child_label(where, "[" + std::to_string(k) + "]")));
      }
      return PyValue(std::move(out));
    }
    if (const auto* tup = v.get_if<RawValue::Tuple>()) {
      std::vector<PyValue> out;
      out.reserve(tup->items.size());
      for (std::size_t k = 0; k < tup->items.size(); ++k) {
        out.push_back(convert(tup->items[k], child_label(where, "[" + std::to_string(k) + "]")));
      }
      return PyValue::tuple(std::move(out));
    }
    if (const auto* d = v.get_if<RawValue::Dict>()) {
      PyValue::Dict out;
      out.ordered = d->ordered;
      out.items.reserve(d->items.size());
      for (const auto& [key, value] : d->items) {
        PyValue k = convert(key, where);
        const std::string label =
            where.empty() ? key_label(k) : child_label(where, "/" + key_label(k));
        out.append(std::move(k), convert(value, label));
      }
      return PyValue(std::move(out));
    }
    // Scalars and opaque markers carry no tensors.
    return map_tensors<at::Tensor>(v, [](const TensorRef&) { return at::Tensor(); });
  }

 private:
  at::Tensor tensor(const TensorRef& t, const std::string& where) {
    // The same view again: share the tensor (the pickle memoised one object).
    std::string identity = t.storage_key;
    identity += '\0';
    identity += std::to_string(static_cast<int>(t.dtype)) + ":" + std::to_string(t.storage_offset);
    for (std::int64_t v : t.sizes) identity += "," + std::to_string(v);
    identity += ";";
    for (std::int64_t v : t.strides) identity += "," + std::to_string(v);
    if (auto it = made_.find(identity); it != made_.end()) return it->second;

    const std::string_view storage = archive_.storage(t.storage_key);
    const std::string entry = archive_.prefix() + "data/" + t.storage_key;
    const std::string what = "tensor '" + (where.empty() ? "<root>" : where) + "'";
    const ViewSpan span = check_view(t, storage.size(), archive_.path(), entry, what);
    if (storages_seen_.insert(t.storage_key).second) storage_bytes_ += storage.size();
    const std::uint64_t nbytes = static_cast<std::uint64_t>(span.numel) * dtype_size(t.dtype);
    const std::uint64_t limit = kMaterialiseFloor + kMaxViewRatio * storage_bytes_;
    if (nbytes > limit || materialised_ + nbytes > limit) {
      throw FormatError("'" + archive_.path() + "' is corrupted or hostile: " + what + " (" +
                        std::to_string(nbytes) + " bytes) would bring the tensors read from " +
                        std::to_string(storage_bytes_) + " bytes of storage to more than " +
                        std::to_string(limit) +
                        " bytes (overlapping, stride-0 or repeated views of one storage)");
    }
    materialised_ += nbytes;
    const char* base = storage.data() + span.first_byte;
    at::Tensor out;
    if (span.contiguous || span.numel == 0) {
      out = tensor_from_bytes(base, t.dtype, t.sizes);
    } else {
      // A strided view (e.g. base[1:, ::2]): copy the addressed span, then let
      // torch gather it into a contiguous tensor.
      const auto elems = static_cast<std::int64_t>(span.nbytes / dtype_size(t.dtype));
      at::Tensor buffer = tensor_from_bytes(base, t.dtype, {elems});
      out = buffer.as_strided(t.sizes, t.strides, 0).contiguous();
    }
    made_.emplace(std::move(identity), out);
    return out;
  }

  PytorchArchive& archive_;
  std::unordered_map<std::string, at::Tensor> made_;  // view identity -> tensor
  std::set<std::string> storages_seen_;
  std::uint64_t storage_bytes_ = 0;  // bytes of the distinct storages read
  std::uint64_t materialised_ = 0;   // bytes of the distinct tensors made
};

PyValue read_object(const MappedFile& file, Format format) {
  if (format == Format::Safetensors) {
    const SafetensorsHeader header = parse_safetensors(file.bytes(), file.path());
    PyValue::Dict d;
    d.ordered = true;
    for (const auto& e : header.entries) {
      d.append(PyValue(e.name),
               PyValue(tensor_from_bytes(file.bytes().data() + e.begin, e.dtype, e.shape)));
    }
    return PyValue(std::move(d));
  }
  PytorchArchive archive(file);
  const RawValue raw = archive.load_object();
  return Materialiser(archive).convert(raw, "");
}

bool is_sam_key(const std::string& k) {
  return k.rfind("image_encoder.", 0) == 0 || k.rfind("prompt_encoder.", 0) == 0 ||
         k.rfind("mask_decoder.", 0) == 0;
}

// Strips the first of "module.sam.", "sam.", "module." that SAM's keys carry,
// unless some SAM key is already bare (then nothing is stripped).
std::string strip_prefix(StateDict& sd, const std::string& path) {
  for (const auto& nt : sd) {
    if (is_sam_key(nt.name)) return "";
  }
  for (const char* prefix : {"module.sam.", "sam.", "module."}) {
    const std::string p = prefix;
    bool carried = false;
    for (const auto& nt : sd) {
      if (nt.name.rfind(p, 0) == 0 && is_sam_key(nt.name.substr(p.size()))) {
        carried = true;
        break;
      }
    }
    if (!carried) continue;
    std::set<std::string> seen;
    for (auto& nt : sd) {
      if (nt.name.rfind(p, 0) == 0) nt.name = nt.name.substr(p.size());
      if (!seen.insert(nt.name).second) {
        throw CheckpointError("'" + path + "' has tensor '" + nt.name +
                              "' both with and without the prefix '" + p + "'");
      }
    }
    return p;
  }
  return "";
}

// The scalar entries of a wrapper dict as JSON (iteration, epoch, best_metric...).
nlohmann::json scalar_metadata(const PyValue::Dict& d) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : d.items) {
    const auto* k = key.get_if<std::string>();
    if (!k) continue;
    if (value.is_none()) {
      out[*k] = nullptr;
    } else if (const auto* b = value.get_if<bool>()) {
      out[*k] = *b;
    } else if (const auto* i = value.get_if<std::int64_t>()) {
      out[*k] = *i;
    } else if (const auto* f = value.get_if<double>()) {
      out[*k] = *f;
    } else if (const auto* s = value.get_if<std::string>()) {
      out[*k] = *s;
    }
  }
  return out;
}

SamCheckpoint unwrap(const PyValue& root, const std::string& path) {
  SamCheckpoint ck;
  ck.path = path;
  ck.format = "pytorch-zip";
  ck.metadata = nlohmann::json::object();
  const auto* top = root.get_if<PyValue::Dict>();
  if (!top) {
    throw FormatError("'" + path + "' holds a " + root.type_name() +
                      ", not a state dict or a checkpoint dict");
  }
  const PyValue* model = nullptr;
  if (const PyValue* ms = top->find("model_state")) {
    const PyValue* dec = top->find("decoder_state");
    model = ms;
    const bool only_export = top->size() == (dec ? 2u : 1u);
    if (dec && !dec->is_none()) {
      ck.decoder_state = value_to_state_dict(*dec, "'" + path + "' entry 'decoder_state'");
      ck.layout = only_export ? "model_state + decoder_state"
                              : "trainer checkpoint (model_state + decoder_state)";
    } else {
      ck.layout = "trainer checkpoint (model_state)";
    }
    ck.metadata = scalar_metadata(*top);
    ck.model_state = value_to_state_dict(*model, "'" + path + "' entry 'model_state'");
  } else {
    for (const char* wrapper : {"state_dict", "model"}) {
      const PyValue* inner = top->find(wrapper);
      if (inner && inner->is_dict()) {
        ck.layout = std::string("wrapper (") + wrapper + ")";
        ck.metadata = scalar_metadata(*top);
        ck.model_state =
            value_to_state_dict(*inner, "'" + path + "' entry '" + std::string(wrapper) + "'");
        break;
      }
    }
    if (ck.layout.empty()) {
      ck.layout = "state_dict";
      ck.model_state = value_to_state_dict(root, "'" + path + "'");
    }
  }
  ck.stripped_prefix = strip_prefix(ck.model_state, path);
  return ck;
}

void check_writable(const at::Tensor& t, const std::string& path, const std::string& name) {
  if (!t.defined()) {
    throw InputError("cannot write '" + path + "': tensor '" + name + "' is undefined");
  }
  if (!from_scalar_type(t.scalar_type())) {
    throw InputError("cannot write '" + path + "': tensor '" + name + "' has unsupported dtype " +
                     std::string(c10::toString(t.scalar_type())));
  }
  if (t.is_sparse() || t.is_quantized()) {
    throw InputError("cannot write '" + path + "': tensor '" + name +
                     "' is sparse or quantized (only dense tensors are supported)");
  }
}

}  // namespace

PyValue read_pytorch_checkpoint(const std::string& path) {
  const MappedFile file(path);
  return read_object(file, detect_format(file));
}

SamCheckpoint read_sam_checkpoint(const std::string& path) {
  const MappedFile file(path);
  const Format format = detect_format(file);
  if (format == Format::Safetensors) {
    SamCheckpoint ck;
    ck.path = path;
    ck.format = "safetensors";
    ck.layout = "state_dict";
    const SafetensorsHeader header = parse_safetensors(file.bytes(), path);
    ck.metadata = nlohmann::json::object();
    for (const auto& [k, v] : header.metadata) ck.metadata[k] = v;
    ck.model_state.reserve(header.entries.size());
    for (const auto& e : header.entries) {
      ck.model_state.push_back(
          {e.name, tensor_from_bytes(file.bytes().data() + e.begin, e.dtype, e.shape)});
    }
    ck.stripped_prefix = strip_prefix(ck.model_state, path);
    return ck;
  }
  return unwrap(read_object(file, format), path);
}

StateDict read_state_dict_any(const std::string& path) {
  return read_sam_checkpoint(path).model_state;
}

PyValue state_dict_to_value(const StateDict& sd) {
  PyValue::Dict d;
  d.ordered = true;
  d.items.reserve(sd.size());
  std::set<std::string> seen;
  for (const auto& nt : sd) {
    if (!seen.insert(nt.name).second) {
      throw InputError("state dict has the tensor name '" + nt.name + "' twice");
    }
    d.append(PyValue(nt.name), PyValue(nt.tensor));
  }
  return PyValue(std::move(d));
}

StateDict value_to_state_dict(const PyValue& value, const std::string& what) {
  const auto* d = value.get_if<PyValue::Dict>();
  if (!d) {
    throw FormatError(what + " is a " + value.type_name() + ", not a dict of tensors");
  }
  StateDict sd;
  sd.reserve(d->items.size());
  for (const auto& [key, v] : d->items) {
    const auto* name = key.get_if<std::string>();
    if (!name) {
      throw FormatError(what + " has a " + std::string(key.type_name()) +
                        " key; a state dict has string keys");
    }
    const auto* t = v.get_if<at::Tensor>();
    if (!t) {
      throw FormatError(what + " maps '" + *name + "' to a " + v.type_name() +
                        "; a state dict holds only tensors");
    }
    sd.push_back({*name, *t});
  }
  return sd;
}

void write_pytorch_checkpoint(const std::string& path, const PyValue& root,
                              const WriteOptions& options) {
  // Each distinct tensor object becomes one storage; the same tensor named
  // twice shares it, as with torch.save.
  std::vector<at::Tensor> keep;
  std::vector<StorageBlob> blobs;
  std::unordered_map<const void*, TensorRef> seen;
  const RawValue raw = map_tensors<TensorRef>(root, [&](const at::Tensor& t) -> TensorRef {
    check_writable(t, path, "#" + std::to_string(keep.size()));
    const void* identity = t.unsafeGetTensorImpl();
    if (auto it = seen.find(identity); it != seen.end()) return it->second;
    at::Tensor cpu = t.detach().to(at::kCPU).contiguous();
    TensorRef ref;
    ref.storage_key = std::to_string(keep.size());
    ref.dtype = *from_scalar_type(cpu.scalar_type());
    ref.storage_numel = cpu.numel();
    ref.storage_offset = 0;
    ref.sizes = cpu.sizes().vec();
    ref.strides = cpu.strides().vec();
    ref.requires_grad = t.requires_grad();
    blobs.push_back({ref.storage_key, cpu.data_ptr(), cpu.nbytes()});
    keep.push_back(std::move(cpu));
    seen.emplace(identity, ref);
    return ref;
  });
  write_pytorch_archive(path, raw, blobs, options.force_zip64);
}

void write_state_dict_pth(const std::string& path, const StateDict& sd) {
  write_pytorch_checkpoint(path, state_dict_to_value(sd));
}

void write_safetensors(const std::string& path, const StateDict& sd,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> keep;
  std::vector<SafetensorsTensor> tensors;
  keep.reserve(sd.size());
  tensors.reserve(sd.size());
  for (const auto& nt : sd) {
    check_writable(nt.tensor, path, nt.name);
    keep.push_back(nt.tensor.detach().to(at::kCPU).contiguous());
    const at::Tensor& t = keep.back();
    tensors.push_back(
        {nt.name, *from_scalar_type(t.scalar_type()), t.sizes().vec(), t.data_ptr(), t.nbytes()});
  }
  write_safetensors_file(path, tensors, metadata);
}

}  // namespace medicosam::checkpoint
