#include <gtest/gtest.h>

#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

TEST(Npy, ReadsReferenceFixtureWithShapeAndType) {
  const auto a = read_npy(std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/img0_image.npy");
  EXPECT_EQ(a.type, NpyType::kUInt8);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{300, 420, 3}));
  EXPECT_EQ(a.data.size(), 300u * 420 * 3);
}

TEST(Npy, RoundTripKeepsValues) {
  const std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  const auto a = make_npy(NpyType::kFloat32, {2, 3}, v.data());
  const auto b = parse_npy(serialize_npy(a), "mem");
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.to_float(), v);
}

TEST(Npy, TruncatedDataIsAClearError) {
  const std::vector<float> v(100, 1.f);
  auto bytes = serialize_npy(make_npy(NpyType::kFloat32, {100}, v.data()));
  bytes.resize(bytes.size() - 4);
  try {
    parse_npy(bytes, "x.npy");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("x.npy"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos);
  }
}

TEST(Npy, NotNpyIsRejected) { EXPECT_THROW(parse_npy("hello world, not numpy", "y"), FormatError); }

// Found by fuzz/npy_fuzzer: each used to escape as std::out_of_range, pass the
// size check with a wrapped-around element count, or overflow the stack in
// std::regex. Each must be a FormatError naming the file.
namespace {
std::string npy_v2_with_header(const std::string& dict) {
  std::string h = dict;
  h.append((64 - (12 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string out("\x93NUMPY\x02\x00", 8);
  for (int k = 0; k < 4; ++k) out += static_cast<char>((h.size() >> (8 * k)) & 0xFF);
  return out + h + std::string(64, '\0');
}
}  // namespace

TEST(Npy, HostileHeadersAreClearErrors) {
  const std::string pre = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (const std::string& bytes :
       {npy_v2_with_header(pre + "99999999999999999999999,), }"),
        npy_v2_with_header(pre + "4294967296, 4294967296, 4294967296, 4294967296, 4), }"),
        npy_v2_with_header("{'descr': '" + std::string(60000, 'a') + "', 'shape': (1,), }")}) {
    try {
      parse_npy(bytes, "hostile.npy");
      ADD_FAILURE() << "accepted a hostile header";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("'hostile.npy'"), std::string::npos) << e.what();
    }
  }
  // A zero dimension after a huge one is a valid empty array.
  const auto empty = parse_npy(npy_v2_with_header(pre + "4294967296, 0), }"), "e.npy");
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.data.empty());
}
