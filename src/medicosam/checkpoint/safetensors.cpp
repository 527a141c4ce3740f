#include "medicosam/checkpoint/safetensors.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

// The reference implementation refuses headers over 100 MB; so do we, before
// parsing anything.
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;
// Torch tensors have at most 64 dimensions.
constexpr std::size_t kMaxDims = 64;

std::uint64_t rd64(const char* p) {
  std::uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | static_cast<std::uint8_t>(p[k]);
  return v;
}

// numel * itemsize for `shape`, or false on overflow / negative dimensions.
bool byte_size(const std::vector<std::int64_t>& shape, DType dtype, std::uint64_t& out) {
  unsigned __int128 n = dtype_size(dtype);
  for (std::int64_t d : shape) {
    if (d < 0) return false;
    n *= static_cast<std::uint64_t>(d);
    if (n > std::numeric_limits<std::uint64_t>::max()) return false;
  }
  out = static_cast<std::uint64_t>(n);
  return true;
}

}  // namespace

bool looks_like_safetensors(std::string_view bytes) {
  if (bytes.size() < 10) return false;
  const std::uint64_t n = rd64(bytes.data());
  return n >= 2 && bytes[8] == '{';
}

SafetensorsHeader parse_safetensors(std::string_view bytes, const std::string& path) {
  auto fail = [&](const std::string& problem) -> void {
    throw FormatError("'" + path + "' is not a valid safetensors file: " + problem);
  };
  if (bytes.size() < 8) fail("the file is shorter than the 8-byte header length");
  const std::uint64_t header_len = rd64(bytes.data());
  if (header_len > kMaxHeaderSize) {
    fail("the header length " + std::to_string(header_len) + " is absurd (limit " +
         std::to_string(kMaxHeaderSize) + " bytes)");
  }
  if (header_len > bytes.size() - 8) {
    fail("the file is truncated: the header needs " + std::to_string(header_len) +
         " bytes but only " + std::to_string(bytes.size() - 8) + " follow");
  }
  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = bytes.size() - data_start;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, static_cast<std::size_t>(header_len)));
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("the JSON header does not parse: ") + e.what());
  }
  if (!header.is_object()) fail("the JSON header is not an object");

  SafetensorsHeader out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) fail(where + "entry is not an object");
    SafetensorsEntry e;
    e.name = name;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(where + "missing dtype");
    const auto dtype = dtype_from_safetensors_code(dt->get<std::string>());
    if (!dtype) fail(where + "unsupported dtype '" + dt->get<std::string>() + "'");
    e.dtype = *dtype;
    const auto shape = v.find("shape");
    if (shape == v.end() || !shape->is_array()) fail(where + "missing shape");
    if (shape->size() > kMaxDims) {
      fail(where + "has " + std::to_string(shape->size()) + " dimensions (at most " +
           std::to_string(kMaxDims) + ")");
    }
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) fail(where + "bad shape");
      e.shape.push_back(d.get<std::int64_t>());
    }
    const auto offs = v.find("data_offsets");
    if (offs == v.end() || !offs->is_array() || offs->size() != 2 ||
        !(*offs)[0].is_number_unsigned() || !(*offs)[1].is_number_unsigned()) {
      fail(where + "data_offsets must be two non-negative integers");
    }
    const auto begin = (*offs)[0].get<std::uint64_t>();
    const auto end = (*offs)[1].get<std::uint64_t>();
    if (begin > end || end > data_size) {
      fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           "] lie outside the " + std::to_string(data_size) + " data bytes (file truncated?)");
    }
    std::uint64_t nbytes = 0;
    if (!byte_size(e.shape, e.dtype, nbytes) || nbytes != end - begin) {
      fail(where + "data_offsets span " + std::to_string(end - begin) +
           " bytes, which does not match its shape and dtype");
    }
    e.begin = data_start + begin;
    e.end = data_start + end;
    out.entries.push_back(std::move(e));
  }
  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
            });
  for (std::size_t k = 1; k < out.entries.size(); ++k) {
    if (out.entries[k].begin < out.entries[k - 1].end) {
      fail("tensors '" + out.entries[k - 1].name + "' and '" + out.entries[k].name + "' overlap");
    }
  }
  return out;
}

std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               const std::string& path) {
  // ordered_json keeps the tensors in file order, which readers that iterate
  // the header (and humans) appreciate.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__" || !seen.insert(t.name).second) {
      throw InputError("cannot write '" + path + "': duplicate or reserved tensor name '" + t.name +
                       "'");
    }
    std::uint64_t nbytes = 0;
    if (!byte_size(t.shape, t.dtype, nbytes) || nbytes != t.nbytes) {
      throw InputError("cannot write '" + path + "': tensor '" + t.name +
                       "' has a size that does not match its shape");
    }
    header[t.name] = {{"dtype", std::string(dtype_safetensors_code(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump();
  // Pad with spaces so that the data starts 8-byte aligned.
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int k = 0; k < 8; ++k)
    out[static_cast<std::size_t>(k)] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return out + json;
}

void write_safetensors_file(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  const std::string header = safetensors_header(tensors, metadata, path);
  AtomicFile file(path);
  file.write(header);
  for (const auto& t : tensors) file.write(t.data, t.nbytes);
  file.commit();
}

}  // namespace medicosam::checkpoint
