// libFuzzer target: the safetensors header parser and validator (header
// length, JSON, dtypes, shapes, offsets vs data, overlaps). Every input must
// end in a header whose entries lie inside the input, or a medicosam::Error.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "medicosam/checkpoint/safetensors.hpp"
#include "medicosam/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  medicosam::checkpoint::looks_like_safetensors(bytes);
  try {
    const auto header = medicosam::checkpoint::parse_safetensors(bytes, "fuzz.safetensors");
    std::uint64_t previous_end = 0;
    for (const auto& e : header.entries) {
      // The guarantees the loader relies on before copying: in the file, in
      // order, not overlapping.
      if (e.begin > e.end || e.end > size || e.begin < previous_end) std::abort();
      previous_end = e.end;
    }
  } catch (const medicosam::Error&) {
  }
  return 0;
}
