// ZIP reader/writer: round trips (plain and ZIP64), DEFLATE, and damaged archives.
#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "medicosam/checkpoint/zip_reader.hpp"
#include "medicosam/checkpoint/zip_writer.hpp"
#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "test_util.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::message_of;
using testing::TempDir;

struct Blob {
  std::string name;
  std::string data;
};

std::string write_archive(const std::string& path, const std::vector<Blob>& blobs, bool zip64) {
  AtomicFile out(path);
  ZipWriter zip(out, zip64);
  for (const auto& b : blobs) zip.add(b.name, b.data.data(), b.data.size());
  zip.finish();
  out.commit();
  return testing::read_bytes(path);
}

std::vector<Blob> sample_blobs() {
  std::string big(100000, '\0');
  for (std::size_t k = 0; k < big.size(); ++k) big[k] = static_cast<char>(k * 7 + 3);
  return {{"arch/data.pkl", "\x80\x02N."},
          {"arch/data/0", big},
          {"arch/empty", ""},
          {"arch/version", "3\n"}};
}

void expect_round_trip(const std::string& bytes, const std::vector<Blob>& blobs) {
  ZipReader zip("mem.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  ASSERT_EQ(zip.entries().size(), blobs.size());
  for (std::size_t k = 0; k < blobs.size(); ++k) {
    const ZipEntry* e = zip.find(blobs[k].name);
    ASSERT_NE(e, nullptr) << blobs[k].name;
    EXPECT_EQ(e->name, zip.entries()[k].name);  // directory order = write order
    EXPECT_EQ(e->data_offset % 64, 0u) << "torch expects 64-byte aligned data: " << e->name;
    std::string scratch;
    EXPECT_EQ(zip.read(*e, scratch), blobs[k].data) << e->name;
  }
  EXPECT_EQ(zip.find("arch/missing"), nullptr);
}

TEST(Zip, StoredEntriesRoundTripAligned) {
  TempDir dir;
  const auto blobs = sample_blobs();
  const std::string bytes = write_archive(dir.file("a.zip"), blobs, false);
  expect_round_trip(bytes, blobs);
  EXPECT_EQ(bytes.find("PK\x06\x06"), std::string::npos) << "no ZIP64 record needed";
}

TEST(Zip, Zip64RecordsRoundTrip) {
  TempDir dir;
  const auto blobs = sample_blobs();
  const std::string bytes = write_archive(dir.file("a.zip"), blobs, true);
  EXPECT_NE(bytes.find("PK\x06\x06"), std::string::npos) << "ZIP64 end record written";
  EXPECT_NE(bytes.find("PK\x06\x07"), std::string::npos) << "ZIP64 locator written";
  expect_round_trip(bytes, blobs);
}

// Builds a one-entry archive whose entry is DEFLATE-compressed (raw deflate).
std::string deflated_archive(const std::string& name, const std::string& data,
                             std::uint32_t claimed_size = 0) {
  std::string comp(compressBound(data.size()) + 64, '\0');
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(comp.data());
  zs.avail_out = static_cast<uInt>(comp.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  comp.resize(zs.total_out);
  deflateEnd(&zs);
  const std::uint32_t crc = crc32_of(data.data(), data.size());
  const std::uint32_t usize = claimed_size ? claimed_size : static_cast<std::uint32_t>(data.size());

  auto p16 = [](std::string& s, std::uint32_t v) {
    s += static_cast<char>(v & 0xFF);
    s += static_cast<char>((v >> 8) & 0xFF);
  };
  auto p32 = [&](std::string& s, std::uint32_t v) {
    p16(s, v & 0xFFFF);
    p16(s, v >> 16);
  };
  std::string out;
  p32(out, 0x04034b50);
  p16(out, 20);
  p16(out, 0);
  p16(out, 8);
  p16(out, 0);
  p16(out, 0);
  p32(out, crc);
  p32(out, static_cast<std::uint32_t>(comp.size()));
  p32(out, usize);
  p16(out, static_cast<std::uint32_t>(name.size()));
  p16(out, 0);
  out += name + comp;
  const std::uint32_t cd_offset = static_cast<std::uint32_t>(out.size());
  std::string cd;
  p32(cd, 0x02014b50);
  p16(cd, 20);
  p16(cd, 20);
  p16(cd, 0);
  p16(cd, 8);
  p16(cd, 0);
  p16(cd, 0);
  p32(cd, crc);
  p32(cd, static_cast<std::uint32_t>(comp.size()));
  p32(cd, usize);
  p16(cd, static_cast<std::uint32_t>(name.size()));
  p16(cd, 0);
  p16(cd, 0);
  p16(cd, 0);
  p16(cd, 0);
  p32(cd, 0);
  p32(cd, 0);
  cd += name;
  out += cd;
  p32(out, 0x06054b50);
  p16(out, 0);
  p16(out, 0);
  p16(out, 1);
  p16(out, 1);
  p32(out, static_cast<std::uint32_t>(cd.size()));
  p32(out, cd_offset);
  p16(out, 0);
  return out;
}

TEST(Zip, InflatesDeflatedEntries) {
  std::string data;
  for (int k = 0; k < 5000; ++k) data += "tensor bytes " + std::to_string(k % 17);
  const std::string bytes = deflated_archive("x/data.pkl", data);
  ZipReader zip("deflated.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  ASSERT_EQ(zip.entries().size(), 1u);
  EXPECT_EQ(zip.entries()[0].method, 8);
  std::string scratch;
  EXPECT_EQ(zip.read(zip.entries()[0], scratch), data);
}

TEST(Zip, ImpossibleInflatedSizeIsRefusedBeforeAllocating) {
  // Claims ~4 GB from a few hundred compressed bytes: more than deflate can expand.
  const std::string bytes = deflated_archive("x/data.pkl", std::string(100, 'a'), 0xFFFFFFF0u);
  ZipReader zip("bomb.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::string scratch;
  const std::string msg = message_of<FormatError>([&] { zip.read(zip.entries()[0], scratch); });
  EXPECT_NE(msg.find("'bomb.zip'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("impossible size"), std::string::npos) << msg;
}

TEST(Zip, CrcMismatchIsDetected) {
  TempDir dir;
  auto blobs = sample_blobs();
  std::string bytes = write_archive(dir.file("a.zip"), blobs, false);
  ZipReader clean("a.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  const std::uint64_t at = clean.find("arch/data/0")->data_offset + 10;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
  ZipReader zip("a.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::string scratch;
  const std::string msg =
      message_of<FormatError>([&] { zip.read(*zip.find("arch/data/0"), scratch); });
  EXPECT_NE(msg.find("CRC-32 mismatch in zip entry 'arch/data/0'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'a.zip'"), std::string::npos) << msg;
}

TEST(Zip, ZeroCrcMeansNoChecksum) {
  // Newer torch can save without checksums; the directory then records CRC 0.
  TempDir dir;
  const auto blobs = sample_blobs();
  std::string bytes = write_archive(dir.file("a.zip"), blobs, false);
  for (std::size_t cd = bytes.find("PK\x01\x02"); cd != std::string::npos;
       cd = bytes.find("PK\x01\x02", cd + 4)) {
    bytes.replace(cd + 16, 4, std::string(4, '\0'));
  }
  expect_round_trip(bytes, blobs);
}

TEST(Zip, TruncatedArchivesAreFormatErrors) {
  TempDir dir;
  const std::string bytes = write_archive(dir.file("a.zip"), sample_blobs(), false);
  for (std::size_t cut : {std::size_t{0}, std::size_t{10}, std::size_t{30}, std::size_t{200},
                          bytes.size() / 2, bytes.size() - 1}) {
    const std::string part = bytes.substr(0, cut);
    const std::string msg = message_of<FormatError>([&] {
      ZipReader zip("cut.zip", reinterpret_cast<const std::uint8_t*>(part.data()), part.size());
    });
    EXPECT_NE(msg.find("'cut.zip'"), std::string::npos) << cut << ": " << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << cut << ": " << msg;
  }
}

TEST(Zip, CorruptedDirectoryFieldsAreFormatErrors) {
  TempDir dir;
  const std::string good = write_archive(dir.file("a.zip"), sample_blobs(), false);
  const std::size_t eocd = good.rfind("PK\x05\x06");
  ASSERT_NE(eocd, std::string::npos);
  const std::size_t cd = good.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  struct Patch {
    std::size_t at;
    std::string bytes;
  };
  const std::vector<Patch> patches = {
      {eocd + 16, std::string("\xF0\xFF\xFF\x7F", 4)},  // central directory offset
      {eocd + 12, std::string("\xF0\xFF\xFF\x7F", 4)},  // central directory size
      {eocd + 10, std::string("\xFF\x7F", 2)},          // entry count
      {cd + 20, std::string("\xF0\xFF\xFF\x7F", 4)},    // first entry's compressed size
      {cd + 42, std::string("\xF0\xFF\xFF\x7F", 4)},    // first entry's local header offset
      {cd + 28, std::string("\xFF\xFF", 2)},            // first entry's name length
  };
  for (const auto& p : patches) {
    std::string bad = good;
    bad.replace(p.at, p.bytes.size(), p.bytes);
    const std::string msg = message_of<FormatError>([&] {
      ZipReader zip("bad.zip", reinterpret_cast<const std::uint8_t*>(bad.data()), bad.size());
      std::string scratch;
      for (const auto& e : zip.entries()) zip.read(e, scratch);
    });
    EXPECT_NE(msg.find("'bad.zip'"), std::string::npos) << p.at << ": " << msg;
  }
}

}  // namespace
}  // namespace medicosam::checkpoint

namespace medicosam::checkpoint {
namespace {

TEST(ZipFuzz, MutatedArchivesNeverCrash) {
  TempDir dir;
  const std::string valid = write_archive(dir.file("a.zip"), sample_blobs(), true);
  std::mt19937 rng(3);
  // Mutations aimed at the headers (the first local header and the directory).
  const std::size_t cd = valid.find("PK\x01\x02");
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = valid;
    for (int e = 0; e < 1 + static_cast<int>(rng() % 3); ++e) {
      const bool head = rng() % 4 == 0;
      const std::size_t at = head ? rng() % 96 : cd + rng() % (bytes.size() - cd);
      bytes[at] = static_cast<char>(rng());
    }
    try {
      ZipReader zip("fuzz.zip", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      std::string scratch;
      for (const auto& e : zip.entries()) zip.read(e, scratch);
    } catch (const FormatError&) {
    }
  }
}

}  // namespace
}  // namespace medicosam::checkpoint
