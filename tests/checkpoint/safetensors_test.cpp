// safetensors header writing and parsing, and malformed headers.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "medicosam/checkpoint/safetensors.hpp"
#include "medicosam/core/error.hpp"
#include "test_util.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::message_of;
using testing::TempDir;

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k)
    s[static_cast<std::size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xFF);
  return s;
}

// A file with the given JSON header (unpadded) and `data_size` data bytes.
std::string file_with_header(const std::string& json, std::size_t data_size) {
  return le64(json.size()) + json + std::string(data_size, '\x01');
}

std::string parse_error(const std::string& bytes) {
  return message_of<FormatError>([&] { parse_safetensors(bytes, "model.safetensors"); });
}

TEST(Safetensors, WriteThenParseRoundTrip) {
  TempDir dir;
  const std::vector<float> a = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  const std::vector<std::uint16_t> b = {0x3f80, 0x4000, 0xbf80};  // bfloat16 1, 2, -1
  const std::vector<std::uint8_t> c = {1, 0, 1};
  const std::vector<SafetensorsTensor> tensors = {
      {"z.first", DType::Float32, {2, 3}, a.data(), a.size() * 4},
      {"a.second", DType::BFloat16, {3}, b.data(), b.size() * 2},
      {"mask", DType::Bool, {3}, c.data(), c.size()},
      {"empty", DType::Int64, {0, 5}, nullptr, 0},
  };
  const std::string path = dir.file("m.safetensors");
  write_safetensors_file(path, tensors, {{"format", "pt"}, {"iteration", "12"}});
  const std::string bytes = testing::read_bytes(path);
  std::uint64_t header_len = 0;
  for (int k = 7; k >= 0; --k) header_len = (header_len << 8) | static_cast<std::uint8_t>(bytes[k]);
  EXPECT_EQ(header_len % 8, 0u) << "header padded to 8 bytes";
  EXPECT_EQ(bytes.size(), 8 + header_len + 24 + 6 + 3);

  const SafetensorsHeader h = parse_safetensors(bytes, path);
  ASSERT_EQ(h.entries.size(), 4u);
  // Data order = the order written.
  EXPECT_EQ(h.entries[0].name, "z.first");
  EXPECT_EQ(h.entries[1].name, "a.second");
  EXPECT_EQ(h.entries[3].name, "empty");
  EXPECT_EQ(h.entries[0].dtype, DType::Float32);
  EXPECT_EQ(h.entries[1].dtype, DType::BFloat16);
  EXPECT_EQ(h.entries[2].dtype, DType::Bool);
  EXPECT_EQ(h.entries[0].shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(h.entries[3].shape, (std::vector<std::int64_t>{0, 5}));
  EXPECT_EQ(std::memcmp(bytes.data() + h.entries[1].begin, b.data(), 6), 0);
  EXPECT_EQ(h.metadata.at("iteration"), "12");
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(Safetensors, WriterRejectsDuplicateNamesAndSizeMismatch) {
  const float x = 1.f;
  const std::vector<SafetensorsTensor> dup = {{"a", DType::Float32, {1}, &x, 4},
                                              {"a", DType::Float32, {1}, &x, 4}};
  EXPECT_NE(message_of<InputError>([&] {
              safetensors_header(dup, {}, "o.safetensors");
            }).find("'o.safetensors'"),
            std::string::npos);
  const std::vector<SafetensorsTensor> wrong = {{"a", DType::Float32, {2}, &x, 4}};
  EXPECT_NE(message_of<InputError>([&] {
              safetensors_header(wrong, {}, "o.safetensors");
            }).find("does not match"),
            std::string::npos);
}

TEST(Safetensors, OffsetsPastTheEndAreRefused) {
  const std::string msg = parse_error(
      file_with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
  EXPECT_NE(msg.find("'model.safetensors'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("outside"), std::string::npos) << msg;
}

TEST(Safetensors, AbsurdHeaderLengthIsRefused) {
  const std::string msg = parse_error(le64(std::uint64_t{1} << 60) + "{}");
  EXPECT_NE(msg.find("'model.safetensors'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("absurd"), std::string::npos) << msg;
}

TEST(Safetensors, MalformedHeadersAreFormatErrors) {
  struct Case {
    std::string bytes;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"abc", "shorter than"},
      {le64(100) + "{\"a\":1}", "truncated"},
      {file_with_header("{not json", 0), "does not parse"},
      {file_with_header("[1,2]", 0), "not an object"},
      {file_with_header(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1),
       "unsupported dtype"},
      {file_with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "does not match"},
      {file_with_header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       "bad shape"},
      {file_with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "outside"},
      {file_with_header(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "data_offsets"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12),
       "overlap"},
      {file_with_header(R"({"__metadata__":{"a":1}})", 0), "not a string"},
      {file_with_header(
           R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}})",
           0),
       "does not match"},
  };
  for (const auto& c : cases) {
    const std::string msg = parse_error(c.bytes);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.expected << ": " << msg;
    EXPECT_NE(msg.find("'model.safetensors'"), std::string::npos) << msg;
  }
}

TEST(Safetensors, Sniffing) {
  EXPECT_TRUE(looks_like_safetensors(file_with_header("{}", 0)));
  EXPECT_FALSE(looks_like_safetensors("PK\x03\x04 and more bytes"));
  EXPECT_FALSE(looks_like_safetensors(""));
}

}  // namespace
}  // namespace medicosam::checkpoint

namespace medicosam::checkpoint {
namespace {

TEST(SafetensorsFuzz, MutatedHeadersNeverCrash) {
  const std::vector<float> a(6, 1.f);
  const std::vector<SafetensorsTensor> tensors = {{"a", DType::Float32, {2, 3}, a.data(), 24},
                                                  {"b", DType::Float32, {6}, a.data(), 24}};
  const std::string valid = safetensors_header(tensors, {{"k", "v"}}, "x") + std::string(48, '\0');
  std::mt19937 rng(5);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = valid;
    for (int e = 0; e < 1 + static_cast<int>(rng() % 3); ++e) {
      bytes[rng() % std::min<std::size_t>(bytes.size(), 200)] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    try {
      parse_safetensors(bytes, "fuzz.safetensors");
    } catch (const FormatError&) {
    }
  }
}

}  // namespace
}  // namespace medicosam::checkpoint
