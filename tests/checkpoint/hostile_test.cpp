// Hostile files for the torch-free readers: small pickles and zips built to
// make a reader allocate without bound. Each runs in a child process under a
// memory limit (memory_limit.hpp) and must end in a clear FormatError (or load
// correctly) well within it; the peak each took is printed.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <string>
#include <vector>

#include "medicosam/checkpoint/pickle_reader.hpp"
#include "medicosam/checkpoint/zip_reader.hpp"
#include "medicosam/core/error.hpp"
#include "memory_limit.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::LimitedRun;
using testing::run_with_memory_limit;

constexpr unsigned long long kMiB = 1ull << 20;
// Every hostile file here is at most a few MB; the readers must stay under this.
constexpr unsigned long long kLimit = 512 * kMiB;

void report(const char* name, const std::string& file, const LimitedRun& r) {
  std::printf("[memory] %s: file %zu bytes, outcome %s, peak growth %.1f MiB: %s\n", name,
              file.size(), r.outcome.c_str(), r.peak_mib, r.message.substr(0, 300).c_str());
}

// ---- pickles ---------------------------------------------------------------

class Pk {
 public:
  Pk& op(int c) {
    s_ += static_cast<char>(c);
    return *this;
  }
  Pk& u32(std::uint32_t v) {
    for (int k = 0; k < 4; ++k) op((v >> (8 * k)) & 0xFF);
    return *this;
  }
  Pk& str(const std::string& v) {  // BINUNICODE
    op('X').u32(static_cast<std::uint32_t>(v.size()));
    s_ += v;
    return *this;
  }
  Pk& put(std::uint32_t i) { return op('r').u32(i); }  // LONG_BINPUT
  Pk& get(std::uint32_t i) { return op('j').u32(i); }  // LONG_BINGET
  Pk& global(const std::string& module, const std::string& name) {
    op('c');
    s_ += module + "\n" + name + "\n";
    return *this;
  }
  // A list holding `n` references to memo entry `i` (APPENDS in batches).
  Pk& list_of_refs(std::uint32_t i, int n) {
    op(']');
    for (int done = 0; done < n;) {
      op('(');
      for (int k = 0; k < 1000 && done < n; ++k, ++done) get(i);
      op('e');
    }
    return *this;
  }
  const std::string& bytes() const { return s_; }

 private:
  std::string s_;
};

LimitedRun unpickle_limited(const std::string& pickle) {
  return run_with_memory_limit(kLimit, [&] {
    const RawValue v = unpickle(pickle, "hostile.pth", "hostile/data.pkl");
    return std::string("loaded a ") + v.type_name();
  });
}

TEST(Hostile, MemoisedStringReferencedAMillionTimesIsRefused) {
  // s = 'x' * 8192; l1 = [s] * 1000; root = [l1] * 1000: a 15 kB file whose
  // value tree holds a million copies of s (8 GB).
  Pk p;
  p.op(0x80).op(2).str(std::string(8192, 'x')).put(0).op('0');
  p.list_of_refs(0, 1000).put(1).op('0');
  p.list_of_refs(1, 1000).op('.');
  const LimitedRun r = unpickle_limited(p.bytes());
  report("memoised 8 kB string x 10^6", p.bytes(), r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("'hostile.pth'"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("MiB of memory"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 256.0 + testing::kSanitizerSlackMiB);
}

// A pickle whose root is a million references to one tensor with `dims`
// dimensions of size 1 (its size and stride tuples are one memoised tuple).
std::string tensor_referenced_a_million_times(int dims) {
  Pk p;
  p.op(0x80).op(2);
  p.global("torch._utils", "_rebuild_tensor_v2");
  p.op('(');
  p.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").op('K').op(1);
  p.op('t').op('Q');              // BINPERSID
  p.op('K').op(0);                // storage offset
  p.op('(');
  for (int k = 0; k < dims; ++k) p.op('K').op(1);
  p.op('t').put(9).op('j').u32(9);  // sizes, and the same tuple as strides
  p.op(0x89).op('}');             // requires_grad False, hooks {}
  p.op('t').op('R').put(0).op('0');
  p.list_of_refs(0, 1000).put(1).op('0');
  p.list_of_refs(1, 1000).op('.');
  return p.bytes();
}

TEST(Hostile, TensorWithAHugeSizeTupleIsRefused) {
  const std::string pickle = tensor_referenced_a_million_times(10000);
  const LimitedRun r = unpickle_limited(pickle);
  report("tensor with 10^4 dims x 10^6", pickle, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("10000 dimensions"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 64.0 + testing::kSanitizerSlackMiB);
}

TEST(Hostile, TensorReferencedAMillionTimesIsRefused) {
  // 64 dimensions is allowed, but a million copies of its metadata (1.2 GB) are not.
  const std::string pickle = tensor_referenced_a_million_times(64);
  const LimitedRun r = unpickle_limited(pickle);
  report("64-dim tensor x 10^6", pickle, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("MiB of memory"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 256.0 + testing::kSanitizerSlackMiB);
}

TEST(Hostile, DictKeysAreNotCopiedPerInsertion) {
  // k = 'k' * 1 MB; 2000 dicts {k: None}, each dropped; the root is None.
  // Copying the key per dict would take 2 GB; the file is 1 MB.
  Pk p;
  p.op(0x80).op(2).str(std::string(1 << 20, 'k')).put(0).op('0');
  for (int k = 0; k < 2000; ++k) p.op('}').get(0).op('N').op('s').op('0');
  p.op('N').op('.');
  const LimitedRun r = unpickle_limited(p.bytes());
  report("1 MB dict key x 2000 dicts", p.bytes(), r);
  EXPECT_EQ(r.outcome, "ok") << r.message;
  EXPECT_EQ(r.message, "loaded a None");
  EXPECT_LT(r.peak_mib, 64.0 + testing::kSanitizerSlackMiB);
}

TEST(Hostile, BytesMadeByCodecsEncodeAreCounted) {
  // _codecs.encode(t, 'latin1') 5000 times on one memoised 1 MB text: 5 GB of
  // bytes objects from a 1 MB file.
  Pk p;
  p.op(0x80).op(2).global("_codecs", "encode").put(0).op('0');
  p.str(std::string(1 << 20, 'b')).str("latin1").op(0x86).put(1).op('0');
  for (int k = 0; k < 5000; ++k) p.get(0).get(1).op('R');
  p.op(']').op('.');
  const LimitedRun r = unpickle_limited(p.bytes());
  report("1 MB bytes via _codecs.encode x 5000", p.bytes(), r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("MiB of memory"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 400.0 + testing::kSanitizerSlackMiB);
}

// ---- zips ------------------------------------------------------------------

void p16(std::string& s, std::uint32_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>((v >> 8) & 0xFF);
}
void p32(std::string& s, std::uint32_t v) {
  p16(s, v & 0xFFFF);
  p16(s, v >> 16);
}

struct Deflated {
  std::string comp;
  std::uint32_t crc = 0;
  std::uint64_t size = 0;
};

// `n` zero bytes, raw-deflated, streamed (never held uncompressed).
Deflated deflate_zeros(std::uint64_t n) {
  Deflated d;
  d.size = n;
  const std::string zeros(1 << 20, '\0');
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
  std::string out(1 << 16, '\0');
  std::uint64_t left = n;
  for (;;) {
    const std::uint64_t chunk = std::min<std::uint64_t>(left, zeros.size());
    d.crc = static_cast<std::uint32_t>(::crc32(d.crc, reinterpret_cast<const Bytef*>(zeros.data()),
                                               static_cast<uInt>(chunk)));
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
    zs.avail_in = static_cast<uInt>(chunk);
    left -= chunk;
    const int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    int rc = Z_OK;
    do {
      zs.next_out = reinterpret_cast<Bytef*>(out.data());
      zs.avail_out = static_cast<uInt>(out.size());
      rc = deflate(&zs, flush);
      d.comp.append(out.data(), out.size() - zs.avail_out);
    } while (zs.avail_out == 0);
    if (flush == Z_FINISH) {
      EXPECT_EQ(rc, Z_STREAM_END);
      break;
    }
  }
  deflateEnd(&zs);
  return d;
}

// A zip whose entries `names` are all DEFLATED with `d`'s data. With `shared`,
// one local header and one copy of the data serve every entry of the central
// directory (overlapping entries); otherwise each entry has its own copy.
std::string deflated_zip(const std::vector<std::string>& names, const Deflated& d, bool shared) {
  std::string out, cd;
  std::uint32_t local = 0;
  for (std::size_t k = 0; k < names.size(); ++k) {
    if (k == 0 || !shared) {
      local = static_cast<std::uint32_t>(out.size());
      p32(out, 0x04034b50);
      p16(out, 20);
      p16(out, 0);
      p16(out, 8);
      p16(out, 0);
      p16(out, 0);
      p32(out, d.crc);
      p32(out, static_cast<std::uint32_t>(d.comp.size()));
      p32(out, static_cast<std::uint32_t>(d.size));
      p16(out, static_cast<std::uint32_t>(names[k].size()));
      p16(out, 0);
      out += names[k] + d.comp;
    }
    p32(cd, 0x02014b50);
    p16(cd, 20);
    p16(cd, 20);
    p16(cd, 0);
    p16(cd, 8);
    p16(cd, 0);
    p16(cd, 0);
    p32(cd, d.crc);
    p32(cd, static_cast<std::uint32_t>(d.comp.size()));
    p32(cd, static_cast<std::uint32_t>(d.size));
    p16(cd, static_cast<std::uint32_t>(names[k].size()));
    p16(cd, 0);
    p16(cd, 0);
    p16(cd, 0);
    p16(cd, 0);
    p32(cd, 0);
    p32(cd, local);
    cd += names[k];
  }
  const std::uint32_t cd_offset = static_cast<std::uint32_t>(out.size());
  out += cd;
  p32(out, 0x06054b50);
  p16(out, 0);
  p16(out, 0);
  p16(out, static_cast<std::uint32_t>(names.size()));
  p16(out, static_cast<std::uint32_t>(names.size()));
  p32(out, static_cast<std::uint32_t>(cd.size()));
  p32(out, cd_offset);
  p16(out, 0);
  return out;
}

// Opens the zip and reads every entry, keeping each one's bytes alive as the
// checkpoint reader keeps its storages.
LimitedRun read_all_limited(const std::string& zip) {
  return run_with_memory_limit(kLimit, [&] {
    const ZipReader z("bomb.pth", reinterpret_cast<const std::uint8_t*>(zip.data()), zip.size());
    std::vector<std::string> kept(z.entries().size());
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < z.entries().size(); ++k) {
      total += z.read(z.entries()[k], kept[k]).size();
    }
    return "read " + std::to_string(total) + " bytes";
  });
}

TEST(Hostile, OverlappingZipEntriesAreRefused) {
  // 1000 directory entries share one 16 MB deflated blob of ~16 kB: 16 GB if read.
  std::vector<std::string> names;
  for (int k = 0; k < 1000; ++k) names.push_back("bomb/data/" + std::to_string(k));
  const std::string zip = deflated_zip(names, deflate_zeros(16 * kMiB), /*shared=*/true);
  const LimitedRun r = read_all_limited(zip);
  report("1000 zip entries sharing one 16 MB deflated blob", zip, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("overlap"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 64.0 + testing::kSanitizerSlackMiB);
}

TEST(Hostile, ZipBombIsRefusedBeforeInflating) {
  // 8 entries of 128 MB of zeros each, ~130 kB apiece: 1 GB from a 1 MB file,
  // though each entry alone is within deflate's 1032:1.
  std::vector<std::string> names;
  for (int k = 0; k < 8; ++k) names.push_back("bomb/data/" + std::to_string(k));
  const std::string zip = deflated_zip(names, deflate_zeros(128 * kMiB), /*shared=*/false);
  const LimitedRun r = read_all_limited(zip);
  report("8 x 128 MB deflated zeros", zip, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("zip bomb"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 200.0 + testing::kSanitizerSlackMiB);
}

TEST(Hostile, ModestlyCompressedEntriesStillInflate) {
  // Within the archive limit: 4 entries of 8 MB of zeros from ~32 kB.
  std::vector<std::string> names;
  for (int k = 0; k < 4; ++k) names.push_back("ok/data/" + std::to_string(k));
  const std::string zip = deflated_zip(names, deflate_zeros(8 * kMiB), /*shared=*/false);
  const LimitedRun r = read_all_limited(zip);
  EXPECT_EQ(r.outcome, "ok") << r.message;
  EXPECT_EQ(r.message, "read " + std::to_string(32 * kMiB) + " bytes");
}

}  // namespace
}  // namespace medicosam::checkpoint
