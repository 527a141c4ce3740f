#pragma once
// Read-only view of a whole file, memory-mapped so that multi-gigabyte
// checkpoints are not read into memory twice (tensors are copied straight out
// of the page cache).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace medicosam::checkpoint {

class MappedFile {
 public:
  // Throws InputError naming the file if it cannot be opened or is not a regular file.
  explicit MappedFile(std::string path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const { return path_; }
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when data_ points into an mmap
};

}  // namespace medicosam::checkpoint
