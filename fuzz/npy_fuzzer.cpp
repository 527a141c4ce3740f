// libFuzzer target: core's .npy reader (embeddings, logits and mask inputs
// given on the command line). Every input must end in an array whose data
// matches its shape and dtype, or a medicosam::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const medicosam::NpyArray a =
        medicosam::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    // What every consumer assumes: numel x itemsize bytes of data.
    unsigned __int128 n = 1;
    bool empty = false;
    for (const auto d : a.shape) {
      if (d < 0) std::abort();
      if (d == 0) empty = true;
    }
    if (empty) {
      n = 0;
    } else {
      for (const auto d : a.shape) {
        n *= static_cast<unsigned __int128>(d);
        if (n > size) std::abort();  // more elements than input bytes: impossible
      }
    }
    if (n * medicosam::npy_item_size(a.type) != a.data.size()) std::abort();
  } catch (const medicosam::Error&) {
  }
  return 0;
}
