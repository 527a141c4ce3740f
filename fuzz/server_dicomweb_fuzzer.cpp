// libFuzzer target for what a PACS answers the DICOMweb datastore
// (src/medicosam/server/dicomweb_parse.cpp): WADO-RS multipart/related
// bodies, QIDO-RS series lists, SEG metadata and STOW-RS replies must end in
// a value or a std::runtime_error, never a crash, hang or sanitizer report.
// Input: a selector byte, then for multipart a Content-Type line ending in
// '\n' followed by the body; otherwise the reply body.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "medicosam/server/dicomweb_parse.hpp"

using namespace medicosam::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (selector % 4) {
      case 0: {
        const auto nl = text.find('\n');
        const std::string content_type(text.substr(0, nl));
        const auto body = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t total = 0;
        for (const auto& part : parse_multipart_related(body, content_type)) {
          // Every part must lie inside the body it was cut from.
          if (part.data() < body.data() || part.data() + part.size() > body.data() + body.size()) __builtin_trap();
          total += part.size();
        }
        if (total > body.size()) __builtin_trap();
        break;
      }
      case 1:
        (void)parse_series_search(text);
        break;
      case 2:
        (void)parse_seg_references(text);
        break;
      case 3:
        (void)stow_failure(text);
        (void)excerpt(text);
        break;
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
