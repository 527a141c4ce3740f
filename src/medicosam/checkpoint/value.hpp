#pragma once
// A Python value as it appears in a checkpoint pickle: None, bool, int, float,
// str, bytes, list, tuple, dict / OrderedDict, tensor, and an "opaque" marker
// for the few allowed globals that are not plain values (storage classes,
// dtypes, rebuild functions).
//
// The tensor alternative is a template parameter so that one definition serves
// both sides of the torch boundary:
//   RawValue = BasicValue<TensorRef>  what the torch-free unpickler produces and
//                                     the pickle writer consumes (tensors are
//                                     views into zip storage entries);
//   PyValue  = BasicValue<at::Tensor> what checkpoint.hpp hands out and takes.
// map_tensors() converts between the two.
//
// Values have value semantics (copying copies the tree; tensors are copied by
// handle). Dicts keep insertion order, which is what both dict and
// OrderedDict guarantee in Python 3.7+.
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "medicosam/checkpoint/dtype.hpp"

namespace medicosam::checkpoint {

// A tensor as pickled by torch.save: a strided view into a storage that lives in
// the zip entry `<stem>/data/<storage_key>`.
struct TensorRef {
  std::string storage_key;
  DType dtype = DType::Float32;
  std::int64_t storage_numel = 0;   // elements of `dtype` the storage holds
  std::int64_t storage_offset = 0;  // in elements
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;  // in elements
  bool requires_grad = false;
};

template <typename TensorT>
class BasicValue {
 public:
  struct None {
    bool operator==(const None&) const { return true; }
  };
  // A Python `bytes` object (raw bytes in a std::string).
  struct Bytes {
    std::string data;
  };
  // An allowed global that is not a plain value, named "module.qualname".
  struct Opaque {
    std::string name;
  };
  using List = std::vector<BasicValue>;
  struct Tuple {
    std::vector<BasicValue> items;
  };
  // dict or collections.OrderedDict: an ordered sequence of (key, value) pairs.
  struct Dict {
    bool ordered = false;  // true: collections.OrderedDict
    std::vector<std::pair<BasicValue, BasicValue>> items;

    std::size_t size() const { return items.size(); }
    bool empty() const { return items.empty(); }
    // Value stored under a string key, or nullptr.
    const BasicValue* find(std::string_view key) const {
      for (const auto& kv : items) {
        if (const auto* s = kv.first.template get_if<std::string>(); s && *s == key) {
          return &kv.second;
        }
      }
      return nullptr;
    }
    BasicValue* find(std::string_view key) {
      return const_cast<BasicValue*>(static_cast<const Dict*>(this)->find(key));
    }
    // Sets `key` (replacing an existing string key of that name) to `value`.
    void set(std::string key, BasicValue value) {
      if (BasicValue* existing = find(key)) {
        *existing = std::move(value);
      } else {
        items.emplace_back(BasicValue(std::move(key)), std::move(value));
      }
    }
    // Appends without looking for an existing key (for non-string keys, or when
    // the caller knows the key is new).
    void append(BasicValue key, BasicValue value) {
      items.emplace_back(std::move(key), std::move(value));
    }
  };

  using Variant = std::variant<None, bool, std::int64_t, double, std::string, Bytes, List, Tuple,
                               Dict, TensorT, Opaque>;

  BasicValue() = default;
  BasicValue(None) {}
  // Exactly bool: a pointer must not silently become one.
  template <typename B, std::enable_if_t<std::is_same_v<B, bool>, int> = 0>
  BasicValue(B b) : v_(b) {}
  template <typename I,
            std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  BasicValue(I i) : v_(static_cast<std::int64_t>(i)) {}
  template <typename F, std::enable_if_t<std::is_floating_point_v<F>, int> = 0>
  BasicValue(F f) : v_(static_cast<double>(f)) {}
  BasicValue(std::string s) : v_(std::move(s)) {}
  BasicValue(const char* s) : v_(std::string(s)) {}
  BasicValue(std::string_view s) : v_(std::string(s)) {}
  BasicValue(Bytes b) : v_(std::move(b)) {}
  BasicValue(List l) : v_(std::move(l)) {}
  BasicValue(Tuple t) : v_(std::move(t)) {}
  BasicValue(Dict d) : v_(std::move(d)) {}
  BasicValue(TensorT t) : v_(std::move(t)) {}
  BasicValue(Opaque o) : v_(std::move(o)) {}

  static BasicValue dict() { return BasicValue(Dict{}); }
  static BasicValue ordered_dict() {
    Dict d;
    d.ordered = true;
    return BasicValue(std::move(d));
  }
  static BasicValue tuple(std::vector<BasicValue> items) {
    return BasicValue(Tuple{std::move(items)});
  }

  template <typename X>
  bool is() const {
    return std::holds_alternative<X>(v_);
  }
  template <typename X>
  const X* get_if() const {
    return std::get_if<X>(&v_);
  }
  template <typename X>
  X* get_if() {
    return std::get_if<X>(&v_);
  }
  bool is_none() const { return is<None>(); }
  bool is_tensor() const { return is<TensorT>(); }
  bool is_dict() const { return is<Dict>(); }
  // Python ints and floats (and bools, as Python treats them) as a double, if numeric.
  bool is_number() const { return is<std::int64_t>() || is<double>() || is<bool>(); }
  double number() const {
    if (const auto* i = get_if<std::int64_t>()) return static_cast<double>(*i);
    if (const auto* b = get_if<bool>()) return *b ? 1.0 : 0.0;
    if (const auto* d = get_if<double>()) return *d;
    return 0.0;
  }

  // Python's name for the type, for error messages: "dict", "list", "tensor", ...
  const char* type_name() const {
    switch (v_.index()) {
      case 0:
        return "None";
      case 1:
        return "bool";
      case 2:
        return "int";
      case 3:
        return "float";
      case 4:
        return "str";
      case 5:
        return "bytes";
      case 6:
        return "list";
      case 7:
        return "tuple";
      case 8:
        return std::get<Dict>(v_).ordered ? "OrderedDict" : "dict";
      case 9:
        return "tensor";
      default:
        return "object";
    }
  }

  const Variant& variant() const { return v_; }
  Variant& variant() { return v_; }

 private:
  Variant v_;
};

// Rebuilds `v` with every tensor replaced by `f(tensor)`; the structure, key
// order and all other values are kept.
template <typename To, typename From, typename F>
BasicValue<To> map_tensors(const BasicValue<From>& v, F&& f) {
  using In = BasicValue<From>;
  using Out = BasicValue<To>;
  return std::visit(
      [&](const auto& x) -> Out {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, typename In::None>) {
          return Out();
        } else if constexpr (std::is_same_v<X, typename In::Bytes>) {
          return Out(typename Out::Bytes{x.data});
        } else if constexpr (std::is_same_v<X, typename In::Opaque>) {
          return Out(typename Out::Opaque{x.name});
        } else if constexpr (std::is_same_v<X, typename In::List>) {
          typename Out::List out;
          out.reserve(x.size());
          for (const auto& item : x) out.push_back(map_tensors<To>(item, f));
          return Out(std::move(out));
        } else if constexpr (std::is_same_v<X, typename In::Tuple>) {
          typename Out::Tuple out;
          out.items.reserve(x.items.size());
          for (const auto& item : x.items) out.items.push_back(map_tensors<To>(item, f));
          return Out(std::move(out));
        } else if constexpr (std::is_same_v<X, typename In::Dict>) {
          typename Out::Dict out;
          out.ordered = x.ordered;
          out.items.reserve(x.items.size());
          for (const auto& kv : x.items) {
            out.append(map_tensors<To>(kv.first, f), map_tensors<To>(kv.second, f));
          }
          return Out(std::move(out));
        } else if constexpr (std::is_same_v<X, From>) {
          return Out(To(f(x)));
        } else {
          return Out(x);  // bool, int64_t, double, std::string
        }
      },
      v.variant());
}

using RawValue = BasicValue<TensorRef>;

}  // namespace medicosam::checkpoint
