#include "medicosam/checkpoint/pickle_reader.hpp"

#include <cerrno>
#include <cstring>
#include <deque>
#include <limits>
#include <unordered_map>
#include <vector>

#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

// Opcodes (see CPython's Lib/pickletools.py for their definitions).
enum Op : std::uint8_t {
  MARK = '(',
  STOP = '.',
  POP = '0',
  POP_MARK = '1',
  DUP = '2',
  FLOAT = 'F',
  INT = 'I',
  BININT = 'J',
  BININT1 = 'K',
  LONG = 'L',
  BININT2 = 'M',
  NONE = 'N',
  PERSID = 'P',
  BINPERSID = 'Q',
  REDUCE = 'R',
  STRING = 'S',
  BINSTRING = 'T',
  SHORT_BINSTRING = 'U',
  UNICODE = 'V',
  BINUNICODE = 'X',
  APPEND = 'a',
  BUILD = 'b',
  GLOBAL = 'c',
  DICT = 'd',
  EMPTY_DICT = '}',
  APPENDS = 'e',
  GET = 'g',
  BINGET = 'h',
  INST = 'i',
  LONG_BINGET = 'j',
  LIST = 'l',
  EMPTY_LIST = ']',
  OBJ = 'o',
  PUT = 'p',
  BINPUT = 'q',
  LONG_BINPUT = 'r',
  SETITEM = 's',
  TUPLE = 't',
  EMPTY_TUPLE = ')',
  SETITEMS = 'u',
  BINFLOAT = 'G',
  PROTO = 0x80,
  NEWOBJ = 0x81,
  EXT1 = 0x82,
  EXT2 = 0x83,
  EXT4 = 0x84,
  TUPLE1 = 0x85,
  TUPLE2 = 0x86,
  TUPLE3 = 0x87,
  NEWTRUE = 0x88,
  NEWFALSE = 0x89,
  LONG1 = 0x8a,
  LONG4 = 0x8b,
  BINBYTES = 'B',
  SHORT_BINBYTES = 'C',
  SHORT_BINUNICODE = 0x8c,
  BINUNICODE8 = 0x8d,
  BINBYTES8 = 0x8e,
  EMPTY_SET = 0x8f,
  ADDITEMS = 0x90,
  FROZENSET = 0x91,
  NEWOBJ_EX = 0x92,
  STACK_GLOBAL = 0x93,
  MEMOIZE = 0x94,
  FRAME = 0x95,
  BYTEARRAY8 = 0x96,
  NEXT_BUFFER = 0x97,
  READONLY_BUFFER = 0x98,
};

// Structure limits: far beyond any real checkpoint, low enough that a hostile
// pickle cannot exhaust the stack (nesting) or memory.
constexpr int kMaxDepth = 256;
// Memory: everything the unpickler allocates (graph nodes, container items,
// memo and dict index entries, strings it creates, tensor metadata, and the
// value tree it finally returns, where a memoised object referenced N times
// is copied N times) is charged in bytes against one budget of
// kBudgetFloor + kBudgetPerByte x the pickle's size. A real data.pkl needs
// well under 100 bytes per pickle byte (a list of small ints is the densest
// case); a hostile one that references a large string or tensor a million
// times through BINGET is refused once the copies reach the budget, instead
// of exhausting memory.
constexpr std::uint64_t kBudgetFloor = std::uint64_t{64} << 20;
constexpr std::uint64_t kBudgetPerByte = 128;
// Tensor metadata: torch itself allows at most 64 dimensions (c10's dim limit
// for most kernels is 25); storage keys are str(int) in every torch.save file.
constexpr std::size_t kMaxTensorDims = 64;
constexpr std::size_t kMaxStorageKeyLength = 256;
// The allowed callables take at most 8 arguments.
constexpr std::size_t kMaxCallArgs = 8;

// What the unpickler builds while running: a graph of nodes with reference
// semantics (the memo shares nodes, containers are filled after memoization),
// converted to a value tree only at STOP.
enum class Kind : std::uint8_t {
  None,
  Bool,
  Int,
  Float,
  String,
  Bytes,
  Global,
  Tensor,
  List,
  Tuple,
  Dict
};

struct Node {
  Kind kind = Kind::None;
  bool ordered = false;  // Dict: collections.OrderedDict
  std::int64_t i = 0;    // Bool, Int; Tensor: index into tensors_; String: interned id
  double f = 0.0;
  // String, Bytes; Global: "module.name". A view into the pickle itself or
  // into a string the unpickler made (owned_), never a copy per node.
  std::string_view s;
  std::vector<std::uint32_t> items;  // List, Tuple; Dict: key, value, key, value, ...
};

// A dict entry's identity for Python's "same key replaces" rule: the dict and
// its key, a str (by interned id, so equal texts are equal keys without
// copying or rehashing the text) or an int.
struct DictKey {
  std::uint32_t dict;
  bool is_str;
  std::int64_t key;
  bool operator==(const DictKey& o) const {
    return dict == o.dict && is_str == o.is_str && key == o.key;
  }
};
struct DictKeyHash {
  std::size_t operator()(const DictKey& k) const {
    std::uint64_t h = k.dict * 0x9E3779B97F4A7C15ull;
    h ^= static_cast<std::uint64_t>(k.key) + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h ^ (k.is_str ? 0x5bd1e995u : 0));
  }
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::Bytes:
      return "bytes";
    case Kind::Global:
      return "global";
    case Kind::Tensor:
      return "tensor";
    case Kind::List:
      return "list";
    case Kind::Tuple:
      return "tuple";
    case Kind::Dict:
      return "dict";
  }
  return "object";
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_storage_class(std::string_view g) {
  if (!starts_with(g, "torch.")) return false;
  const std::string_view cls = g.substr(6);
  return cls == "UntypedStorage" || dtype_from_storage_class(cls).has_value();
}

bool is_dtype_global(std::string_view g) {
  return starts_with(g, "torch.") && g.find('.', 6) == std::string_view::npos &&
         dtype_from_name(g.substr(6)).has_value();
}

bool is_tensor_class(std::string_view g) {
  return g == "torch._tensor.Tensor" || g == "torch.Tensor" || g == "torch.nn.parameter.Parameter";
}

// The globals a torch.save file may name; everything else is refused.
bool is_allowed_global(std::string_view g) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch._tensor._rebuild_from_type_v2",
      // Protocol 2 has no bytes opcode: bytes objects are pickled as
      // _codecs.encode(latin1_str, 'latin1'), and b'' as bytes().
      "_codecs.encode",
      "builtins.bytes",
      "__builtin__.bytes",
  };
  for (const char* a : kAllowed) {
    if (g == a) return true;
  }
  return is_storage_class(g) || is_dtype_global(g) || is_tensor_class(g);
}

std::string opcode_name(std::uint8_t op) {
  switch (op) {
    case GLOBAL:
      return "GLOBAL";
    case STACK_GLOBAL:
      return "STACK_GLOBAL";
    case REDUCE:
      return "REDUCE";
    case BUILD:
      return "BUILD";
    case APPEND:
      return "APPEND";
    case APPENDS:
      return "APPENDS";
    case SETITEM:
      return "SETITEM";
    case SETITEMS:
      return "SETITEMS";
    case BINPERSID:
      return "BINPERSID";
    case TUPLE:
      return "TUPLE";
    case NEWOBJ:
      return "NEWOBJ";
    case STOP:
      return "STOP";
    default:
      break;
  }
  static const char* hex = "0123456789abcdef";
  std::string s = "0x";
  s += hex[op >> 4];
  s += hex[op & 15];
  if (op >= 0x20 && op < 0x7f) {
    s += " '";
    s += static_cast<char>(op);
    s += "'";
  }
  return s;
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const std::string& path, const std::string& entry)
      : data_(data), path_(path), entry_(entry) {
    const std::uint64_t per_byte = static_cast<std::uint64_t>(data.size()) * kBudgetPerByte;
    budget_limit_ = kBudgetFloor + per_byte;
    budget_left_ = budget_limit_;
  }

  RawValue run() {
    for (;;) {
      op_pos_ = pos_;
      op_ = read_u8();
      if (op_ == STOP) break;
      step();
    }
    const std::uint32_t root = pop();
    charge(nodes_.size() + sizeof(RawValue));  // on_path_ and the root value
    on_path_.assign(nodes_.size(), 0);
    return to_value(root, 0);
  }

 private:
  // ---- errors -------------------------------------------------------------
  [[noreturn]] void corrupt(const std::string& problem) const {
    throw FormatError("'" + path_ + "' is corrupted: pickle '" + entry_ + "': " + problem +
                      " (opcode " + opcode_name(op_) + " at byte " + std::to_string(op_pos_) + ")");
  }
  [[noreturn]] void refuse_global(std::string_view name) const {
    throw FormatError("refusing to load '" + path_ + "': the pickle names the global '" +
                      std::string(name.substr(0, 200)) +
                      "', which could execute code; only tensors and plain containers are "
                      "allowed");
  }
  // Counts `bytes` of memory against the budget (see kBudgetFloor).
  void charge(std::uint64_t bytes) {
    if (bytes > budget_left_) {
      corrupt("the objects it describes would take more than " +
              std::to_string(budget_limit_ >> 20) +
              " MiB of memory (limit for a pickle of " + std::to_string(data_.size()) +
              " bytes; a large object referenced many times?)");
    }
    budget_left_ -= bytes;
  }

  // ---- input --------------------------------------------------------------
  void need(std::uint64_t n) const {
    if (n > data_.size() - pos_) {
      corrupt("the data ends early (needs " + std::to_string(n) + " more bytes, " +
              std::to_string(data_.size() - pos_) + " left)");
    }
  }
  std::uint8_t read_u8() {
    need(1);
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::uint64_t read_le(int n) {
    need(static_cast<std::uint64_t>(n));
    std::uint64_t v = 0;
    for (int k = 0; k < n; ++k) {
      v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data_[pos_ + k])) << (8 * k);
    }
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  std::string_view read_bytes(std::uint64_t n) {
    need(n);
    std::string_view s = data_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::string_view read_line() {
    const std::size_t nl = data_.find('\n', pos_);
    if (nl == std::string_view::npos) corrupt("a text argument is not terminated by a newline");
    std::string_view s = data_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }

  // ---- nodes and the stack --------------------------------------------------
  std::uint32_t add(Node n) {
    if (nodes_.size() >= std::numeric_limits<std::uint32_t>::max()) corrupt("too many objects");
    charge(sizeof(Node) + n.items.size() * sizeof(std::uint32_t));
    nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  std::uint32_t add(Kind k) {
    Node n;
    n.kind = k;
    return add(std::move(n));
  }
  std::uint32_t add_int(std::int64_t v) {
    Node n;
    n.kind = Kind::Int;
    n.i = v;
    return add(std::move(n));
  }
  // A String / Bytes / Global node for `s`, which must be a view into the
  // pickle or into owned_ (see own()).
  std::uint32_t add_str(Kind k, std::string_view s) {
    Node n;
    n.kind = k;
    n.s = s;
    if (k == Kind::String) {
      // Equal texts get the same id; hashing is paid once per string read.
      n.i = interned_.emplace(s, static_cast<std::uint32_t>(interned_.size())).first->second;
      charge(64);
    }
    return add(std::move(n));
  }
  // Keeps a string the unpickler made (not a view of the input) alive for
  // the nodes that refer to it.
  std::string_view own(std::string s) {
    charge(s.size() + sizeof(std::string));
    owned_.push_back(std::move(s));
    return owned_.back();
  }
  // Appends `items` to container `id`, counted against the budget.
  void extend(std::uint32_t id, const std::vector<std::uint32_t>& items) {
    charge(items.size() * sizeof(std::uint32_t));
    auto& v = nodes_[id].items;
    v.insert(v.end(), items.begin(), items.end());
  }
  void push(std::uint32_t id) { stack_.push_back(id); }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::uint32_t pop() {
    if (stack_.size() <= floor()) corrupt("stack underflow");
    const std::uint32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  std::uint32_t top() const {
    if (stack_.size() <= floor()) corrupt("stack underflow");
    return stack_.back();
  }
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) corrupt("no MARK to pop to");
    const std::size_t k = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(k);
    return items;
  }
  Node& node(std::uint32_t id) { return nodes_[id]; }
  Node& expect(std::uint32_t id, Kind k, const char* what) {
    Node& n = nodes_[id];
    if (n.kind != k) {
      corrupt(std::string(what) + " must be a " + kind_name(k) + ", not a " + kind_name(n.kind));
    }
    return n;
  }
  std::int64_t expect_int(std::uint32_t id, const char* what) {
    Node& n = nodes_[id];
    if (n.kind != Kind::Int && n.kind != Kind::Bool) {
      corrupt(std::string(what) + " must be an int, not a " + kind_name(n.kind));
    }
    return n.i;
  }
  std::vector<std::int64_t> expect_ints(std::uint32_t id, const char* what) {
    Node& n = nodes_[id];
    if (n.kind != Kind::Tuple && n.kind != Kind::List) {
      corrupt(std::string(what) + " must be a tuple of ints, not a " + kind_name(n.kind));
    }
    if (n.items.size() > kMaxTensorDims) {
      corrupt(std::string(what) + " has " + std::to_string(n.items.size()) +
              " dimensions (at most " + std::to_string(kMaxTensorDims) + " are supported)");
    }
    std::vector<std::int64_t> out;
    out.reserve(n.items.size());
    for (std::uint32_t item : n.items) out.push_back(expect_int(item, what));
    return out;
  }

  void memo_put(std::uint64_t index) {
    const std::uint32_t id = top();
    if (memo_.insert_or_assign(index, id).second) charge(64);
  }
  void memo_get(std::uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) corrupt("memo entry " + std::to_string(index) + " is not defined");
    push(it->second);
  }

  // Dict insertion with Python's "same key replaces" rule for the key types
  // that occur in checkpoints (str and int); other keys are appended.
  // The key is never copied: strings are identified by their interned id.
  void dict_set(std::uint32_t dict_id, std::uint32_t key, std::uint32_t value) {
    const Node& k = nodes_[key];
    if (k.kind == Kind::String || k.kind == Kind::Int || k.kind == Kind::Bool) {
      const DictKey dk{dict_id, k.kind == Kind::String, k.i};
      auto [it, inserted] = dict_index_.emplace(dk, nodes_[dict_id].items.size());
      if (!inserted) {
        nodes_[dict_id].items[it->second + 1] = value;
        return;
      }
      charge(64);
    }
    charge(2 * sizeof(std::uint32_t));
    auto& items = nodes_[dict_id].items;
    items.push_back(key);
    items.push_back(value);
  }

  void push_global(std::string_view module, std::string_view name) {
    std::string full;
    full.reserve(module.size() + 1 + name.size());
    full.append(module).append(".").append(name);
    if (!is_allowed_global(full)) refuse_global(full);
    push(add_str(Kind::Global, own(std::move(full))));
  }

  // ---- the interpreter --------------------------------------------------------
  void step() {
    switch (op_) {
      case PROTO: {
        const std::uint8_t proto = read_u8();
        if (proto > 5) corrupt("unsupported pickle protocol " + std::to_string(proto));
        break;
      }
      case FRAME:
        read_le(8);  // frame length: a buffering hint only
        break;
      case MARK:
        marks_.push_back(stack_.size());
        break;
      case POP:
        if (stack_.size() > floor()) {
          stack_.pop_back();
        } else {
          pop_mark();
        }
        break;
      case POP_MARK:
        pop_mark();
        break;
      case DUP:
        push(top());
        break;

      // -- scalars
      case NONE:
        push(add(Kind::None));
        break;
      case NEWTRUE:
      case NEWFALSE: {
        Node n;
        n.kind = Kind::Bool;
        n.i = op_ == NEWTRUE ? 1 : 0;
        push(add(std::move(n)));
        break;
      }
      case BININT:
        push(add_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)))));
        break;
      case BININT1:
        push(add_int(read_u8()));
        break;
      case BININT2:
        push(add_int(static_cast<std::int64_t>(read_le(2))));
        break;
      case LONG1:
        push(add_int(decode_long(read_bytes(read_u8()))));
        break;
      case LONG4: {
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)));
        if (n < 0) corrupt("negative LONG4 length");
        push(add_int(decode_long(read_bytes(static_cast<std::uint64_t>(n)))));
        break;
      }
      case INT:
        text_int(read_line(), /*allow_bool=*/true);
        break;
      case LONG: {
        std::string_view s = read_line();
        if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
        text_int(s, /*allow_bool=*/false);
        break;
      }
      case BINFLOAT: {
        // Big-endian IEEE double.
        std::uint64_t bits = 0;
        for (char c : read_bytes(8)) bits = (bits << 8) | static_cast<std::uint8_t>(c);
        Node n;
        n.kind = Kind::Float;
        std::memcpy(&n.f, &bits, sizeof bits);
        push(add(std::move(n)));
        break;
      }
      case FLOAT: {
        const std::string s(read_line());
        char* end = nullptr;
        Node n;
        n.kind = Kind::Float;
        n.f = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) corrupt("malformed float '" + s + "'");
        push(add(std::move(n)));
        break;
      }

      // -- strings and bytes
      case BINUNICODE:
        push(add_str(Kind::String, read_bytes(read_le(4))));
        break;
      case SHORT_BINUNICODE:
        push(add_str(Kind::String, read_bytes(read_u8())));
        break;
      case BINUNICODE8:
        push(add_str(Kind::String, read_bytes(read_le(8))));
        break;
      case BINSTRING: {
        // Python 2 str: torch.load decodes these as ASCII; keep them as text.
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)));
        if (n < 0) corrupt("negative BINSTRING length");
        push(add_str(Kind::String, read_bytes(static_cast<std::uint64_t>(n))));
        break;
      }
      case SHORT_BINSTRING:
        push(add_str(Kind::String, read_bytes(read_u8())));
        break;
      case BINBYTES:
        push(add_str(Kind::Bytes, read_bytes(read_le(4))));
        break;
      case SHORT_BINBYTES:
        push(add_str(Kind::Bytes, read_bytes(read_u8())));
        break;
      case BINBYTES8:
      case BYTEARRAY8:
        push(add_str(Kind::Bytes, read_bytes(read_le(8))));
        break;

      // -- containers
      case EMPTY_TUPLE:
        push(add(Kind::Tuple));
        break;
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        const std::size_t n = op_ == TUPLE1 ? 1 : op_ == TUPLE2 ? 2 : 3;
        Node t;
        t.kind = Kind::Tuple;
        t.items.resize(n);
        for (std::size_t k = n; k-- > 0;) t.items[k] = pop();
        push(add(std::move(t)));
        break;
      }
      case TUPLE:
      case LIST:
      case FROZENSET: {
        Node t;
        t.kind = op_ == TUPLE ? Kind::Tuple : Kind::List;
        t.items = pop_mark();
        push(add(std::move(t)));
        break;
      }
      case EMPTY_LIST:
      case EMPTY_SET:  // sets come back as lists; checkpoints do not use them
        push(add(Kind::List));
        break;
      case APPEND: {
        const std::uint32_t item = pop();
        expect(top(), Kind::List, "the target of APPEND");
        extend(top(), {item});
        break;
      }
      case APPENDS:
      case ADDITEMS: {
        std::vector<std::uint32_t> items = pop_mark();
        expect(top(), Kind::List, "the target of APPENDS");
        extend(top(), items);
        break;
      }
      case EMPTY_DICT:
        push(add(Kind::Dict));
        break;
      case DICT: {
        std::vector<std::uint32_t> items = pop_mark();
        if (items.size() % 2 != 0) corrupt("odd number of items for a dict");
        const std::uint32_t d = add(Kind::Dict);
        for (std::size_t k = 0; k < items.size(); k += 2) dict_set(d, items[k], items[k + 1]);
        push(d);
        break;
      }
      case SETITEM: {
        const std::uint32_t value = pop();
        const std::uint32_t key = pop();
        const std::uint32_t d = top();
        expect(d, Kind::Dict, "the target of SETITEM");
        dict_set(d, key, value);
        break;
      }
      case SETITEMS: {
        std::vector<std::uint32_t> items = pop_mark();
        if (items.size() % 2 != 0) corrupt("odd number of items for SETITEMS");
        const std::uint32_t d = top();
        expect(d, Kind::Dict, "the target of SETITEMS");
        for (std::size_t k = 0; k < items.size(); k += 2) dict_set(d, items[k], items[k + 1]);
        break;
      }

      // -- memo
      case BINPUT:
        memo_put(read_u8());
        break;
      case LONG_BINPUT:
        memo_put(read_le(4));
        break;
      case PUT:
        memo_put(text_index(read_line()));
        break;
      case MEMOIZE:
        memo_put(memo_.size());
        break;
      case BINGET:
        memo_get(read_u8());
        break;
      case LONG_BINGET:
        memo_get(read_le(4));
        break;
      case GET:
        memo_get(text_index(read_line()));
        break;

      // -- globals and calls: restricted
      case GLOBAL: {
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        push_global(module, name);
        break;
      }
      case STACK_GLOBAL: {
        const std::uint32_t name = pop();
        const std::uint32_t module = pop();
        const std::string_view m = expect(module, Kind::String, "the module of STACK_GLOBAL").s;
        const std::string_view n = expect(name, Kind::String, "the name of STACK_GLOBAL").s;
        push_global(m, n);
        break;
      }
      case INST: {
        // Names a class inline and instantiates it: refuse by name.
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        refuse_global(std::string(module.substr(0, 100)) + "." + std::string(name.substr(0, 100)));
      }
      case REDUCE: {
        const std::uint32_t args = pop();
        const std::uint32_t callable = pop();
        push(call(callable, args));
        break;
      }
      case NEWOBJ: {
        const std::uint32_t args = pop();
        const std::uint32_t cls = pop();
        push(new_object(cls, args));
        break;
      }
      case NEWOBJ_EX: {
        const std::uint32_t kwargs = pop();
        const std::uint32_t args = pop();
        const std::uint32_t cls = pop();
        if (!expect(kwargs, Kind::Dict, "NEWOBJ_EX keyword arguments").items.empty()) {
          corrupt("keyword arguments to a constructor are not supported");
        }
        push(new_object(cls, args));
        break;
      }
      case BUILD: {
        pop();  // the state
        const Node& target = nodes_[top()];
        // OrderedDict state is `{'_metadata': ...}` (module versions) and tensor
        // state is Python attributes; neither affects the weights.
        if (target.kind != Kind::Dict && target.kind != Kind::Tensor) {
          corrupt(std::string("cannot set the state of a ") + kind_name(target.kind));
        }
        break;
      }
      case BINPERSID:
        push(persistent_load(pop()));
        break;
      case PERSID:
        corrupt("text persistent ids are not used by torch.save");

      case OBJ:
      case EXT1:
      case EXT2:
      case EXT4:
        corrupt("object construction through " + opcode_name(op_) + " is not allowed");
      default:
        corrupt("unsupported pickle opcode");
    }
  }

  // Two's-complement little-endian integer of any length, which must fit int64.
  std::int64_t decode_long(std::string_view bytes) {
    if (bytes.empty()) return 0;
    const bool negative = static_cast<std::uint8_t>(bytes.back()) & 0x80;
    // Bytes beyond the 8th must only repeat the sign.
    for (std::size_t k = 8; k < bytes.size(); ++k) {
      if (static_cast<std::uint8_t>(bytes[k]) != (negative ? 0xFF : 0x00)) {
        corrupt("integer does not fit in 64 bits");
      }
    }
    std::uint64_t v = negative ? ~std::uint64_t{0} : 0;
    const std::size_t n = std::min<std::size_t>(bytes.size(), 8);
    for (std::size_t k = 0; k < n; ++k) {
      v &= ~(std::uint64_t{0xFF} << (8 * k));
      v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(bytes[k])) << (8 * k);
    }
    if (bytes.size() > 8 && ((v >> 63) != 0) != negative)
      corrupt("integer does not fit in 64 bits");
    return static_cast<std::int64_t>(v);
  }

  void text_int(std::string_view s, bool allow_bool) {
    if (allow_bool && (s == "00" || s == "01")) {  // protocol 0 False / True
      Node n;
      n.kind = Kind::Bool;
      n.i = s == "01";
      push(add(std::move(n)));
      return;
    }
    const std::string str(s);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(str.c_str(), &end, 10);
    if (str.empty() || end != str.c_str() + str.size() || errno == ERANGE) {
      corrupt("malformed integer '" + str + "'");
    }
    push(add_int(v));
  }

  std::uint64_t text_index(std::string_view s) {
    const std::string str(s);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(str.c_str(), &end, 10);
    if (str.empty() || str[0] == '-' || end != str.c_str() + str.size() || errno == ERANGE) {
      corrupt("malformed memo index '" + str + "'");
    }
    return v;
  }

  // ('storage', StorageClass, key, location, numel) -> the whole storage as a
  // 1-D tensor; _rebuild_tensor_* then takes views of it.
  std::uint32_t persistent_load(std::uint32_t pid_id) {
    const Node& pid = nodes_[pid_id];
    if (pid.kind != Kind::Tuple || pid.items.size() < 5) {
      corrupt("persistent id must be a ('storage', type, key, location, numel) tuple");
    }
    const Node& tag = nodes_[pid.items[0]];
    if ((tag.kind != Kind::String && tag.kind != Kind::Bytes) || tag.s != "storage") {
      corrupt("only storages may be loaded by persistent id");
    }
    const Node& type = nodes_[pid.items[1]];
    if (type.kind != Kind::Global || !is_storage_class(type.s)) {
      corrupt("persistent id names a storage of unknown type");
    }
    const Node& key = nodes_[pid.items[2]];
    TensorRef t;
    if (key.kind == Kind::String || key.kind == Kind::Bytes) {
      if (key.s.size() > kMaxStorageKeyLength) {
        corrupt("storage key of " + std::to_string(key.s.size()) + " bytes (at most " +
                std::to_string(kMaxStorageKeyLength) + ")");
      }
      t.storage_key = std::string(key.s);
    } else if (key.kind == Kind::Int) {
      t.storage_key = std::to_string(key.i);
    } else {
      corrupt("storage key must be a string");
    }
    // Keys become zip entry names: keep them to plain names.
    if (t.storage_key.empty() || t.storage_key.find('/') != std::string::npos ||
        t.storage_key.find('\0') != std::string::npos || t.storage_key == "..") {
      corrupt("invalid storage key '" + t.storage_key + "'");
    }
    const std::string_view cls = type.s.substr(6);
    t.dtype = cls == "UntypedStorage" ? DType::UInt8 : *dtype_from_storage_class(cls);
    t.storage_numel = expect_int(pid.items[4], "storage size");
    if (t.storage_numel < 0) corrupt("negative storage size");
    t.sizes = {t.storage_numel};
    t.strides = {1};
    return add_tensor(std::move(t));
  }

  static std::uint64_t tensor_bytes(const TensorRef& t) {
    return sizeof(TensorRef) + t.storage_key.size() +
           (t.sizes.size() + t.strides.size()) * sizeof(std::int64_t);
  }
  std::uint32_t add_tensor(TensorRef t) {
    charge(tensor_bytes(t));
    tensors_.push_back(std::move(t));
    Node n;
    n.kind = Kind::Tensor;
    n.i = static_cast<std::int64_t>(tensors_.size() - 1);
    return add(std::move(n));
  }
  const TensorRef& tensor_of(std::uint32_t id, const char* what) {
    return tensors_[static_cast<std::size_t>(expect(id, Kind::Tensor, what).i)];
  }

  // The items of an argument tuple (copied: nodes_ may grow while they are used).
  std::vector<std::uint32_t> call_args(std::uint32_t args_id, const char* what) {
    const Node& a = expect(args_id, Kind::Tuple, what);
    if (a.items.size() > kMaxCallArgs) {
      corrupt(std::string(what) + " are " + std::to_string(a.items.size()) + " values");
    }
    return a.items;
  }

  std::uint32_t call(std::uint32_t callable_id, std::uint32_t args_id) {
    const std::string fn(expect(callable_id, Kind::Global, "the callable of REDUCE").s);
    const std::vector<std::uint32_t> args = call_args(args_id, "the arguments of REDUCE");
    auto need_args = [&](std::size_t lo, std::size_t hi) {
      if (args.size() < lo || args.size() > hi) {
        corrupt(fn + " called with " + std::to_string(args.size()) + " arguments");
      }
    };

    if (fn == "collections.OrderedDict") {
      need_args(0, 1);
      const std::uint32_t d = add(Kind::Dict);
      node(d).ordered = true;
      if (args.size() == 1) {  // OrderedDict([(k, v), ...])
        const Node& list = expect(args[0], Kind::List, "the argument of OrderedDict");
        charge(list.items.size() * sizeof(std::uint32_t));  // the copy, and bounds the work
        const std::vector<std::uint32_t> pairs = list.items;
        for (std::uint32_t p : pairs) {
          const Node& pair = nodes_[p];
          if ((pair.kind != Kind::Tuple && pair.kind != Kind::List) || pair.items.size() != 2) {
            corrupt("OrderedDict items must be (key, value) pairs");
          }
          dict_set(d, pair.items[0], pair.items[1]);
        }
      }
      return d;
    }
    if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor_v3") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks
      //  [, dtype (v3)] [, metadata])
      const bool v3 = fn.back() == '3';
      need_args(v3 ? 7 : 6, v3 ? 8 : 7);
      TensorRef t = tensor_of(args[0], "the storage of a tensor");
      if (v3) {
        const Node& dt = expect(args[6], Kind::Global, "the dtype of a tensor");
        if (!is_dtype_global(dt.s)) corrupt("unknown tensor dtype '" + std::string(dt.s) + "'");
        const DType dtype = *dtype_from_name(dt.s.substr(6));
        const std::uint64_t bytes =
            static_cast<std::uint64_t>(t.storage_numel) * dtype_size(t.dtype);
        t.dtype = dtype;
        t.storage_numel = static_cast<std::int64_t>(bytes / dtype_size(dtype));
      }
      t.storage_offset = expect_int(args[1], "the storage offset of a tensor");
      t.sizes = expect_ints(args[2], "the size of a tensor");
      t.strides = expect_ints(args[3], "the stride of a tensor");
      t.requires_grad = nodes_[args[4]].kind == Kind::Bool && nodes_[args[4]].i != 0;
      if (t.sizes.size() != t.strides.size()) corrupt("tensor size and stride differ in length");
      return add_tensor(std::move(t));
    }
    if (fn == "torch._utils._rebuild_parameter" ||
        fn == "torch._utils._rebuild_parameter_with_state") {
      // (data, requires_grad, backward_hooks [, state])
      need_args(3, 4);
      TensorRef t = tensor_of(args[0], "the data of a parameter");
      t.requires_grad = nodes_[args[1]].kind == Kind::Bool && nodes_[args[1]].i != 0;
      return add_tensor(std::move(t));
    }
    if (fn == "torch._tensor._rebuild_from_type_v2") {
      // (func, new_type, args, state): a tensor with Python attributes.
      need_args(4, 4);
      const std::string_view type = expect(args[1], Kind::Global, "the type of a tensor").s;
      if (!is_tensor_class(type)) refuse_global(type);
      const std::uint32_t inner = call(args[0], args[2]);
      expect(inner, Kind::Tensor, "the result of _rebuild_from_type_v2");
      return inner;
    }
    if (fn == "_codecs.encode") {
      need_args(2, 2);
      const std::string_view text = expect(args[0], Kind::String, "the text of a bytes object").s;
      const std::string_view enc =
          expect(args[1], Kind::String, "the encoding of a bytes object").s;
      if (enc != "latin1" && enc != "latin-1") {
        corrupt("bytes encoded as '" + std::string(enc.substr(0, 100)) +
                "' (only latin1 is used by pickle)");
      }
      charge(text.size());  // before making the copy
      return add_str(Kind::Bytes, own(latin1_from_utf8(text)));
    }
    if (fn == "builtins.bytes" || fn == "__builtin__.bytes") {
      need_args(0, 0);
      return add(Kind::Bytes);
    }
    corrupt("'" + fn + "' cannot be called");
  }

  std::uint32_t new_object(std::uint32_t cls_id, std::uint32_t args_id) {
    const std::string cls(expect(cls_id, Kind::Global, "the class of NEWOBJ").s);
    const std::vector<std::uint32_t> args = call_args(args_id, "the arguments of NEWOBJ");
    if (cls == "collections.OrderedDict" && args.empty()) {
      const std::uint32_t d = add(Kind::Dict);
      node(d).ordered = true;
      return d;
    }
    if (cls == "torch.nn.parameter.Parameter" && !args.empty() && args.size() <= 2) {
      TensorRef t = tensor_of(args[0], "the data of a parameter");
      t.requires_grad = args.size() < 2 || nodes_[args[1]].i != 0;
      return add_tensor(std::move(t));
    }
    corrupt("cannot construct a '" + cls + "'");
  }

  // Inverse of pickle's bytes -> str(b, 'latin1'): every code point is one byte.
  std::string latin1_from_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t k = 0; k < s.size();) {
      const auto c = static_cast<std::uint8_t>(s[k]);
      if (c < 0x80) {
        out += static_cast<char>(c);
        k += 1;
      } else if ((c & 0xE0) == 0xC0 && k + 1 < s.size()) {
        const std::uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<std::uint8_t>(s[k + 1]) & 0x3Fu);
        if (cp > 0xFF) corrupt("bytes object holds a character above U+00FF");
        out += static_cast<char>(cp);
        k += 2;
      } else {
        corrupt("bytes object holds a character above U+00FF");
      }
    }
    return out;
  }

  // ---- graph -> value tree ----------------------------------------------------
  RawValue to_value(std::uint32_t id, int depth) {
    if (depth > kMaxDepth)
      corrupt("objects are nested more than " + std::to_string(kMaxDepth) + " deep");
    // Every value of the tree is a copy: a memoised object referenced N times
    // costs N times its size. The value itself was charged by its container
    // (or run(), for the root); here its heap parts are.
    const Node& n = nodes_[id];
    switch (n.kind) {
      case Kind::None:
        return RawValue();
      case Kind::Bool:
        return RawValue(n.i != 0);
      case Kind::Int:
        return RawValue(n.i);
      case Kind::Float:
        return RawValue(n.f);
      case Kind::String:
        charge(n.s.size());
        return RawValue(std::string(n.s));
      case Kind::Bytes:
        charge(n.s.size());
        return RawValue(RawValue::Bytes{std::string(n.s)});
      case Kind::Global:
        charge(n.s.size());
        return RawValue(RawValue::Opaque{std::string(n.s)});
      case Kind::Tensor: {
        const TensorRef& t = tensors_[static_cast<std::size_t>(n.i)];
        charge(tensor_bytes(t));
        return RawValue(t);
      }
      default:
        break;
    }
    if (on_path_[id]) corrupt("the object graph contains a cycle");
    on_path_[id] = 1;
    charge(n.items.size() * sizeof(RawValue));  // before reserving the items
    RawValue out;
    if (n.kind == Kind::List || n.kind == Kind::Tuple) {
      std::vector<RawValue> items;
      items.reserve(n.items.size());
      for (std::uint32_t item : n.items) items.push_back(to_value(item, depth + 1));
      out = n.kind == Kind::List ? RawValue(std::move(items)) : RawValue::tuple(std::move(items));
    } else {
      RawValue::Dict d;
      d.ordered = n.ordered;
      d.items.reserve(n.items.size() / 2);
      for (std::size_t k = 0; k + 1 < n.items.size(); k += 2) {
        d.append(to_value(n.items[k], depth + 1), to_value(n.items[k + 1], depth + 1));
      }
      out = RawValue(std::move(d));
    }
    on_path_[id] = 0;
    return out;
  }

  std::string_view data_;
  const std::string& path_;
  const std::string& entry_;
  std::size_t pos_ = 0;
  std::size_t op_pos_ = 0;
  std::uint8_t op_ = 0;

  std::vector<Node> nodes_;
  std::vector<TensorRef> tensors_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, std::uint32_t> memo_;
  std::unordered_map<std::string_view, std::uint32_t> interned_;  // text -> id
  std::unordered_map<DictKey, std::size_t, DictKeyHash> dict_index_;
  std::deque<std::string> owned_;  // strings made here (stable addresses)
  std::vector<std::uint8_t> on_path_;
  std::uint64_t budget_limit_ = 0;
  std::uint64_t budget_left_ = 0;
};

}  // namespace

RawValue unpickle(std::string_view data, const std::string& path, const std::string& entry) {
  return Unpickler(data, path, entry).run();
}

}  // namespace medicosam::checkpoint
