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
