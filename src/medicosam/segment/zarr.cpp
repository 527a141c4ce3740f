#include "medicosam/segment/zarr.hpp"

#include <zlib.h>

#include <filesystem>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

#ifdef MEDICOSAM_HAVE_BLOSC
#include <blosc.h>
#endif

namespace medicosam::segment::zarr {
namespace fs = std::filesystem;
using nlohmann::json;

int64_t ArrayMeta::chunk_elements() const {
  int64_t n = 1;
  for (auto c : chunks) n *= c;
  return n;
}

bool have_blosc() {
#ifdef MEDICOSAM_HAVE_BLOSC
  return true;
#else
  return false;
#endif
}

namespace {

json read_json(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError("'" + path + "' is not valid JSON: " + e.what());
  }
}

void write_json(const std::string& path, const json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

std::vector<uint8_t> inflate_bytes(const std::vector<uint8_t>& in, size_t expected, bool gzip,
                                   const std::string& what) {
  std::vector<uint8_t> out(expected);
  z_stream s{};
  if (inflateInit2(&s, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) throw Error("zlib init failed");
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&s, Z_FINISH);
  const size_t produced = expected - s.avail_out;
  inflateEnd(&s);
  if (rc != Z_STREAM_END || produced != expected)
    throw FormatError(what + ": corrupt or truncated compressed chunk");
  return out;
}

std::vector<uint8_t> deflate_bytes(const std::vector<uint8_t>& in, bool gzip, int level) {
  z_stream s{};
  if (deflateInit2(&s, level, Z_DEFLATED, gzip ? 16 + MAX_WBITS : MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    throw Error("zlib init failed");
  }
  std::vector<uint8_t> out(deflateBound(&s, in.size()) + 32);
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&s, Z_FINISH);
  out.resize(out.size() - s.avail_out);
  deflateEnd(&s);
  if (rc != Z_STREAM_END) throw Error("zlib compression failed");
  return out;
}

}  // namespace

namespace {

// The node type of a zarr v3 node ("group", "array") or "" when there is none.
std::string v3_node(const std::string& dir) {
  const auto p = fs::path(dir) / "zarr.json";
  if (!fs::exists(p)) return "";
  const json j = read_json(p.string());
  if (!j.is_object() || j.value("zarr_format", 0) != 3) return "";
  return j.value("node_type", std::string());
}

}  // namespace

bool is_group(const std::string& dir) {
  return fs::exists(fs::path(dir) / ".zgroup") || v3_node(dir) == "group";
}

bool is_array(const std::string& dir) {
  return fs::exists(fs::path(dir) / ".zarray") || v3_node(dir) == "array";
}

void create_group(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create folder '" + dir + "': " + ec.message());
  if (!is_group(dir)) write_json((fs::path(dir) / ".zgroup").string(), json{{"zarr_format", 2}});
}

json read_attrs(const std::string& dir) {
  if (!v3_node(dir).empty()) {
    const json j = read_json((fs::path(dir) / "zarr.json").string());
    return j.contains("attributes") && j["attributes"].is_object() ? j["attributes"]
                                                                   : json::object();
  }
  const auto p = fs::path(dir) / ".zattrs";
  if (!fs::exists(p)) return json::object();
  auto j = read_json(p.string());
  if (!j.is_object()) throw FormatError("'" + p.string() + "' is not a JSON object");
  return j;
}

void write_attrs(const std::string& dir, const json& attrs) {
  if (!v3_node(dir).empty()) {
    const auto p = (fs::path(dir) / "zarr.json").string();
    json j = read_json(p);
    j["attributes"] = attrs;
    write_json(p, j);
    return;
  }
  write_json((fs::path(dir) / ".zattrs").string(), attrs);
}

namespace {

ArrayMeta read_v3_meta(const std::string& dir) {
  const auto path = (fs::path(dir) / "zarr.json").string();
  const json j = read_json(path);
  ArrayMeta m;
  m.zarr_format = 3;
  try {
    m.shape = j.at("shape").get<std::vector<int64_t>>();
    const auto& grid = j.at("chunk_grid");
    if (grid.at("name") != "regular")
      throw FormatError(path + ": only regular chunk grids are supported");
    m.chunks = grid.at("configuration").at("chunk_shape").get<std::vector<int64_t>>();
    const auto type = j.at("data_type").get<std::string>();
    if (type == "float32") {
      m.dtype = "<f4";
    } else if (type == "float16") {
      m.dtype = "<f2";
    } else {
      throw FormatError(path + ": data type " + type + " is not supported (float32 or float16)");
    }
    const auto& enc = j.at("chunk_key_encoding");
    const auto sep =
        enc.contains("configuration") ? enc["configuration"].value("separator", std::string()) : "";
    if (enc.at("name") == "default") {
      m.separator = sep.empty() ? "/" : sep;
      m.key_prefix = "c" + m.separator;
    } else if (enc.at("name") == "v2") {
      m.separator = sep.empty() ? "." : sep;
    } else {
      throw FormatError(path + ": chunk key encoding " + enc.at("name").dump() +
                        " is not supported");
    }
    bool have_bytes = false;
    for (const auto& c : j.at("codecs")) {
      const auto name = c.at("name").get<std::string>();
      const json cfg = c.value("configuration", json::object());
      if (name == "bytes") {
        if (cfg.value("endian", std::string("little")) != "little")
          throw FormatError(path + ": big-endian data");
        have_bytes = true;
      } else if (name == "blosc") {
        const auto shuffle = cfg.value("shuffle", std::string("noshuffle"));
        m.compressor = {{"id", "blosc"},
                        {"cname", cfg.value("cname", std::string("lz4"))},
                        {"clevel", cfg.value("clevel", 5)},
                        {"shuffle", shuffle == "shuffle"      ? 1
                                    : shuffle == "bitshuffle" ? 2
                                                              : 0}};
      } else if (name == "gzip") {
        m.compressor = {{"id", "gzip"}, {"level", cfg.value("level", 5)}};
      } else {
        throw FormatError(path + ": codec '" + name + "' is not supported (bytes, blosc, gzip)");
      }
    }
    if (!have_bytes) throw FormatError(path + ": no bytes codec");
  } catch (const json::exception& e) {
    throw FormatError(path + ": malformed zarr v3 array metadata (" + e.what() + ")");
  }
  if (m.shape.size() != m.chunks.size() || m.shape.empty())
    throw FormatError(path + ": shape and chunks differ");
  if (m.compressor.value("id", std::string()) == "blosc" && !have_blosc()) {
    throw FormatError(path +
                      ": blosc-compressed chunks, but this medicosam was built without libblosc");
  }
  return m;
}

}  // namespace

ArrayMeta read_array_meta(const std::string& dir) {
  if (v3_node(dir) == "array") return read_v3_meta(dir);
  const auto path = (fs::path(dir) / ".zarray").string();
  const json j = read_json(path);
  ArrayMeta m;
  try {
    if (j.at("zarr_format").get<int>() != 2) throw FormatError(path + ": not zarr format 2");
    m.shape = j.at("shape").get<std::vector<int64_t>>();
    m.chunks = j.at("chunks").get<std::vector<int64_t>>();
    m.dtype = j.at("dtype").get<std::string>();
    m.compressor = j.value("compressor", json());
    if (j.value("order", std::string("C")) != "C")
      throw FormatError(path + ": only C order is supported");
    if (j.contains("filters") && !j["filters"].is_null() && !j["filters"].empty()) {
      throw FormatError(path + ": zarr filters are not supported");
    }
    m.separator = j.value("dimension_separator", std::string("."));
  } catch (const json::exception& e) {
    throw FormatError(path + ": malformed array metadata (" + e.what() + ")");
  }
  if (m.dtype != "<f4" && m.dtype != "<f2") {
    throw FormatError(path + ": dtype " + m.dtype +
                      " is not supported (float32 '<f4' or float16 '<f2')");
  }
  if (m.shape.size() != m.chunks.size() || m.shape.empty())
    throw FormatError(path + ": shape and chunks differ");
  for (size_t i = 0; i < m.shape.size(); ++i) {
    if (m.shape[i] <= 0 || m.chunks[i] <= 0)
      throw FormatError(path + ": non-positive shape or chunk size");
  }
  if (!m.compressor.is_null()) {
    const auto id = m.compressor.value("id", std::string());
    if (id != "zlib" && id != "gzip" && id != "blosc") {
      throw FormatError(path + ": compressor '" + id +
                        "' is not supported (null, zlib, gzip, blosc)");
    }
    if (id == "blosc" && !have_blosc()) {
      throw FormatError(path +
                        ": blosc-compressed chunks, but this medicosam was built without libblosc");
    }
  }
  return m;
}

void create_array(const std::string& dir, const ArrayMeta& m) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create folder '" + dir + "': " + ec.message());
  json j{{"zarr_format", 2}, {"shape", m.shape},           {"chunks", m.chunks},
         {"dtype", m.dtype}, {"compressor", m.compressor}, {"fill_value", 0.0},
         {"order", "C"},     {"filters", nullptr}};
  if (m.separator != ".") j["dimension_separator"] = m.separator;
  write_json((fs::path(dir) / ".zarray").string(), j);
}

std::string chunk_path(const std::string& dir, const ArrayMeta& m,
                       const std::vector<int64_t>& index) {
  std::string key = m.key_prefix;
  for (size_t i = 0; i < index.size(); ++i)
    key += (i ? m.separator : std::string()) + std::to_string(index[i]);
  return (fs::path(dir) / key).string();
}

bool has_chunk(const std::string& dir, const ArrayMeta& m, const std::vector<int64_t>& index) {
  return fs::exists(chunk_path(dir, m, index));
}

std::optional<std::vector<uint8_t>> read_chunk(const std::string& dir, const ArrayMeta& m,
                                               const std::vector<int64_t>& index) {
  const auto path = chunk_path(dir, m, index);
  if (!fs::exists(path)) return std::nullopt;
  const std::string raw = read_file(path);
  std::vector<uint8_t> bytes(raw.begin(), raw.end());
  const size_t expected = static_cast<size_t>(m.chunk_elements()) * m.item_size();
  if (m.compressor.is_null()) {
    if (bytes.size() != expected) {
      throw FormatError("'" + path + "': chunk has " + std::to_string(bytes.size()) +
                        " bytes, expected " + std::to_string(expected));
    }
    return bytes;
  }
  const auto id = m.compressor.value("id", std::string());
  if (id == "zlib" || id == "gzip")
    return inflate_bytes(bytes, expected, id == "gzip", "'" + path + "'");
#ifdef MEDICOSAM_HAVE_BLOSC
  std::vector<uint8_t> out(expected);
  size_t nbytes = 0, cbytes = 0, blocksize = 0;
  if (bytes.size() >= 16) blosc_cbuffer_sizes(bytes.data(), &nbytes, &cbytes, &blocksize);
  if (nbytes != expected || cbytes != bytes.size() ||
      blosc_decompress_ctx(bytes.data(), out.data(), out.size(), 1) != static_cast<int>(expected)) {
    throw FormatError("'" + path + "': corrupt or truncated blosc chunk");
  }
  return out;
#else
  throw FormatError("'" + path + "': blosc chunk, but medicosam was built without libblosc");
#endif
}

void write_chunk(const std::string& dir, const ArrayMeta& m, const std::vector<int64_t>& index,
                 const std::vector<uint8_t>& bytes) {
  const size_t expected = static_cast<size_t>(m.chunk_elements()) * m.item_size();
  if (bytes.size() != expected) throw Error("zarr chunk of wrong size");
  const auto path = chunk_path(dir, m, index);
  if (m.separator == "/") {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
  }
  if (m.compressor.is_null()) {
    write_file_atomic(path,
                      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    return;
  }
  const auto id = m.compressor.value("id", std::string());
#ifdef MEDICOSAM_HAVE_BLOSC
  if (id == "blosc") {  // e.g. resuming a cache that zarr-python started
    std::vector<uint8_t> packed(bytes.size() + BLOSC_MAX_OVERHEAD);
    int shuffle = m.compressor.value("shuffle", 1);
    if (shuffle < 0) shuffle = 1;  // numcodecs AUTOSHUFFLE: byte shuffle for multi-byte items
    const std::string cname = m.compressor.value("cname", std::string("lz4"));
    const int n =
        blosc_compress_ctx(m.compressor.value("clevel", 5), shuffle, m.item_size(), bytes.size(),
                           bytes.data(), packed.data(), packed.size(), cname.c_str(), 0, 1);
    if (n <= 0) throw IoError("blosc compression failed for '" + path + "'");
    write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(packed.data()), n));
    return;
  }
#endif
  if (id != "zlib" && id != "gzip") throw Error("writing " + id + " chunks is not supported");
  const auto packed = deflate_bytes(bytes, id == "gzip", m.compressor.value("level", 1));
  write_file_atomic(path,
                    std::string_view(reinterpret_cast<const char*>(packed.data()), packed.size()));
}

}  // namespace medicosam::segment::zarr
