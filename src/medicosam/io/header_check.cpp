#include "medicosam/io/header_check.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "medicosam/core/error.hpp"

namespace medicosam::io {
namespace fs = std::filesystem;

namespace {

// Longest header text we are willing to parse (NRRD / MetaImage).
constexpr size_t kMaxTextHeader = 1 << 20;

std::string quote_name(const std::string& name) {
  return "'" + name + "'";
}

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw FormatError(quote_name(name) + ": " + what);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A header excerpt safe to print: at most 80 characters, no control bytes.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 80));
  for (char& c : out) {
    if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Strict integer parse of a whole token.
bool parse_int(std::string_view tok, int64_t* out) {
  tok = trim(tok);
  if (tok.empty() || tok.size() > 20) return false;
  std::string s(tok);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

bool parse_double(std::string_view tok, double* out) {
  tok = trim(tok);
  if (tok.empty() || tok.size() > 64) return false;
  std::string s(tok);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Numbers in a field: every token must parse and be finite.
std::vector<double> parse_numbers(std::string_view s, const std::string& name,
                                  const std::string& field) {
  std::vector<double> out;
  std::string cleaned(s);
  for (char& c : cleaned) {
    if (c == '(' || c == ')' || c == ',') c = ' ';
  }
  for (auto tok : split_ws(cleaned)) {
    double v = 0;
    if (lower(tok) == "none") continue;
    if (!parse_double(tok, &v) || !std::isfinite(v)) {
      fail(name, "field '" + field + "' has an invalid number '" + printable(tok) + "'");
    }
    out.push_back(v);
  }
  return out;
}

// ---------------------------------------------------------------- byte sources

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes; returns 0 at the end.
  virtual size_t read(uint8_t* out, size_t n) = 0;
};

class MemorySource : public ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t n) : data_(data), n_(n) {}
  size_t read(uint8_t* out, size_t n) override {
    const size_t k = std::min(n, n_ - pos_);
    if (k) std::memcpy(out, data_ + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  const uint8_t* data_;
  size_t n_;
  size_t pos_ = 0;
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_or_throw(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(quote_name(path) + ": is a folder, not a file");
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    if (!fs::exists(path, ec)) throw InputError(quote_name(path) + ": no such file");
    throw InputError(quote_name(path) + ": cannot open for reading: " + std::strerror(errno));
  }
  return f;
}

uint64_t file_size_or_throw(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  if (ec) throw InputError(quote_name(path) + ": cannot read file size: " + ec.message());
  return n;
}

class FileSource : public ByteSource {
 public:
  explicit FileSource(std::FILE* f) : f_(f) {}
  size_t read(uint8_t* out, size_t n) override { return std::fread(out, 1, n, f_); }

 private:
  std::FILE* f_;
};

// Streaming gzip/zlib decompression (auto-detected), concatenated gzip
// members included, as zlib's gzread does.
class Inflater {
 public:
  Inflater(ByteSource& src, std::string name) : src_(src), name_(std::move(name)), in_(1 << 16) {
    std::memset(&zs_, 0, sizeof(zs_));
    if (inflateInit2(&zs_, 15 + 32) != Z_OK) fail(name_, "cannot initialise zlib");
  }
  ~Inflater() { inflateEnd(&zs_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Reads up to n bytes; fewer only at the true end of the stream.
  size_t read(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n && !finished_) {
      if (zs_.avail_in == 0) {
        const size_t k = src_.read(in_.data(), in_.size());
        if (k == 0) {
          fail(name_, "compressed data is truncated (unexpected end of file after " +
                          std::to_string(total_out_ + got) + " decompressed bytes)");
        }
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(k);
      }
      zs_.next_out = out + got;
      const size_t want = std::min<size_t>(n - got, 1u << 30);
      zs_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      got += want - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        if (!next_member()) finished_ = true;
      } else if (rc == Z_BUF_ERROR) {
        // No progress possible with the current input: ask for more.
        if (zs_.avail_in != 0 && zs_.avail_out != 0) fail(name_, "compressed data is corrupt");
      } else if (rc != Z_OK) {
        fail(name_, std::string("compressed data is corrupt (") +
                        (zs_.msg ? zs_.msg : "zlib error " + std::to_string(rc)) + ")");
      }
    }
    total_out_ += got;
    return got;
  }

  // Skips n decompressed bytes; returns how many were skipped.
  uint64_t skip(uint64_t n) {
    std::vector<uint8_t> scratch(1 << 16);
    uint64_t done = 0;
    while (done < n) {
      const size_t k =
          read(scratch.data(), static_cast<size_t>(std::min<uint64_t>(n - done, scratch.size())));
      if (k == 0) break;
      done += k;
    }
    return done;
  }

 private:
  // After a member ends: continue if another gzip member follows.
  bool next_member() {
    if (zs_.avail_in == 0) {
      const size_t k = src_.read(in_.data(), in_.size());
      if (k == 0) return false;
      zs_.next_in = in_.data();
      zs_.avail_in = static_cast<uInt>(k);
    }
    if (zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b) {
      inflateReset(&zs_);
      return true;
    }
    return false;  // trailing bytes after the stream are ignored, as gzread does
  }

  ByteSource& src_;
  std::string name_;
  std::vector<uint8_t> in_;
  z_stream zs_;
  bool finished_ = false;
  uint64_t total_out_ = 0;
};

// Reads the ByteSource up to `limit` bytes (in chunks: headers are small,
// so never allocate the whole limit up front).
std::string read_prefix(ByteSource& src, size_t limit) {
  std::string out;
  uint8_t buf[16384];
  while (out.size() < limit) {
    const size_t k = src.read(buf, std::min(sizeof(buf), limit - out.size()));
    if (k == 0) break;
    out.append(reinterpret_cast<const char*>(buf), k);
  }
  return out;
}

// ---------------------------------------------------------------- NIfTI

template <typename T>
T load(const uint8_t* p, bool swap) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  if (swap) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    std::reverse(b, b + sizeof(T));
    std::memcpy(&v, b, sizeof(T));
  }
  return v;
}

struct NiftiType {
  int code;
  const char* name;
  int bytes;
  int components;
};
constexpr NiftiType kNiftiTypes[] = {
    {2, "uint8", 1, 1},    {4, "int16", 2, 1},    {8, "int32", 4, 1},
    {16, "float32", 4, 1}, {64, "float64", 8, 1}, {256, "int8", 1, 1},
    {512, "uint16", 2, 1}, {768, "uint32", 4, 1}, {128, "rgb24", 1, 3},
};

}  // namespace

const char* format_name(FileFormat f) {
  switch (f) {
    case FileFormat::kNifti:
      return "NIfTI";
    case FileFormat::kNrrd:
      return "NRRD";
    case FileFormat::kMetaImage:
      return "MetaImage";
    case FileFormat::kDicom:
      return "DICOM";
    case FileFormat::kPng:
      return "PNG";
    case FileFormat::kJpeg:
      return "JPEG";
    case FileFormat::kTiff:
      return "TIFF";
    case FileFormat::kBmp:
      return "BMP";
    case FileFormat::kUnknown:
      break;
  }
  return "unknown";
}

uint64_t checked_data_bytes(const std::array<int64_t, 3>& size, int components, int component_bytes,
                            const std::string& name) {
  uint64_t n = static_cast<uint64_t>(components) * static_cast<uint64_t>(component_bytes);
  for (int64_t s : size) {
    if (s <= 0) fail(name, "image size must be positive");
    if (n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(s)) {
      fail(name, "image size " + std::to_string(size[0]) + "x" + std::to_string(size[1]) + "x" +
                     std::to_string(size[2]) + " is absurdly large");
    }
    n *= static_cast<uint64_t>(s);
  }
  return n;
}

HeaderSummary parse_nifti_header(const uint8_t* b, size_t n, const std::string& name) {
  if (n < 348) fail(name, "too short for a NIfTI header (" + std::to_string(n) + " bytes)");
  const int32_t raw_size = load<int32_t>(b, false);
  bool swap = false;
  if (raw_size == 540 || load<int32_t>(b, true) == 540) {
    fail(name, "NIfTI-2 files are not supported (ITK 5.2 reads NIfTI-1 only); convert to NIfTI-1");
  }
  if (raw_size != 348) {
    if (load<int32_t>(b, true) != 348) fail(name, "not a NIfTI-1 header (sizeof_hdr is not 348)");
    swap = true;
  }
  const bool single_file = std::memcmp(b + 344, "n+1\0", 4) == 0;
  const bool pair = std::memcmp(b + 344, "ni1\0", 4) == 0;

  int16_t dim[8];
  for (int i = 0; i < 8; ++i) dim[i] = load<int16_t>(b + 40 + 2 * i, swap);
  if (dim[0] < 1 || dim[0] > 7)
    fail(name, "NIfTI dim[0] = " + std::to_string(dim[0]) + " is invalid");
  for (int i = 1; i <= dim[0]; ++i) {
    if (dim[i] < 1) {
      fail(name,
           "NIfTI dim[" + std::to_string(i) + "] = " + std::to_string(dim[i]) + " is invalid");
    }
  }
  for (int i = 4; i <= dim[0]; ++i) {
    if (dim[i] != 1) {
      fail(name, std::string(i == 4 ? "4D (time series)" : "multi-component") +
                     " NIfTI is not supported: dim[" + std::to_string(i) +
                     "] = " + std::to_string(dim[i]) + "; extract a 3D volume first");
    }
  }
  const int16_t datatype = load<int16_t>(b + 70, swap);
  const int16_t bitpix = load<int16_t>(b + 72, swap);
  const NiftiType* type = nullptr;
  for (const auto& t : kNiftiTypes) {
    if (t.code == datatype) type = &t;
  }
  if (!type) fail(name, "NIfTI datatype " + std::to_string(datatype) + " is not supported");
  if (bitpix != type->bytes * type->components * 8) {
    fail(name, "NIfTI bitpix " + std::to_string(bitpix) + " does not match datatype " + type->name);
  }
  for (int i = 0; i < 8; ++i) {
    const float p = load<float>(b + 76 + 4 * i, swap);
    if (!std::isfinite(p)) fail(name, "NIfTI pixdim[" + std::to_string(i) + "] is not finite");
  }
  const float vox_offset = load<float>(b + 108, swap);
  if (!std::isfinite(vox_offset) || vox_offset < 0 || vox_offset > 1e12f) {
    fail(name, "NIfTI vox_offset is invalid");
  }
  const float slope = load<float>(b + 112, swap);
  const float inter = load<float>(b + 116, swap);
  if (!std::isfinite(slope) || !std::isfinite(inter))
    fail(name, "NIfTI scl_slope/scl_inter is not finite");
  const int16_t qform_code = load<int16_t>(b + 252, swap);
  const int16_t sform_code = load<int16_t>(b + 254, swap);
  if (qform_code > 0) {
    for (int i = 0; i < 6; ++i) {
      if (!std::isfinite(load<float>(b + 256 + 4 * i, swap)))
        fail(name, "NIfTI qform is not finite");
    }
  }
  if (sform_code > 0) {
    for (int i = 0; i < 12; ++i) {
      if (!std::isfinite(load<float>(b + 280 + 4 * i, swap)))
        fail(name, "NIfTI sform is not finite");
    }
  }

  HeaderSummary h;
  h.format = FileFormat::kNifti;
  h.dimension = std::min<int>(dim[0], 3);
  for (int i = 0; i < 3; ++i) h.size[i] = i < dim[0] ? dim[i + 1] : 1;
  h.components = type->components;
  h.component_bytes = type->bytes;
  h.component_type = type->name;
  h.data_bytes = checked_data_bytes(h.size, h.components, h.component_bytes, name);
  if (single_file) {
    // The data starts at vox_offset (at least right after the 348-byte
    // header and 4-byte extension flag, as niftilib enforces).
    h.byte_skip = std::max<int64_t>(352, static_cast<int64_t>(vox_offset));
  } else {
    // Header/image pair (".hdr" + ".img"): NIfTI "ni1" or Analyze 7.5.
    (void)pair;
    h.byte_skip = static_cast<int64_t>(vox_offset);
    h.data_file = "(.img)";
  }
  return h;
}

// ---------------------------------------------------------------- NRRD

namespace {

struct NamedType {
  const char* names;  // '|' separated aliases
  const char* type;
  int bytes;
};
constexpr NamedType kNrrdTypes[] = {
    {"signed char|int8|int8_t", "int8", 1},
    {"uchar|unsigned char|uint8|uint8_t", "uint8", 1},
    {"short|short int|signed short|signed short int|int16|int16_t", "int16", 2},
    {"ushort|unsigned short|unsigned short int|uint16|uint16_t", "uint16", 2},
    {"int|signed int|int32|int32_t", "int32", 4},
    {"uint|unsigned int|uint32|uint32_t", "uint32", 4},
    {"float", "float32", 4},
    {"double", "float64", 8},
};
constexpr const char* kNrrd64 =
    "longlong|long long|long long int|signed long long|signed long long int|int64|int64_t|"
    "ulonglong|unsigned long long|unsigned long long int|uint64|uint64_t";

bool alias_match(const char* aliases, const std::string& v) {
  std::string_view all(aliases);
  size_t start = 0;
  while (start <= all.size()) {
    size_t bar = all.find('|', start);
    if (bar == std::string_view::npos) bar = all.size();
    if (all.substr(start, bar - start) == v) return true;
    start = bar + 1;
  }
  return false;
}

bool is_spatial_kind(const std::string& k) {
  return k == "domain" || k == "space" || k == "time";
}

}  // namespace

HeaderSummary parse_nrrd_header(std::string_view text, bool detached, const std::string& name) {
  if (text.size() < 8 || text.substr(0, 7) != "NRRD000" ||
      !std::isdigit(static_cast<unsigned char>(text[7]))) {
    fail(name, "not a NRRD file (missing NRRD000x magic)");
  }
  HeaderSummary h;
  h.format = FileFormat::kNrrd;
  int64_t dimension = -1;
  std::vector<int64_t> sizes;
  std::vector<std::string> kinds;
  std::vector<bool> direction_none;
  std::string type, encoding, endian;
  int64_t byte_skip = 0;
  bool ended = false;
  size_t pos = text.find('\n');
  if (pos == std::string_view::npos) fail(name, "NRRD header is truncated");
  ++pos;
  while (pos < text.size()) {
    if (pos > kMaxTextHeader) fail(name, "NRRD header is longer than 1 MiB");
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos)
      eol = text.size();  // a header may end at EOF (detached data)
    std::string_view line = text.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
    if (line.empty()) {
      ended = true;
      break;
    }
    if (line[0] == '#') continue;
    if (line.find(":=") != std::string_view::npos) continue;  // key/value pair
    const size_t colon = line.find(": ");
    if (colon == std::string_view::npos) {
      fail(name, "NRRD header line '" + printable(line) + "' is not 'field: value'");
    }
    const std::string field = lower(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 2));
    if (field == "dimension") {
      if (!parse_int(value, &dimension) || dimension < 1 || dimension > 16) {
        fail(name, "NRRD dimension '" + printable(value) + "' is invalid");
      }
    } else if (field == "type") {
      type = lower(value);
    } else if (field == "sizes") {
      for (auto tok : split_ws(value)) {
        int64_t v = 0;
        if (!parse_int(tok, &v) || v < 1)
          fail(name, "NRRD sizes '" + printable(value) + "' are invalid");
        sizes.push_back(v);
      }
    } else if (field == "encoding") {
      encoding = lower(value);
    } else if (field == "endian") {
      endian = lower(value);
    } else if (field == "kinds") {
      for (auto tok : split_ws(value)) kinds.push_back(lower(tok));
    } else if (field == "space directions") {
      std::string v(value);
      // One token per axis: "(a,b,c)" or "none".
      for (auto tok : split_ws(v)) {
        const std::string t = lower(tok);
        if (t == "none") {
          direction_none.push_back(true);
        } else if (!t.empty() && t.front() == '(') {
          direction_none.push_back(false);
        }
      }
      parse_numbers(value, name, field);
    } else if (field == "space origin" || field == "spacings" || field == "thicknesses" ||
               field == "axis mins" || field == "axismins" || field == "axis maxs" ||
               field == "axismaxs" || field == "measurement frame") {
      if (lower(value).find("nan") == std::string::npos) {
        parse_numbers(value, name, field);
      } else {
        std::string v = lower(value);
        // "nan" is legal in NRRD for unknown per-axis values; keep them out
        // of space origin, where they would poison the geometry.
        if (field == "space origin") fail(name, "NRRD space origin is not finite");
      }
    } else if (field == "data file" || field == "datafile") {
      const auto toks = split_ws(value);
      if (toks.size() != 1 || lower(toks[0]) == "list" ||
          value.find('%') != std::string_view::npos) {
        fail(name, "NRRD data split over several files ('" + printable(value) +
                       "') is not supported; merge it into one file");
      }
      h.data_file = std::string(toks[0]);
    } else if (field == "line skip" || field == "lineskip") {
      if (!parse_int(value, &h.line_skip) || h.line_skip < 0 || h.line_skip > (1 << 20)) {
        fail(name, "NRRD line skip is invalid");
      }
    } else if (field == "byte skip" || field == "byteskip") {
      if (!parse_int(value, &byte_skip) || byte_skip < -1) fail(name, "NRRD byte skip is invalid");
    }
    // Other fields (space, content, centerings, labels, units, ...) do not
    // affect memory or data layout.
  }
  // Attached data needs the empty line; a header with a data file may end at EOF.
  if (!ended && h.data_file.empty() && !detached) {
    fail(name, "NRRD header is truncated (no empty line before the data)");
  }
  if (dimension < 0) fail(name, "NRRD header has no 'dimension' field");
  if (static_cast<int64_t>(sizes.size()) != dimension) {
    fail(name, "NRRD 'sizes' lists " + std::to_string(sizes.size()) + " values for dimension " +
                   std::to_string(dimension));
  }
  if (!kinds.empty() && static_cast<int64_t>(kinds.size()) != dimension) {
    fail(name, "NRRD 'kinds' lists " + std::to_string(kinds.size()) + " values for dimension " +
                   std::to_string(dimension));
  }
  if (type.empty()) fail(name, "NRRD header has no 'type' field");
  const NamedType* t = nullptr;
  for (const auto& nt : kNrrdTypes) {
    if (alias_match(nt.names, type)) t = &nt;
  }
  if (!t) {
    if (alias_match(kNrrd64, type)) fail(name, "64-bit integer NRRD voxels are not supported");
    fail(name, "NRRD type '" + printable(type) + "' is not supported");
  }
  h.component_type = t->type;
  h.component_bytes = t->bytes;

  // Which axes are spatial: kinds when given, else 'none' space directions.
  std::vector<bool> spatial(dimension, true);
  for (int64_t i = 0; i < dimension; ++i) {
    if (!kinds.empty()) {
      spatial[i] = is_spatial_kind(kinds[i]) || kinds[i] == "???" || kinds[i] == "none";
    } else if (static_cast<int64_t>(direction_none.size()) == dimension) {
      spatial[i] = !direction_none[i];
    }
  }
  std::vector<int64_t> spatial_sizes;
  int components = 1;
  for (int64_t i = 0; i < dimension; ++i) {
    if (spatial[i]) {
      spatial_sizes.push_back(sizes[i]);
    } else {
      if (i != 0 || components != 1) {
        fail(name, "NRRD with a non-spatial axis other than the first is not supported");
      }
      if (sizes[i] > 4) {
        fail(name,
             "NRRD voxels with " + std::to_string(sizes[i]) + " components are not supported");
      }
      components = static_cast<int>(sizes[i]);
    }
  }
  // Trailing singleton axes (e.g. a time axis of size 1) are harmless.
  while (spatial_sizes.size() > 3 && spatial_sizes.back() == 1) spatial_sizes.pop_back();
  if (spatial_sizes.empty() || spatial_sizes.size() > 3) {
    fail(name, "NRRD with " + std::to_string(spatial_sizes.size()) +
                   " spatial axes is not supported (1 to 3)");
  }
  h.dimension = static_cast<int>(spatial_sizes.size());
  for (size_t i = 0; i < spatial_sizes.size(); ++i) h.size[i] = spatial_sizes[i];
  h.components = components;
  h.data_bytes = checked_data_bytes(h.size, h.components, h.component_bytes, name);

  if (encoding.empty()) fail(name, "NRRD header has no 'encoding' field");
  if (encoding == "raw") {
    h.encoding = DataEncoding::kRaw;
  } else if (encoding == "gzip" || encoding == "gz") {
    h.encoding = DataEncoding::kGzip;
  } else if (encoding == "bzip2" || encoding == "bz2") {
    fail(name, "NRRD bzip2 encoding is not supported; use raw or gzip");
  } else if (encoding == "ascii" || encoding == "text" || encoding == "txt") {
    h.encoding = DataEncoding::kAscii;
  } else if (encoding == "hex") {
    h.encoding = DataEncoding::kHex;
  } else {
    fail(name, "NRRD encoding '" + printable(encoding) + "' is not supported");
  }
  if (h.component_bytes > 1 &&
      (h.encoding == DataEncoding::kRaw || h.encoding == DataEncoding::kGzip ||
       h.encoding == DataEncoding::kHex)) {
    if (endian.empty()) fail(name, "NRRD header has no 'endian' field");
    if (endian != "little" && endian != "big")
      fail(name, "NRRD endian '" + printable(endian) + "' is invalid");
  }
  if (byte_skip == -1) {
    if (h.encoding != DataEncoding::kRaw) fail(name, "NRRD byte skip -1 needs raw encoding");
    h.data_at_end = true;
  } else {
    h.byte_skip = byte_skip;
  }
  if (h.data_file.empty()) {
    if (detached) fail(name, "detached NRRD header (.nhdr) has no 'data file' field");
    // Attached data: line skip and byte skip count from the end of the header.
    h.header_bytes = static_cast<int64_t>(std::min(pos, text.size()));
  }
  return h;
}

// ---------------------------------------------------------------- MetaImage

namespace {

struct MetaType {
  const char* name;
  const char* type;
  int bytes;
};
constexpr MetaType kMetaTypes[] = {
    {"met_uchar", "uint8", 1},   {"met_char", "int8", 1},      {"met_ushort", "uint16", 2},
    {"met_short", "int16", 2},   {"met_uint", "uint32", 4},    {"met_int", "int32", 4},
    {"met_float", "float32", 4}, {"met_double", "float64", 8},
};

}  // namespace

HeaderSummary parse_metaimage_header(std::string_view text, const std::string& name) {
  HeaderSummary h;
  h.format = FileFormat::kMetaImage;
  int64_t ndims = -1;
  std::vector<int64_t> dims;
  std::string element_type;
  int64_t channels = 1;
  bool compressed = false;
  bool have_data_file = false;
  int64_t header_size = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (pos > kMaxTextHeader) fail(name, "MetaImage header is longer than 1 MiB");
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      fail(name, "MetaImage header line '" + printable(line) + "' is not 'Key = Value'");
    }
    const std::string key = lower(trim(line.substr(0, eq)));
    const std::string_view value = trim(line.substr(eq + 1));
    if (key == "objecttype") {
      if (lower(value) != "image")
        fail(name, "MetaImage ObjectType '" + printable(value) + "' is not Image");
    } else if (key == "ndims") {
      if (!parse_int(value, &ndims) || ndims < 1 || ndims > 4) {
        fail(name, "MetaImage NDims '" + printable(value) + "' is invalid");
      }
    } else if (key == "dimsize") {
      for (auto tok : split_ws(value)) {
        int64_t v = 0;
        if (!parse_int(tok, &v) || v < 1)
          fail(name, "MetaImage DimSize '" + printable(value) + "' is invalid");
        dims.push_back(v);
      }
    } else if (key == "elementtype") {
      element_type = lower(value);
    } else if (key == "elementnumberofchannels") {
      if (!parse_int(value, &channels) || channels < 1 || channels > 4) {
        fail(name, "MetaImage ElementNumberOfChannels '" + printable(value) + "' is not supported");
      }
    } else if (key == "compresseddata") {
      compressed = lower(value) == "true";
    } else if (key == "binarydata") {
      if (lower(value) == "false") fail(name, "ASCII MetaImage data is not supported");
    } else if (key == "headersize") {
      if (!parse_int(value, &header_size) || header_size < -1)
        fail(name, "MetaImage HeaderSize is invalid");
    } else if (key == "elementspacing" || key == "elementsize" || key == "offset" ||
               key == "position" || key == "origin" || key == "transformmatrix" ||
               key == "rotation" || key == "orientation" || key == "centerofrotation") {
      parse_numbers(value, name, key);
    } else if (key == "elementdatafile") {
      const std::string v(value);
      const std::string lv = lower(v);
      if (lv == "list" || lv.rfind("list ", 0) == 0 || v.find('%') != std::string::npos) {
        fail(name, "MetaImage data split over several files is not supported");
      }
      if (v.empty()) fail(name, "MetaImage ElementDataFile is empty");
      if (lv != "local") h.data_file = v;
      have_data_file = true;
      break;  // ElementDataFile is always the last header field
    }
  }
  if (!have_data_file) fail(name, "MetaImage header has no ElementDataFile (truncated header?)");
  if (ndims < 0) fail(name, "MetaImage header has no NDims");
  if (static_cast<int64_t>(dims.size()) != ndims) {
    fail(name, "MetaImage DimSize lists " + std::to_string(dims.size()) + " values for NDims " +
                   std::to_string(ndims));
  }
  const MetaType* t = nullptr;
  for (const auto& mt : kMetaTypes) {
    if (element_type == mt.name) t = &mt;
  }
  if (!t) fail(name, "MetaImage ElementType '" + printable(element_type) + "' is not supported");
  while (dims.size() > 3 && dims.back() == 1) dims.pop_back();
  if (dims.size() > 3) fail(name, "4D MetaImage is not supported");
  h.dimension = static_cast<int>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) h.size[i] = dims[i];
  h.components = static_cast<int>(channels);
  h.component_bytes = t->bytes;
  h.component_type = t->type;
  h.data_bytes = checked_data_bytes(h.size, h.components, h.component_bytes, name);
  h.encoding = compressed ? DataEncoding::kZlib : DataEncoding::kRaw;
  if (h.data_file.empty()) {
    h.header_bytes = static_cast<int64_t>(std::min(pos, text.size()));
  } else if (header_size == -1) {
    if (compressed) fail(name, "MetaImage HeaderSize -1 with compressed data is invalid");
    h.data_at_end = true;
  } else {
    h.header_bytes = header_size;
  }
  return h;
}

void check_size_limit(const HeaderSummary& h, uint64_t max_bytes, const std::string& name) {
  if (h.data_bytes > max_bytes) {
    std::ostringstream s;
    s << quote_name(name) << ": image of " << h.size[0] << "x" << h.size[1] << "x" << h.size[2]
      << "x" << h.components << " " << h.component_type << " needs " << h.data_bytes
      << " bytes, more than the limit of " << max_bytes << " bytes; refusing to allocate";
    throw FormatError(s.str());
  }
}

uint64_t inflated_size(const uint8_t* data, size_t n, uint64_t stop_after,
                       const std::string& name) {
  MemorySource src(data, n);
  Inflater inf(src, name);
  const uint64_t got = inf.skip(stop_after);
  if (got < stop_after) {
    fail(name, "compressed data holds " + std::to_string(got) + " bytes, expected " +
                   std::to_string(stop_after));
  }
  return got;
}

// ---------------------------------------------------------------- files

FileFormat format_from_extension(const std::string& path) {
  const std::string l = lower(fs::path(path).filename().string());
  if (ends_with(l, ".nii") || ends_with(l, ".nii.gz") || ends_with(l, ".hdr") ||
      ends_with(l, ".img") || ends_with(l, ".img.gz") || ends_with(l, ".hdr.gz")) {
    return FileFormat::kNifti;
  }
  if (ends_with(l, ".nrrd") || ends_with(l, ".nhdr")) return FileFormat::kNrrd;
  if (ends_with(l, ".mha") || ends_with(l, ".mhd")) return FileFormat::kMetaImage;
  if (ends_with(l, ".dcm") || ends_with(l, ".dicom") || ends_with(l, ".ima"))
    return FileFormat::kDicom;
  if (ends_with(l, ".png")) return FileFormat::kPng;
  if (ends_with(l, ".jpg") || ends_with(l, ".jpeg")) return FileFormat::kJpeg;
  if (ends_with(l, ".tif") || ends_with(l, ".tiff")) return FileFormat::kTiff;
  if (ends_with(l, ".bmp")) return FileFormat::kBmp;
  return FileFormat::kUnknown;
}

FileFormat detect_format(const std::string& path) {
  FilePtr f = open_or_throw(path);
  uint8_t head[352] = {0};
  const size_t n = std::fread(head, 1, sizeof(head), f.get());
  auto starts = [&](const char* magic, size_t len) {
    return n >= len && std::memcmp(head, magic, len) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return FileFormat::kPng;
  if (starts("\xff\xd8\xff", 3)) return FileFormat::kJpeg;
  if (starts("II*\0", 4) || starts("MM\0*", 4) || starts("II+\0", 4) || starts("MM\0+", 4)) {
    return FileFormat::kTiff;
  }
  if (starts("NRRD000", 7)) return FileFormat::kNrrd;
  if (n >= 132 && std::memcmp(head + 128, "DICM", 4) == 0) return FileFormat::kDicom;
  if (n >= 348 &&
      (std::memcmp(head + 344, "n+1\0", 4) == 0 || std::memcmp(head + 344, "ni1\0", 4) == 0)) {
    return FileFormat::kNifti;
  }
  const FileFormat by_ext = format_from_extension(path);
  if (starts("\x1f\x8b", 2)) {
    // Compressed: NIfTI (.nii.gz) is the only gzip container we read.
    if (by_ext == FileFormat::kNifti) return FileFormat::kNifti;
    return FileFormat::kUnknown;
  }
  if (starts("BM", 2) && by_ext == FileFormat::kBmp) return FileFormat::kBmp;
  if (by_ext == FileFormat::kMetaImage || by_ext == FileFormat::kNifti ||
      by_ext == FileFormat::kDicom) {
    return by_ext;  // validated (or rejected) by the format's own checks
  }
  return FileFormat::kUnknown;
}

namespace {

std::string sibling(const std::string& header_path, const std::string& file) {
  fs::path p(file);
  if (p.is_absolute()) return file;
  return (fs::path(header_path).parent_path() / p).string();
}

// Makes sure `h.data_bytes` of data are present in `data_path`.
void check_data_present(const HeaderSummary& h, const std::string& data_path,
                        const std::string& name) {
  const uint64_t fsize = file_size_or_throw(data_path);
  FilePtr f = open_or_throw(data_path);
  const std::string short_data = "header dimensions need " + std::to_string(h.data_bytes) +
                                 " bytes of voxel data but the file holds only ";
  if (h.encoding == DataEncoding::kRaw && h.data_at_end) {
    if (fsize < h.data_bytes) fail(name, short_data + std::to_string(fsize) + " bytes");
    return;
  }
  if (static_cast<uint64_t>(h.header_bytes) > fsize) fail(name, "file is shorter than its header");
  if (std::fseek(f.get(), h.header_bytes, SEEK_SET) != 0) fail(name, "cannot seek to the data");
  uint64_t offset = static_cast<uint64_t>(h.header_bytes);
  for (int64_t lines = 0; lines < h.line_skip;) {
    const int c = std::fgetc(f.get());
    if (c == EOF) fail(name, "data file ends inside the 'line skip' lines");
    ++offset;
    if (c == '\n') ++lines;
  }
  if (h.encoding == DataEncoding::kRaw) {
    offset += static_cast<uint64_t>(h.byte_skip);
    const uint64_t have = offset > fsize ? 0 : fsize - offset;
    if (have < h.data_bytes) {
      fail(name, short_data + std::to_string(have) + " (truncated file or wrong header)");
    }
    return;
  }
  if (h.encoding == DataEncoding::kGzip || h.encoding == DataEncoding::kZlib) {
    FileSource src(f.get());
    Inflater inf(src, name);
    const uint64_t need = static_cast<uint64_t>(h.byte_skip) + h.data_bytes;
    const uint64_t got = inf.skip(need);
    if (got < need) {
      const uint64_t have = got > static_cast<uint64_t>(h.byte_skip) ? got - h.byte_skip : 0;
      fail(name, short_data + std::to_string(have) +
                     " after decompression (truncated file or wrong header)");
    }
    return;
  }
  // Text encodings (NRRD ascii/hex): count digits / values without storing.
  if (h.byte_skip > 0 && std::fseek(f.get(), h.byte_skip, SEEK_CUR) != 0)
    fail(name, "cannot seek to the data");
  const uint64_t voxels = h.data_bytes / static_cast<uint64_t>(h.component_bytes);
  uint64_t count = 0;
  int c;
  if (h.encoding == DataEncoding::kHex) {
    while (count < 2 * h.data_bytes && (c = std::fgetc(f.get())) != EOF) {
      if (std::isxdigit(c)) ++count;
    }
    if (count < 2 * h.data_bytes) fail(name, "hex data is shorter than the header describes");
    return;
  }
  bool in_token = false;
  while (count < voxels && (c = std::fgetc(f.get())) != EOF) {
    const bool sep = std::isspace(c) || c == ',';
    if (!sep && !in_token) ++count;
    in_token = !sep;
  }
  if (count < voxels) {
    fail(name, "ASCII data holds " + std::to_string(count) + " values, the header describes " +
                   std::to_string(voxels));
  }
}

}  // namespace

HeaderSummary validate_image_file(const std::string& path, FileFormat format, uint64_t max_bytes) {
  const std::string& name = path;
  const std::string l = lower(fs::path(path).filename().string());
  HeaderSummary h;
  if (format == FileFormat::kNifti) {
    // A pair may be named by either half; the header is the .hdr.
    std::string header_path = path;
    std::string stem;
    bool is_pair = false;
    for (const char* ext : {".hdr", ".img", ".hdr.gz", ".img.gz"}) {
      if (ends_with(l, ext)) {
        stem = path.substr(0, path.size() - std::strlen(ext));
        is_pair = true;
      }
    }
    std::error_code ec;
    if (is_pair) {
      header_path = fs::exists(stem + ".hdr", ec) ? stem + ".hdr" : stem + ".hdr.gz";
    }
    FilePtr f = open_or_throw(header_path);
    uint8_t magic[2] = {0, 0};
    const bool gz = std::fread(magic, 1, 2, f.get()) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    std::rewind(f.get());
    uint8_t head[348];
    size_t n = 0;
    FileSource src(f.get());
    if (gz) {
      Inflater inf(src, name);
      n = inf.read(head, sizeof(head));
    } else {
      n = src.read(head, sizeof(head));
    }
    h = parse_nifti_header(head, n, name);
    check_size_limit(h, max_bytes, name);
    std::string data_path = header_path;
    if (!h.data_file.empty()) {
      if (!is_pair)
        fail(name, "NIfTI header says the data is in a separate .img file; name the file .hdr");
      data_path = fs::exists(stem + ".img", ec) ? stem + ".img" : stem + ".img.gz";
      if (!fs::exists(data_path, ec))
        throw InputError(quote_name(name) + ": the matching .img data file is missing");
      h.data_file = data_path;
    } else if (is_pair) {
      fail(name, "a single-file NIfTI (n+1) must be named .nii or .nii.gz");
    }
    FilePtr fd = open_or_throw(data_path);
    const bool dgz = std::fread(magic, 1, 2, fd.get()) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    h.encoding = dgz ? DataEncoding::kGzip : DataEncoding::kRaw;
    check_data_present(h, data_path, name);
    return h;
  }
  if (format == FileFormat::kNrrd || format == FileFormat::kMetaImage) {
    FilePtr f = open_or_throw(path);
    FileSource src(f.get());
    const std::string text = read_prefix(src, kMaxTextHeader + 1);
    h = format == FileFormat::kNrrd ? parse_nrrd_header(text, ends_with(l, ".nhdr"), name)
                                    : parse_metaimage_header(text, name);
    check_size_limit(h, max_bytes, name);
    std::string data_path = path;
    if (!h.data_file.empty()) {
      data_path = sibling(path, h.data_file);
      h.data_file = data_path;
      std::error_code ec;
      if (!fs::exists(data_path, ec)) {
        throw InputError(quote_name(name) + ": its data file '" + data_path + "' is missing");
      }
    }
    check_data_present(h, data_path, name);
    return h;
  }
  throw InputError(quote_name(name) + ": " + format_name(format) + " has no header check");
}

}  // namespace medicosam::io
