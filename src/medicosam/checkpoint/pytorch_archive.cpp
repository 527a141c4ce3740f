#include "medicosam/checkpoint/pytorch_archive.hpp"

#include <filesystem>

#include "medicosam/checkpoint/pickle_reader.hpp"
#include "medicosam/checkpoint/pickle_writer.hpp"
#include "medicosam/checkpoint/zip_writer.hpp"
#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Stem for the entries of a new archive: the file name without its extension,
// restricted to characters that are safe in a zip entry name.
std::string archive_stem(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  for (char& c : stem) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) c = '_';
  }
  if (stem.empty() || stem == "." || stem == "..") stem = "archive";
  return stem;
}

}  // namespace

bool looks_like_zip(std::string_view bytes) {
  // Local file header, or the end record of an empty archive.
  return bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K' &&
         ((bytes[2] == 3 && bytes[3] == 4) || (bytes[2] == 5 && bytes[3] == 6));
}

PytorchArchive::PytorchArchive(const MappedFile& file)
    : PytorchArchive(file.path(), file.data(), file.size()) {}

PytorchArchive::PytorchArchive(std::string file_path, const std::uint8_t* data, std::size_t size)
    : zip_(std::move(file_path), data, size) {
  // torch's reader takes the stem from the first entry; we accept data.pkl in
  // any single top-level folder, but only one.
  for (const ZipEntry& e : zip_.entries()) {
    if (!ends_with(e.name, "/data.pkl")) continue;
    const std::string stem_part = e.name.substr(0, e.name.size() - 9);
    if (stem_part.empty() || stem_part.find('/') != std::string::npos) continue;
    if (pickle_) {
      throw FormatError("'" + path() + "' is ambiguous: it holds both '" + pickle_->name +
                        "' and '" + e.name + "'");
    }
    pickle_ = &e;
  }
  if (!pickle_) {
    throw FormatError("'" + path() +
                      "' is a zip archive but not a torch.save checkpoint: no '<name>/data.pkl' "
                      "entry");
  }
  prefix_ = pickle_->name.substr(0, pickle_->name.size() - 8);  // keep the '/'
  if (const ZipEntry* bo = zip_.find(prefix_ + "byteorder")) {
    std::string scratch;
    const std::string_view order = zip_.read(*bo, scratch);
    if (order != "little") {
      throw FormatError("'" + path() + "' stores tensors in '" + std::string(order) +
                        "' byte order; only little-endian checkpoints are supported");
    }
  }
}

RawValue PytorchArchive::load_object() const {
  std::string scratch;
  const std::string_view pkl = zip_.read(*pickle_, scratch);
  return unpickle(pkl, path(), pickle_->name);
}

std::string_view PytorchArchive::storage(const std::string& key) {
  auto it = storages_.find(key);
  if (it != storages_.end()) return it->second;
  const std::string name = prefix_ + "data/" + key;
  const ZipEntry* e = zip_.find(name);
  if (!e) {
    throw FormatError("'" + path() + "' is corrupted: tensor storage '" + name +
                      "' is missing from the archive");
  }
  std::string& scratch = inflated_[key];
  const std::string_view bytes = zip_.read(*e, scratch);
  storages_.emplace(key, bytes);
  return bytes;
}

ViewSpan check_view(const TensorRef& t, std::uint64_t storage_bytes, const std::string& path,
                    const std::string& entry, const std::string& what) {
  auto fail = [&](const std::string& problem) {
    throw FormatError("'" + path + "' is corrupted: " + what + " " + problem);
  };
  const std::uint64_t item = dtype_size(t.dtype);
  if (t.sizes.size() != t.strides.size()) fail("has mismatched size and stride");
  if (t.storage_offset < 0) fail("has a negative storage offset");
  if (t.storage_numel < 0) fail("has a negative storage size");
  ViewSpan span;
  // 128-bit arithmetic: a hostile size/stride must not wrap around.
  unsigned __int128 numel = 1, last = static_cast<std::uint64_t>(t.storage_offset);
  bool contiguous = true;
  unsigned __int128 expected_stride = 1;
  for (std::size_t d = t.sizes.size(); d-- > 0;) {
    const std::int64_t size = t.sizes[d], stride = t.strides[d];
    if (size < 0 || stride < 0) fail("has a negative size or stride");
    numel *= static_cast<std::uint64_t>(size);
    if (numel > (static_cast<unsigned __int128>(1) << 62)) fail("has an impossible size");
    if (size > 1) {
      if (static_cast<unsigned __int128>(stride) != expected_stride) contiguous = false;
      last += static_cast<unsigned __int128>(size - 1) * static_cast<std::uint64_t>(stride);
      expected_stride *= static_cast<std::uint64_t>(size);
    }
  }
  span.numel = static_cast<std::int64_t>(numel);
  if (numel == 0) return span;  // addresses nothing
  const unsigned __int128 end_elem = last + 1;
  if (end_elem > static_cast<std::uint64_t>(t.storage_numel)) {
    fail("addresses element " + std::to_string(static_cast<std::uint64_t>(last)) + " of storage '" +
         entry + "', which declares only " + std::to_string(t.storage_numel) + " elements");
  }
  if (end_elem * item > storage_bytes) {
    fail("needs " + std::to_string(static_cast<std::uint64_t>(end_elem * item)) +
         " bytes of storage '" + entry + "', which holds only " + std::to_string(storage_bytes) +
         " bytes (truncated?)");
  }
  span.first_byte = static_cast<std::uint64_t>(t.storage_offset) * item;
  span.nbytes = static_cast<std::uint64_t>(end_elem * item) - span.first_byte;
  span.contiguous = contiguous;
  return span;
}

void write_pytorch_archive(const std::string& path, const RawValue& root,
                           const std::vector<StorageBlob>& storages, bool force_zip64) {
  const std::string pickle = pickle_dump(root, path);
  const std::string stem = archive_stem(path);
  AtomicFile out(path);
  ZipWriter zip(out, force_zip64);
  zip.add(stem + "/data.pkl", pickle.data(), pickle.size());
  static const std::string kByteOrder = "little";
  zip.add(stem + "/byteorder", kByteOrder.data(), kByteOrder.size());
  for (const StorageBlob& s : storages) zip.add(stem + "/data/" + s.key, s.data, s.nbytes);
  static const std::string kVersion = "3\n";
  zip.add(stem + "/version", kVersion.data(), kVersion.size());
  zip.finish();
  out.commit();
}

}  // namespace medicosam::checkpoint
