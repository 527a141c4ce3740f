// The restricted unpickler on hand-made pickles, and the pickle writer's round trip.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/pickle_reader.hpp"
#include "medicosam/checkpoint/pickle_writer.hpp"
#include "medicosam/checkpoint/zip_reader.hpp"
#include "medicosam/core/error.hpp"
#include "test_util.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::message_of;

// Assembles pickle bytes opcode by opcode (string literals with \x escapes are
// too easy to get wrong).
class P {
 public:
  P() = default;
  P& op(int c) {
    s_ += static_cast<char>(c);
    return *this;
  }
  P& proto(int v) { return op(0x80).op(v); }
  P& u32(std::uint32_t v) {
    for (int k = 0; k < 4; ++k) op((v >> (8 * k)) & 0xFF);
    return *this;
  }
  P& str(const std::string& v) {  // BINUNICODE
    op('X').u32(static_cast<std::uint32_t>(v.size()));
    s_ += v;
    return *this;
  }
  P& short_str(const std::string& v) {  // SHORT_BINUNICODE
    op(0x8c).op(static_cast<int>(v.size()));
    s_ += v;
    return *this;
  }
  P& int1(int v) { return op('K').op(v); }
  P& global(const std::string& module, const std::string& name) {
    op('c');
    s_ += module + "\n" + name + "\n";
    return *this;
  }
  P& raw(const std::string& bytes) {
    s_ += bytes;
    return *this;
  }
  P& stop() { return op('.'); }
  const std::string& bytes() const { return s_; }

 private:
  std::string s_;
};

RawValue load(const P& p) {
  return unpickle(p.bytes(), "test.pth", "test/data.pkl");
}

std::string error_of(const P& p) {
  return message_of<FormatError>([&] { load(p); });
}

TEST(Unpickle, PlainContainersAndScalars) {
  // {'a': 1, 'b': [300, -5, 2**40, None, True, 'x', 0.25], 'c': (1, 2, 3, 4)}
  P p;
  p.proto(2).op('}').op('(');
  p.str("a").int1(1);
  p.str("b").op(']').op('(');
  p.op('M').op(300 & 0xFF).op(300 >> 8);                             // BININT2 300
  p.op('J').u32(static_cast<std::uint32_t>(-5));                     // BININT -5
  p.op(0x8a).op(6).raw(std::string("\x00\x00\x00\x00\x00\x01", 6));  // LONG1 2**40
  p.op('N').op(0x88).str("x");
  p.op('G').raw(std::string("\x3f\xd0\x00\x00\x00\x00\x00\x00", 8));  // BINFLOAT 0.25
  p.op('e');                                                          // APPENDS
  p.str("c").op('(').int1(1).int1(2).int1(3).int1(4).op('t');
  p.op('u').stop();
  const RawValue v = load(p);
  const auto* d = v.get_if<RawValue::Dict>();
  ASSERT_NE(d, nullptr);
  EXPECT_FALSE(d->ordered);
  ASSERT_EQ(d->size(), 3u);
  EXPECT_EQ(*d->find("a")->get_if<std::int64_t>(), 1);
  const auto& list = *d->find("b")->get_if<RawValue::List>();
  ASSERT_EQ(list.size(), 7u);
  EXPECT_EQ(*list[0].get_if<std::int64_t>(), 300);
  EXPECT_EQ(*list[1].get_if<std::int64_t>(), -5);
  EXPECT_EQ(*list[2].get_if<std::int64_t>(), std::int64_t{1} << 40);
  EXPECT_TRUE(list[3].is_none());
  EXPECT_EQ(*list[4].get_if<bool>(), true);
  EXPECT_EQ(*list[5].get_if<std::string>(), "x");
  EXPECT_EQ(*list[6].get_if<double>(), 0.25);
  const auto& tuple = *d->find("c")->get_if<RawValue::Tuple>();
  ASSERT_EQ(tuple.items.size(), 4u);
  EXPECT_EQ(*tuple.items[3].get_if<std::int64_t>(), 4);
}

TEST(Unpickle, LongIntegersSignExtendAndOverflowIsAnError) {
  P neg;  // LONG1 with 9 bytes: -2 with a redundant sign byte
  neg.proto(2).op(0x8a).op(9).raw(std::string("\xFE\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 9)).stop();
  EXPECT_EQ(*load(neg).get_if<std::int64_t>(), -2);
  P big;  // 2**64 does not fit
  big.proto(2).op(0x8a).op(9).raw(std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x01", 9)).stop();
  EXPECT_NE(error_of(big).find("does not fit in 64 bits"), std::string::npos);
}

TEST(Unpickle, MemoSharesObjectsFilledAfterMemoization) {
  // l = []; d = {'a': l, 'b': l}; then l.append(7) through the memo.
  P p;
  p.proto(2).op('}').op('(').str("a").op(']').op('q').op(0).str("b").op('h').op(0).op('u');
  p.op('h').op(0).int1(7).op('a').op('0');  // BINGET 0, APPEND 7, POP
  p.stop();
  const RawValue v = load(p);
  const auto& d = *v.get_if<RawValue::Dict>();
  for (const char* k : {"a", "b"}) {
    const auto& l = *d.find(k)->get_if<RawValue::List>();
    ASSERT_EQ(l.size(), 1u) << k;
    EXPECT_EQ(*l[0].get_if<std::int64_t>(), 7);
  }
}

TEST(Unpickle, Protocol4FramesMemoizeAndStackGlobal) {
  P p;
  p.proto(4).op(0x95).raw(std::string(8, '\0'));  // FRAME (length is only a hint)
  p.short_str("collections").op(0x94).short_str("OrderedDict").op(0x94).op(0x93).op(0x94);
  p.op(')').op('R').op(0x94);  // OrderedDict()
  p.op('(').short_str("k").int1(9).op('u');
  p.op('h').op(2).op(')').op('R').op('0');  // fetch the class from the memo again, call, drop
  p.stop();
  const RawValue v = load(p);
  const auto& d = *v.get_if<RawValue::Dict>();
  EXPECT_TRUE(d.ordered);
  EXPECT_EQ(*d.find("k")->get_if<std::int64_t>(), 9);
}

TEST(Unpickle, Protocol2BytesThroughCodecsEncode) {
  P p;
  // b'a\xff\x00z' is pickled as the text 'a\u00ff\u0000z' (UTF-8 in BINUNICODE).
  p.proto(2).global("_codecs", "encode").str(std::string("a\xc3\xbf\x00z", 5)).str("latin1");
  p.op(0x86).op('R').stop();
  const RawValue v = load(p);
  ASSERT_TRUE(v.is<RawValue::Bytes>());
  EXPECT_EQ(v.get_if<RawValue::Bytes>()->data, std::string("a\xff\x00z", 4));
  P empty;
  empty.proto(2).global("__builtin__", "bytes").op(')').op('R').stop();
  EXPECT_EQ(load(empty).get_if<RawValue::Bytes>()->data, "");
}

TEST(Unpickle, TensorFromPersistentStorage) {
  // _rebuild_tensor_v2(('storage', FloatStorage, '3', 'cuda:0', 24), 2, (2, 3), (6, 2), False,
  // OrderedDict())
  P p;
  p.proto(2).global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').str("storage").global("torch", "FloatStorage").str("3").str("cuda:0").int1(24).op('t');
  p.op('Q').int1(2).int1(2).int1(3).op(0x86).int1(6).int1(2).op(0x86).op(0x89);
  p.global("collections", "OrderedDict").op(')').op('R').op('t').op('R').stop();
  const RawValue v = load(p);
  const auto* t = v.get_if<TensorRef>();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->storage_key, "3");
  EXPECT_EQ(t->dtype, DType::Float32);
  EXPECT_EQ(t->storage_numel, 24);
  EXPECT_EQ(t->storage_offset, 2);
  EXPECT_EQ(t->sizes, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(t->strides, (std::vector<std::int64_t>{6, 2}));
}

TEST(Unpickle, RebuildTensorV3RetypesAnUntypedStorage) {
  P p;
  p.proto(2).global("torch._utils", "_rebuild_tensor_v3").op('(');
  p.op('(').str("storage").global("torch", "UntypedStorage").str("0").str("cpu").int1(8).op('t');
  p.op('Q').int1(0).int1(4).op(0x85).int1(1).op(0x85).op(0x89).op('}');
  p.global("torch", "float16").op('t').op('R').stop();
  const RawValue v = load(p);
  const auto* t = v.get_if<TensorRef>();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::Float16);
  EXPECT_EQ(t->storage_numel, 4);
}

TEST(Unpickle, RefusesOsSystemViaGlobal) {
  P p;
  p.proto(2).global("os", "system").str("touch /tmp/medicosam_pwned").op(0x85).op('R').stop();
  const std::string msg = error_of(p);
  EXPECT_NE(msg.find("'os.system'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'test.pth'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("could execute code"), std::string::npos) << msg;
}

TEST(Unpickle, RefusesOsSystemViaStackGlobal) {
  P p;
  p.proto(4).short_str("os").short_str("system").op(0x93).short_str("echo pwned").op(0x85);
  p.op('R').stop();
  const std::string msg = error_of(p);
  EXPECT_NE(msg.find("'os.system'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'test.pth'"), std::string::npos) << msg;
}

TEST(Unpickle, RefusesOtherDangerousGlobalsAndInst) {
  for (const auto& [module, name] :
       std::vector<std::pair<std::string, std::string>>{{"builtins", "eval"},
                                                        {"posix", "system"},
                                                        {"subprocess", "Popen"},
                                                        {"torch", "load"},
                                                        {"collections", "defaultdict"},
                                                        {"numpy", "load"}}) {
    P p;
    p.proto(2).global(module, name).stop();
    EXPECT_NE(error_of(p).find("'" + module + "." + name + "'"), std::string::npos) << name;
  }
  P inst;
  inst.proto(2).op('(').str("ls").op('i').raw("subprocess\nPopen\n").stop();
  EXPECT_NE(error_of(inst).find("'subprocess.Popen'"), std::string::npos);
}

TEST(Unpickle, AllowedClassesCannotBeCalledArbitrarily) {
  P p;
  p.proto(2).global("torch", "FloatStorage").op(')').op('R').stop();
  EXPECT_NE(error_of(p).find("cannot be called"), std::string::npos);
}

TEST(Unpickle, MalformedStreamsAreFormatErrors) {
  struct Case {
    const char* what;
    P pickle;
    const char* expected;
  };
  std::vector<Case> cases;
  cases.push_back({"underflow", P().proto(2).op('a'), "stack underflow"});
  cases.push_back({"memo miss", P().proto(2).op('h').op(5), "memo entry 5 is not defined"});
  cases.push_back({"unknown opcode", P().proto(2).op(0xff), "unsupported pickle opcode"});
  cases.push_back({"truncated string", P().proto(2).op('X').u32(1000).raw("abc"), "ends early"});
  cases.push_back({"no STOP", P().proto(2).op('N'), "ends early"});
  cases.push_back({"empty", P(), "ends early"});
  cases.push_back({"bad protocol", P().proto(9), "unsupported pickle protocol"});
  cases.push_back(
      {"setitem on list", P().proto(2).op(']').int1(1).int1(2).op('s'), "must be a dict"});
  cases.push_back({"pop mark without mark", P().proto(2).op('1'), "no MARK"});
  cases.push_back({"mark hides stack", P().proto(2).op('N').op('(').op('a'), "stack underflow"});
  cases.push_back({"unterminated GLOBAL", P().proto(2).raw("ccollections"), "not terminated"});
  cases.push_back({"bad persid", P().proto(2).str("x").op('Q'), "persistent id"});
  for (const auto& c : cases) {
    const std::string msg = error_of(c.pickle);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find("'test.pth'"), std::string::npos) << c.what << ": " << msg;
  }
}

TEST(Unpickle, CyclesAreRefused) {
  P p;  // l = []; l.append(l)
  p.proto(2).op(']').op('q').op(0).op('h').op(0).op('a').stop();
  EXPECT_NE(error_of(p).find("cycle"), std::string::npos);
}

TEST(Unpickle, DeepNestingIsRefusedWithoutCrashing) {
  P p;
  p.proto(2);
  for (int k = 0; k < 100000; ++k) p.op(']');
  for (int k = 0; k < 99999; ++k) p.op('a');
  p.stop();
  EXPECT_NE(error_of(p).find("nested more than"), std::string::npos);
}

TEST(Unpickle, SharedReferenceExplosionIsRefused) {
  // x = []; repeat 64 times: x = (x, x)  -> 2**64 leaves if expanded.
  P p;
  p.proto(2).op(']');
  for (int k = 0; k < 64; ++k) p.op('2').op(0x86);
  p.stop();
  EXPECT_NE(error_of(p).find("MiB of memory"), std::string::npos);
}

bool same(const RawValue& a, const RawValue& b) {
  if (a.variant().index() != b.variant().index()) return false;
  if (const auto* t = a.get_if<TensorRef>()) {
    const auto& u = *b.get_if<TensorRef>();
    return t->storage_key == u.storage_key && t->dtype == u.dtype &&
           t->storage_numel == u.storage_numel && t->storage_offset == u.storage_offset &&
           t->sizes == u.sizes && t->strides == u.strides && t->requires_grad == u.requires_grad;
  }
  if (const auto* l = a.get_if<RawValue::List>()) {
    const auto& m = *b.get_if<RawValue::List>();
    if (l->size() != m.size()) return false;
    for (std::size_t k = 0; k < l->size(); ++k) {
      if (!same((*l)[k], m[k])) return false;
    }
    return true;
  }
  if (const auto* t = a.get_if<RawValue::Tuple>()) {
    return same(RawValue(t->items), RawValue(b.get_if<RawValue::Tuple>()->items));
  }
  if (const auto* d = a.get_if<RawValue::Dict>()) {
    const auto& e = *b.get_if<RawValue::Dict>();
    if (d->ordered != e.ordered || d->size() != e.size()) return false;
    for (std::size_t k = 0; k < d->size(); ++k) {
      if (!same(d->items[k].first, e.items[k].first) ||
          !same(d->items[k].second, e.items[k].second)) {
        return false;
      }
    }
    return true;
  }
  if (const auto* s = a.get_if<RawValue::Bytes>())
    return s->data == b.get_if<RawValue::Bytes>()->data;
  if (const auto* o = a.get_if<RawValue::Opaque>())
    return o->name == b.get_if<RawValue::Opaque>()->name;
  if (a.is_none()) return true;
  if (const auto* x = a.get_if<bool>()) return *x == *b.get_if<bool>();
  if (const auto* x = a.get_if<std::int64_t>()) return *x == *b.get_if<std::int64_t>();
  if (const auto* x = a.get_if<double>()) {
    return std::memcmp(x, b.get_if<double>(), sizeof(double)) == 0;
  }
  return *a.get_if<std::string>() == *b.get_if<std::string>();
}

TEST(PickleWriter, RoundTripsEveryValueKind) {
  TensorRef t;
  t.storage_key = "0";
  t.dtype = DType::BFloat16;
  t.storage_numel = 12;
  t.sizes = {3, 4};
  t.strides = {4, 1};
  TensorRef u = t;
  u.storage_key = "1";
  u.dtype = DType::Bool;
  u.sizes = {};
  u.strides = {};
  u.storage_numel = 1;
  u.requires_grad = true;

  RawValue::Dict inner;
  inner.append(RawValue(0), RawValue(t));
  inner.append(RawValue(1), RawValue(u));
  RawValue::Dict sd;
  sd.ordered = true;
  sd.set("image_encoder.x", RawValue(t));
  RawValue::List many;
  for (int k = 0; k < 2500; ++k) many.emplace_back(k);  // more than one APPENDS batch
  RawValue::Dict root;
  root.set("model_state", RawValue(sd));
  root.set("state", RawValue(inner));
  root.set("ints", RawValue(RawValue::List{RawValue(0), RawValue(255), RawValue(256),
                                           RawValue(65535), RawValue(65536), RawValue(-1),
                                           RawValue(INT32_MIN), RawValue(std::int64_t{1} << 40),
                                           RawValue(INT64_MIN), RawValue(INT64_MAX)}));
  root.set("floats", RawValue(RawValue::List{RawValue(0.12), RawValue(-0.0), RawValue(1e300)}));
  root.set("tuple", RawValue::tuple({RawValue(0.9), RawValue(0.999)}));
  root.set("long_tuple", RawValue::tuple({RawValue(1), RawValue(2), RawValue(3), RawValue(4)}));
  root.set("bytes", RawValue(RawValue::Bytes{std::string("\x00\x7f\x80\xff", 4)}));
  root.set("empty_bytes", RawValue(RawValue::Bytes{}));
  root.set("text", RawValue("grüße"));
  root.set("none", RawValue());
  root.set("flags", RawValue(RawValue::List{RawValue(true), RawValue(false)}));
  root.set("many", RawValue(many));
  const RawValue original(root);

  const std::string bytes = pickle_dump(original, "out.pth");
  EXPECT_EQ(bytes.substr(0, 2), std::string("\x80\x02", 2));
  const RawValue back = unpickle(bytes, "out.pth", "out/data.pkl");
  EXPECT_TRUE(same(original, back));
}

TEST(PickleWriter, OpaqueValuesCannotBeWritten) {
  const RawValue v(RawValue::Opaque{"torch.float32"});
  const std::string msg = message_of<InputError>([&] { pickle_dump(v, "out.pth"); });
  EXPECT_NE(msg.find("'out.pth'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace medicosam::checkpoint

namespace medicosam::checkpoint {
namespace {

// Random damage to valid pickles must give FormatError (or, rarely, a
// different valid value), never a crash, hang or huge allocation.
void mutate_and_load(const std::string& valid, std::uint32_t seed, int rounds) {
  std::mt19937 rng(seed);
  for (int round = 0; round < rounds; ++round) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % bytes.size();
      switch (rng() % 3) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes.erase(at, 1 + rng() % 8);
          break;
        default:
          bytes.insert(at, 1, static_cast<char>(rng()));
          break;
      }
      if (bytes.empty()) bytes = "\x80";
    }
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    try {
      unpickle(bytes, "fuzz.pth", "fuzz/data.pkl");
    } catch (const FormatError&) {
    }
  }
}

TEST(UnpickleFuzz, MutatedWriterOutputNeverCrashes) {
  TensorRef t;
  t.storage_key = "0";
  t.storage_numel = 6;
  t.sizes = {2, 3};
  t.strides = {3, 1};
  RawValue::Dict sd;
  sd.ordered = true;
  sd.set("image_encoder.w", RawValue(t));
  sd.set("mask_decoder.b", RawValue(t));
  RawValue::Dict root;
  root.set("model_state", RawValue(sd));
  root.set("iteration", RawValue(std::int64_t{1} << 40));
  root.set("lr", RawValue(1e-5));
  root.set("betas", RawValue::tuple({RawValue(0.9), RawValue(0.999), RawValue("x"), RawValue()}));
  root.set("raw", RawValue(RawValue::Bytes{"\x01\xff"}));
  mutate_and_load(pickle_dump(RawValue(root), "fuzz.pth"), 1, 20000);
}

TEST(UnpickleFuzz, MutatedOfficialDataPklNeverCrashes) {
  // The data.pkl torch 1.13 wrote for the reference fixture (202 tensors).
  const MappedFile file(testing::fixture("sam_tiny_seed0.pth"));
  const ZipReader zip(file.path(), file.data(), file.size());
  std::string scratch;
  const std::string pkl(zip.read(*zip.find("sam_tiny_seed0/data.pkl"), scratch));
  const RawValue clean = unpickle(pkl, file.path(), "data.pkl");
  ASSERT_EQ(clean.get_if<RawValue::Dict>()->size(), 202u);
  mutate_and_load(pkl, 2, 3000);
}

}  // namespace
}  // namespace medicosam::checkpoint
