#pragma once
// SHA-1 (FIPS 180-4), for micro_sam-compatible data signatures
// (hashlib.sha1(array.tobytes()).hexdigest()) and checkpoint fingerprints.
// Not for security.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace medicosam::segment {

class Sha1 {
 public:
  Sha1();
  void update(const void* data, size_t size);
  // Finishes and returns the 40-digit lowercase hex digest.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 5> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// SHA-1 of a whole file; InputError naming it if it cannot be read.
std::string sha1_file(const std::string& path);

}  // namespace medicosam::segment
