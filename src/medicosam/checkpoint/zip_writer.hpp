#pragma once
// ZIP writer in torch.save's style: STORED entries whose data starts on a
// 64-byte boundary (torch's readers mmap storages and expect that alignment),
// padded through an extra field; ZIP64 records once the archive or an entry
// passes 4 GB (or always, for tests).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace medicosam {
class AtomicFile;
}

namespace medicosam::checkpoint {

class ZipWriter {
 public:
  explicit ZipWriter(AtomicFile& out, bool force_zip64 = false);

  // Appends one STORED entry.
  void add(const std::string& name, const void* data, std::size_t size);
  // Writes the central directory; call once after the last add().
  void finish();

 private:
  struct Record {
    std::string name;
    std::uint32_t crc = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
  };
  void write(const std::string& bytes);

  AtomicFile& out_;
  bool force_zip64_;
  std::uint64_t pos_ = 0;
  std::vector<Record> records_;
};

}  // namespace medicosam::checkpoint
