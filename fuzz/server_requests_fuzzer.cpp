// libFuzzer target for the annotation server's request parsers
// (src/medicosam/server/requests.cpp): whatever a client puts in params,
// native API bodies, ids, sizes and .bin labels must end in a value or an
// HttpError, never a crash, hang or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "medicosam/server/requests.hpp"

using namespace medicosam::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (selector % 6) {
      case 0: {
        const auto j = parse_json_object(text, "params");
        const auto p = parse_infer_params(j);
        (void)p;
        break;
      }
      case 1:
        (void)parse_point_request(parse_json_object(text, "body"));
        break;
      case 2:
        (void)parse_box_request(parse_json_object(text, "body"));
        break;
      case 3:
        check_id(text, "image id");
        break;
      case 4:
        (void)parse_size(text, "--memory-budget");
        break;
      case 5: {
        const std::array<int64_t, 3> shape{static_cast<int64_t>(selector % 7) + 1, 3, 2};
        (void)decode_bin_label(text, shape);
        (void)base64_encode(reinterpret_cast<const uint8_t*>(text.data()), text.size());
        break;
      }
    }
  } catch (const HttpError&) {
  }
  return 0;
}
