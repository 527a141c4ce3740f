#pragma once
// Helpers for the torch-side checkpoint tests: .npy <-> tensor and walking a PyValue.
#include <torch/torch.h>

#include <string>
#include <variant>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/npy.hpp"
#include "test_util.hpp"

namespace medicosam::checkpoint::testing {

inline at::ScalarType npy_scalar_type(NpyType t) {
  switch (t) {
    case NpyType::kBool:
      return at::kBool;
    case NpyType::kUInt8:
      return at::kByte;
    case NpyType::kInt8:
      return at::kChar;
    case NpyType::kInt16:
      return at::kShort;
    case NpyType::kInt32:
      return at::kInt;
    case NpyType::kInt64:
      return at::kLong;
    case NpyType::kFloat16:
      return at::kHalf;
    case NpyType::kFloat32:
      return at::kFloat;
    case NpyType::kFloat64:
      return at::kDouble;
    case NpyType::kUInt16:
      break;
  }
  throw std::runtime_error("unsupported npy type in test");
}

inline at::Tensor tensor_from_npy(const std::string& path) {
  const NpyArray a = read_npy(path);
  at::Tensor t = at::empty(a.shape, at::TensorOptions().dtype(npy_scalar_type(a.type)));
  if (!a.data.empty()) std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
  return t;
}

// Writes `t` as .npy; bfloat16 (which numpy lacks) as float32, exactly.
inline void tensor_to_npy(const at::Tensor& tensor, const std::string& path) {
  at::Tensor t = tensor.detach().cpu().contiguous();
  if (t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  NpyType type = NpyType::kFloat32;
  switch (t.scalar_type()) {
    case at::kBool:
      type = NpyType::kBool;
      break;
    case at::kByte:
      type = NpyType::kUInt8;
      break;
    case at::kChar:
      type = NpyType::kInt8;
      break;
    case at::kShort:
      type = NpyType::kInt16;
      break;
    case at::kInt:
      type = NpyType::kInt32;
      break;
    case at::kLong:
      type = NpyType::kInt64;
      break;
    case at::kHalf:
      type = NpyType::kFloat16;
      break;
    case at::kFloat:
      type = NpyType::kFloat32;
      break;
    case at::kDouble:
      type = NpyType::kFloat64;
      break;
    default:
      throw std::runtime_error("unsupported dtype in test");
  }
  NpyArray a;
  a.type = type;
  a.shape = t.sizes().vec();
  a.data.resize(t.nbytes());
  if (t.nbytes() > 0) std::memcpy(a.data.data(), t.data_ptr(), t.nbytes());
  write_npy(path, a);
}

// Torch's dtype name without "torch.": "float32", "bfloat16", "bool", ...
inline std::string dtype_string(at::ScalarType s) {
  switch (s) {
    case at::kFloat:
      return "float32";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kDouble:
      return "float64";
    case at::kLong:
      return "int64";
    case at::kInt:
      return "int32";
    case at::kShort:
      return "int16";
    case at::kChar:
      return "int8";
    case at::kByte:
      return "uint8";
    case at::kBool:
      return "bool";
    default:
      return "other";
  }
}

// Same dtype, shape and bytes (bfloat16 compared through float32, exactly).
inline ::testing::AssertionResult same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure()
           << "dtype " << dtype_string(a.scalar_type()) << " vs " << dtype_string(b.scalar_type());
  }
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  }
  if (!a.is_contiguous() || !b.is_contiguous()) {
    // Loaded tensors are always contiguous; an expected one may not be.
    if (!a.is_contiguous()) return ::testing::AssertionFailure() << "left tensor not contiguous";
  }
  const at::Tensor bc = b.contiguous();
  if (a.nbytes() != bc.nbytes() ||
      (a.nbytes() > 0 && std::memcmp(a.data_ptr(), bc.data_ptr(), a.nbytes()) != 0)) {
    return ::testing::AssertionFailure() << "values differ";
  }
  return ::testing::AssertionSuccess();
}

// Follows a JSON path of keys (strings or ints) and list indices through a PyValue.
inline const PyValue* navigate(const PyValue& root, const nlohmann::json& path) {
  const PyValue* v = &root;
  for (const auto& step : path) {
    if (const auto* d = v->get_if<PyValue::Dict>()) {
      const PyValue* next = nullptr;
      for (const auto& [k, value] : d->items) {
        if ((step.is_string() && k.get_if<std::string>() &&
             *k.get_if<std::string>() == step.get<std::string>()) ||
            (step.is_number_integer() && k.get_if<std::int64_t>() &&
             *k.get_if<std::int64_t>() == step.get<std::int64_t>())) {
          next = &value;
          break;
        }
      }
      if (!next) return nullptr;
      v = next;
    } else if (const auto* l = v->get_if<PyValue::List>()) {
      const auto i = step.get<std::size_t>();
      if (i >= l->size()) return nullptr;
      v = &(*l)[i];
    } else if (const auto* t = v->get_if<PyValue::Tuple>()) {
      const auto i = step.get<std::size_t>();
      if (i >= t->items.size()) return nullptr;
      v = &t->items[i];
    } else {
      return nullptr;
    }
  }
  return v;
}

inline const at::Tensor* find_tensor(const StateDict& sd, const std::string& name) {
  for (const auto& nt : sd) {
    if (nt.name == name) return &nt.tensor;
  }
  return nullptr;
}

}  // namespace medicosam::checkpoint::testing
