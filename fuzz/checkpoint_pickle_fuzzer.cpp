// libFuzzer target: the restricted unpickler alone (every opcode, the memo,
// the allowed globals and the memory budget), fed raw pickle bytes. Every
// input must end in a value or a medicosam::Error.
#include <cstdint>
#include <string>
#include <string_view>

#include "medicosam/checkpoint/pickle_reader.hpp"
#include "medicosam/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    medicosam::checkpoint::unpickle(std::string_view(reinterpret_cast<const char*>(data), size),
                                    "fuzz.pth", "fuzz/data.pkl");
  } catch (const medicosam::Error&) {
  }
  return 0;
}
