#include "medicosam/checkpoint/pickle_writer.hpp"

#include <cstring>
#include <map>

#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

class Pickler {
 public:
  explicit Pickler(const std::string& path) : path_(path) {}

  std::string dump(const RawValue& root) {
    out_ += '\x80';  // PROTO 2
    out_ += '\x02';
    save(root, 0);
    out_ += '.';  // STOP
    return std::move(out_);
  }

 private:
  void op(char c) { out_ += c; }
  void u8(std::uint8_t v) { out_ += static_cast<char>(v); }
  void le(std::uint64_t v, int n) {
    for (int k = 0; k < n; ++k) out_ += static_cast<char>((v >> (8 * k)) & 0xFF);
  }

  void save_int(std::int64_t v) {
    if (v >= 0 && v <= 0xFF) {
      op('K');  // BININT1
      u8(static_cast<std::uint8_t>(v));
    } else if (v >= 0 && v <= 0xFFFF) {
      op('M');  // BININT2
      le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');  // BININT
      le(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)), 4);
    } else {
      // LONG1: minimal two's-complement little-endian bytes.
      std::string bytes;
      auto u = static_cast<std::uint64_t>(v);
      for (int k = 0; k < 8; ++k) bytes += static_cast<char>((u >> (8 * k)) & 0xFF);
      while (bytes.size() > 1) {
        const auto last = static_cast<std::uint8_t>(bytes.back());
        const auto prev = static_cast<std::uint8_t>(bytes[bytes.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) {
          bytes.pop_back();
        } else {
          break;
        }
      }
      out_ += '\x8a';
      u8(static_cast<std::uint8_t>(bytes.size()));
      out_ += bytes;
    }
  }

  void save_float(double d) {
    op('G');  // BINFLOAT, big-endian
    std::uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    for (int k = 7; k >= 0; --k) out_ += static_cast<char>((bits >> (8 * k)) & 0xFF);
  }

  void save_str(const std::string& s) {
    op('X');  // BINUNICODE
    le(s.size(), 4);
    out_ += s;
  }

  // Globals are written once and then fetched from the memo, as Python does.
  void save_global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name;
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      if (it->second < 256) {
        op('h');  // BINGET
        u8(static_cast<std::uint8_t>(it->second));
      } else {
        op('j');  // LONG_BINGET
        le(it->second, 4);
      }
      return;
    }
    op('c');  // GLOBAL
    out_ += module + "\n" + name + "\n";
    const std::uint32_t index = next_memo_++;
    memo_.emplace(key, index);
    if (index < 256) {
      op('q');  // BINPUT
      u8(static_cast<std::uint8_t>(index));
    } else {
      op('r');  // LONG_BINPUT
      le(index, 4);
    }
  }

  void save_tuple(const std::vector<RawValue>& items, int depth) {
    if (items.empty()) {
      op(')');  // EMPTY_TUPLE
      return;
    }
    if (items.size() <= 3) {
      for (const auto& item : items) save(item, depth + 1);
      out_ += static_cast<char>(0x84 + items.size());  // TUPLE1..TUPLE3
      return;
    }
    op('(');  // MARK
    for (const auto& item : items) save(item, depth + 1);
    op('t');  // TUPLE
  }

  void save_int_tuple(const std::vector<std::int64_t>& v) {
    std::vector<RawValue> items(v.begin(), v.end());
    save_tuple(items, 0);
  }

  void save_dict_items(const RawValue::Dict& d, int depth) {
    // Batches of 1000, like Python's pickler, keep the unpickler's stack small.
    constexpr std::size_t kBatch = 1000;
    for (std::size_t start = 0; start < d.items.size(); start += kBatch) {
      const std::size_t end = std::min(d.items.size(), start + kBatch);
      op('(');  // MARK
      for (std::size_t k = start; k < end; ++k) {
        save(d.items[k].first, depth + 1);
        save(d.items[k].second, depth + 1);
      }
      op('u');  // SETITEMS
    }
  }

  void save_tensor(const TensorRef& t) {
    save_global("torch._utils", "_rebuild_tensor_v2");
    op('(');  // MARK: the argument tuple
    {
      // The storage, by persistent id.
      op('(');
      save_str("storage");
      save_global("torch", std::string(dtype_storage_class(t.dtype)));
      save_str(t.storage_key);
      save_str("cpu");
      save_int(t.storage_numel);
      op('t');  // TUPLE
      op('Q');  // BINPERSID
    }
    save_int(t.storage_offset);
    save_int_tuple(t.sizes);
    save_int_tuple(t.strides);
    op(t.requires_grad ? '\x88' : '\x89');      // NEWTRUE / NEWFALSE
    save_global("collections", "OrderedDict");  // backward_hooks: always empty
    op(')');
    op('R');
    op('t');  // TUPLE
    op('R');  // REDUCE
  }

  void save(const RawValue& v, int depth) {
    if (depth > 256) {  // the reader's limit too
      throw InputError("cannot write '" + path_ + "': values are nested too deeply");
    }
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, RawValue::None>) {
            op('N');
          } else if constexpr (std::is_same_v<X, bool>) {
            op(x ? '\x88' : '\x89');
          } else if constexpr (std::is_same_v<X, std::int64_t>) {
            save_int(x);
          } else if constexpr (std::is_same_v<X, double>) {
            save_float(x);
          } else if constexpr (std::is_same_v<X, std::string>) {
            save_str(x);
          } else if constexpr (std::is_same_v<X, RawValue::Bytes>) {
            // Protocol 2 spelling of bytes: _codecs.encode(latin1 text, 'latin1').
            if (x.data.empty()) {
              save_global("__builtin__", "bytes");
              op(')');
              op('R');
            } else {
              save_global("_codecs", "encode");
              std::string text;
              for (char c : x.data) {
                const auto b = static_cast<std::uint8_t>(c);
                if (b < 0x80) {
                  text += c;
                } else {
                  text += static_cast<char>(0xC0 | (b >> 6));
                  text += static_cast<char>(0x80 | (b & 0x3F));
                }
              }
              save_str(text);
              save_str("latin1");
              out_ += '\x86';  // TUPLE2
              op('R');
            }
          } else if constexpr (std::is_same_v<X, RawValue::List>) {
            op(']');  // EMPTY_LIST
            if (!x.empty()) {
              constexpr std::size_t kBatch = 1000;
              for (std::size_t start = 0; start < x.size(); start += kBatch) {
                op('(');
                for (std::size_t k = start; k < std::min(x.size(), start + kBatch); ++k) {
                  save(x[k], depth + 1);
                }
                op('e');  // APPENDS
              }
            }
          } else if constexpr (std::is_same_v<X, RawValue::Tuple>) {
            save_tuple(x.items, depth);
          } else if constexpr (std::is_same_v<X, RawValue::Dict>) {
            if (x.ordered) {
              save_global("collections", "OrderedDict");
              op(')');
              op('R');
            } else {
              op('}');  // EMPTY_DICT
            }
            save_dict_items(x, depth);
          } else if constexpr (std::is_same_v<X, TensorRef>) {
            save_tensor(x);
          } else {
            throw InputError("cannot write '" + path_ + "': the value '" + x.name +
                             "' cannot be saved (only tensors and plain containers)");
          }
        },
        v.variant());
  }

  const std::string& path_;
  std::string out_;
  std::map<std::string, std::uint32_t> memo_;
  std::uint32_t next_memo_ = 0;
};

}  // namespace

std::string pickle_dump(const RawValue& root, const std::string& path) {
  return Pickler(path).dump(root);
}

}  // namespace medicosam::checkpoint
