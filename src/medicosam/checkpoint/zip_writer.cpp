#include "medicosam/checkpoint/zip_writer.hpp"

#include "medicosam/checkpoint/zip_reader.hpp"
#include "medicosam/core/atomic_file.hpp"

namespace medicosam::checkpoint {
namespace {

constexpr std::uint64_t kAlignment = 64;
constexpr std::uint64_t k32Max = 0xFFFFFFFFu;
// DOS date 1980-01-01 00:00: fixed so that identical content gives identical files.
constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;
constexpr std::uint16_t kDosTime = 0;

void put16(std::string& s, std::uint64_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>((v >> 8) & 0xFF);
}
void put32(std::string& s, std::uint64_t v) {
  put16(s, v & 0xFFFF);
  put16(s, (v >> 16) & 0xFFFF);
}
void put64(std::string& s, std::uint64_t v) {
  put32(s, v & k32Max);
  put32(s, v >> 32);
}

}  // namespace

ZipWriter::ZipWriter(AtomicFile& out, bool force_zip64) : out_(out), force_zip64_(force_zip64) {}

void ZipWriter::write(const std::string& bytes) {
  out_.write(bytes);
  pos_ += bytes.size();
}

void ZipWriter::add(const std::string& name, const void* data, std::size_t size) {
  Record r;
  r.name = name;
  r.crc = crc32_of(data, size);
  r.size = size;
  r.offset = pos_;
  const bool zip64 = force_zip64_ || size >= k32Max;

  std::string extra;
  if (zip64) {  // sizes in the local ZIP64 field
    put16(extra, 0x0001);
    put16(extra, 16);
    put64(extra, size);
    put64(extra, size);
  }
  // Padding field (id "FB", as torch writes) that moves the data to a 64-byte boundary.
  const std::uint64_t unpadded = pos_ + 30 + name.size() + extra.size() + 4;
  const std::uint64_t pad = (kAlignment - unpadded % kAlignment) % kAlignment;
  put16(extra, 0x4246);
  put16(extra, pad);
  extra.append(static_cast<std::size_t>(pad), 'Z');

  std::string h;
  put32(h, 0x04034b50);
  put16(h, zip64 ? 45 : 20);  // version needed
  put16(h, 0);                // flags
  put16(h, 0);                // STORED
  put16(h, kDosTime);
  put16(h, kDosDate);
  put32(h, r.crc);
  put32(h, zip64 ? k32Max : size);
  put32(h, zip64 ? k32Max : size);
  put16(h, name.size());
  put16(h, extra.size());
  h += name;
  h += extra;
  write(h);
  out_.write(data, size);
  pos_ += size;
  records_.push_back(std::move(r));
}

void ZipWriter::finish() {
  const std::uint64_t cd_offset = pos_;
  std::string cd;
  for (const Record& r : records_) {
    const bool big_size = force_zip64_ || r.size >= k32Max;
    const bool big_offset = force_zip64_ || r.offset >= k32Max;
    std::string extra;
    if (big_size || big_offset) {
      put16(extra, 0x0001);
      put16(extra, (big_size ? 16 : 0) + (big_offset ? 8 : 0));
      if (big_size) {
        put64(extra, r.size);  // uncompressed, then compressed
        put64(extra, r.size);
      }
      if (big_offset) put64(extra, r.offset);
    }
    put32(cd, 0x02014b50);
    put16(cd, (3 << 8) | 45);  // made by: Unix, spec 4.5
    put16(cd, extra.empty() ? 20 : 45);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, kDosTime);
    put16(cd, kDosDate);
    put32(cd, r.crc);
    put32(cd, big_size ? k32Max : r.size);
    put32(cd, big_size ? k32Max : r.size);
    put16(cd, r.name.size());
    put16(cd, extra.size());
    put16(cd, 0);  // comment
    put16(cd, 0);  // disk
    put16(cd, 0);  // internal attributes
    put32(cd, 0);  // external attributes
    put32(cd, big_offset ? k32Max : r.offset);
    cd += r.name;
    cd += extra;
  }
  write(cd);

  const std::uint64_t cd_size = cd.size();
  const std::uint64_t count = records_.size();
  const bool zip64 = force_zip64_ || count >= 0xFFFF || cd_size >= k32Max || cd_offset >= k32Max;
  std::string tail;
  if (zip64) {
    const std::uint64_t record_offset = pos_;
    put32(tail, 0x06064b50);  // ZIP64 end of central directory
    put64(tail, 44);          // size of the rest of this record
    put16(tail, (3 << 8) | 45);
    put16(tail, 45);
    put32(tail, 0);
    put32(tail, 0);
    put64(tail, count);
    put64(tail, count);
    put64(tail, cd_size);
    put64(tail, cd_offset);
    put32(tail, 0x07064b50);  // ZIP64 locator
    put32(tail, 0);
    put64(tail, record_offset);
    put32(tail, 1);
  }
  put32(tail, 0x06054b50);
  put16(tail, 0);
  put16(tail, 0);
  put16(tail, zip64 ? 0xFFFF : count);
  put16(tail, zip64 ? 0xFFFF : count);
  put32(tail, zip64 ? k32Max : cd_size);
  put32(tail, zip64 ? k32Max : cd_offset);
  put16(tail, 0);
  write(tail);
}

}  // namespace medicosam::checkpoint
