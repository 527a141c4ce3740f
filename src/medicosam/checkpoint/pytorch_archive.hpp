#pragma once
// torch.save's zip layout, torch-free:
//   <stem>/data.pkl       the pickled object (tensors by persistent id)
//   <stem>/data/<key>     raw little-endian storages
//   <stem>/version        "3\n"; torch >= 2.1 adds <stem>/byteorder and
//                         <stem>/.data/serialization_id
// <stem> is whatever the writer chose (the file name at save time, or
// "archive"), so the reader looks for the one entry ending in "/data.pkl".
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/value.hpp"
#include "medicosam/checkpoint/zip_reader.hpp"

namespace medicosam::checkpoint {

// True if `bytes` starts with a zip signature.
bool looks_like_zip(std::string_view bytes);

class PytorchArchive {
 public:
  // Indexes the archive held by `file` (which must outlive this object).
  explicit PytorchArchive(const MappedFile& file);
  // Indexes the archive in `data` (which must outlive this object); `path`
  // labels error messages. For in-memory archives (tests, fuzzing).
  PytorchArchive(std::string file_path, const std::uint8_t* data, std::size_t size);
  PytorchArchive(const PytorchArchive&) = delete;
  PytorchArchive& operator=(const PytorchArchive&) = delete;

  const std::string& path() const { return zip_.path(); }
  // "<stem>/" — the prefix of every entry.
  const std::string& prefix() const { return prefix_; }

  // Unpickles data.pkl (restricted: see pickle_reader.hpp).
  RawValue load_object() const;

  // The bytes of storage `key`, CRC-checked (once per storage) and valid as
  // long as this archive lives. Throws FormatError if the entry is missing.
  std::string_view storage(const std::string& key);

 private:
  const ZipReader zip_;
  std::string prefix_;
  const ZipEntry* pickle_ = nullptr;
  std::map<std::string, std::string_view> storages_;
  std::map<std::string, std::string> inflated_;  // backing for DEFLATED storages
};

// Where a tensor view's elements lie inside its storage.
struct ViewSpan {
  std::int64_t numel = 0;
  std::uint64_t first_byte = 0;  // offset of the lowest element addressed
  std::uint64_t nbytes = 0;      // bytes from the lowest to past the highest element
  bool contiguous = true;        // row-major contiguous: nbytes == numel * itemsize
};

// Checks that view `t` fits into a storage of `storage_bytes` bytes (and into
// the storage size the pickle declared); throws FormatError naming `path`,
// the storage entry and `what` (e.g. "tensor 'model_state[\"x\"]'") otherwise.
ViewSpan check_view(const TensorRef& t, std::uint64_t storage_bytes, const std::string& path,
                    const std::string& entry, const std::string& what);

// One storage to write: `key` (entry `<stem>/data/<key>`) and its bytes.
struct StorageBlob {
  std::string key;
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

// Writes a torch.save-compatible archive atomically: data.pkl is `root`
// pickled with protocol 2, the storages follow 64-byte aligned. The stem is
// derived from the file name. `force_zip64` writes ZIP64 records even for
// small archives (tests).
void write_pytorch_archive(const std::string& path, const RawValue& root,
                           const std::vector<StorageBlob>& storages, bool force_zip64 = false);

}  // namespace medicosam::checkpoint
