// libFuzzer target: a torch.save checkpoint as `medicosam info` and the loader
// read it, up to (not including) torch: the zip reader (central directory,
// ZIP64, DEFLATE, CRC), the restricted unpickler on data.pkl, and the check
// of every tensor view against its storage entry. Every input must end in a
// value or a medicosam::Error: no crash, no sanitizer report, no hang, no
// allocation beyond libFuzzer's limit.
#include <cstdint>
#include <string>

#include "medicosam/checkpoint/pytorch_archive.hpp"
#include "medicosam/core/error.hpp"

namespace {

using medicosam::checkpoint::PytorchArchive;
using medicosam::checkpoint::RawValue;
using medicosam::checkpoint::TensorRef;

void check_tensors(const RawValue& v, PytorchArchive& archive) {
  if (const auto* t = v.get_if<TensorRef>()) {
    const std::string_view storage = archive.storage(t->storage_key);
    medicosam::checkpoint::check_view(*t, storage.size(), archive.path(),
                                      archive.prefix() + "data/" + t->storage_key, "tensor");
  } else if (const auto* l = v.get_if<RawValue::List>()) {
    for (const auto& item : *l) check_tensors(item, archive);
  } else if (const auto* tup = v.get_if<RawValue::Tuple>()) {
    for (const auto& item : tup->items) check_tensors(item, archive);
  } else if (const auto* d = v.get_if<RawValue::Dict>()) {
    for (const auto& [key, value] : d->items) {
      check_tensors(key, archive);
      check_tensors(value, archive);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    PytorchArchive archive("fuzz.pth", data, size);
    const RawValue root = archive.load_object();
    check_tensors(root, archive);
  } catch (const medicosam::Error&) {
    // Refusing bad input with a clear error is the expected outcome.
  }
  return 0;
}
