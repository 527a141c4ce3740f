#pragma once
// Minimal ZIP reader for torch.save archives: central directory (with ZIP64
// records, which torch writes for archives over 4 GB), STORED entries (what
// torch writes) and DEFLATED ones (in case a user re-zipped the file).
// Every size and offset is checked against the file before use, so a truncated
// or corrupted archive raises FormatError instead of reading out of bounds or
// allocating whatever a corrupted header claims.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace medicosam::checkpoint {

struct ZipEntry {
  std::string name;
  std::uint16_t flags = 0;
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint64_t local_header_offset = 0;
  std::uint64_t data_offset = 0;  // first byte of the (compressed) data
};

class ZipReader {
 public:
  // Indexes the archive in `data` (which must outlive the reader). `path` only
  // labels error messages. Throws FormatError if the archive is malformed.
  ZipReader(std::string path, const std::uint8_t* data, std::size_t size);

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry with exactly this name, or nullptr.
  const ZipEntry* find(std::string_view name) const;

  // The entry's contents after checking its CRC-32 (unless the writer recorded
  // 0, i.e. no checksum): a view into the file for
  // STORED entries; DEFLATED ones are inflated into `scratch`, which the view
  // then points into. Throws FormatError on corruption or unsupported entries,
  // and before allocating if the archive's deflated entries together would
  // inflate to more than 64 MiB + 64 x the file's size (zip bombs).
  std::string_view read(const ZipEntry& entry, std::string& scratch) const;

 private:
  [[noreturn]] void fail(const std::string& problem) const;
  void locate_central_directory(std::uint64_t& cd_offset, std::uint64_t& cd_size,
                                std::uint64_t& count) const;
  void parse_central_directory(std::uint64_t cd_offset, std::uint64_t cd_size, std::uint64_t count);

  std::string path_;
  const std::uint8_t* data_;
  std::size_t size_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  // Bytes all DEFLATED entries may inflate to, and how many read() has
  // inflated so far (see kMaxArchiveRatio in zip_reader.cpp).
  std::uint64_t inflate_limit_ = 0;
  mutable std::uint64_t inflated_total_ = 0;
};

// CRC-32 (zip/zlib polynomial) of a buffer of any size.
std::uint32_t crc32_of(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace medicosam::checkpoint
