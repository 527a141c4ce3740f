#include "medicosam/core/npy.hpp"

#include <cstring>
#include <limits>
#include <regex>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam {
namespace {

struct TypeInfo {
  NpyType type;
  const char* descr;  // canonical numpy descr
  size_t size;
};

constexpr TypeInfo kTypes[] = {
    {NpyType::kBool, "|b1", 1},    {NpyType::kUInt8, "|u1", 1},   {NpyType::kInt8, "|i1", 1},
    {NpyType::kInt16, "<i2", 2},   {NpyType::kUInt16, "<u2", 2},  {NpyType::kInt32, "<i4", 4},
    {NpyType::kInt64, "<i8", 8},   {NpyType::kFloat16, "<f2", 2}, {NpyType::kFloat32, "<f4", 4},
    {NpyType::kFloat64, "<f8", 8},
};

const TypeInfo& info(NpyType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i;
  throw Error("unknown npy type");
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

size_t npy_item_size(NpyType t) { return info(t).size; }
const char* npy_type_name(NpyType t) { return info(t).descr; }

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string NpyArray::shape_string() const {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + ")";
}

std::vector<float> NpyArray::to_float() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (type) {
      case NpyType::kBool:
      case NpyType::kUInt8: out[i] = as<uint8_t>()[i]; break;
      case NpyType::kInt8: out[i] = as<int8_t>()[i]; break;
      case NpyType::kInt16: out[i] = as<int16_t>()[i]; break;
      case NpyType::kUInt16: out[i] = as<uint16_t>()[i]; break;
      case NpyType::kInt32: out[i] = static_cast<float>(as<int32_t>()[i]); break;
      case NpyType::kInt64: out[i] = static_cast<float>(as<int64_t>()[i]); break;
      case NpyType::kFloat16: out[i] = half_to_float(as<uint16_t>()[i]); break;
      case NpyType::kFloat32: out[i] = as<float>()[i]; break;
      case NpyType::kFloat64: out[i] = static_cast<float>(as<double>()[i]); break;
    }
  }
  return out;
}

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  auto fail = [&](const std::string& why) -> FormatError {
    return FormatError("'" + name + "' is not a valid .npy file: " + why);
  };
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) throw fail("bad magic");
  const int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw fail("truncated header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw fail("unsupported format version " + std::to_string(major));
  }
  // numpy itself refuses headers over 10000 bytes by default (max_header_size);
  // longer ones also overflow the stack in std::regex's recursive matcher.
  if (header_len > 10000) throw fail("header of " + std::to_string(header_len) + " bytes is too long (numpy's limit is 10000)");
  if (offset + header_len > bytes.size()) throw fail("truncated header");
  const std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) throw fail("no descr");
  std::string descr = m[1];
  if (descr.size() == 3 && descr[0] == '=') descr[0] = '<';
  if (descr == "<b1" || descr == "b1") descr = "|b1";
  if (descr == "<u1") descr = "|u1";
  if (descr == "<i1") descr = "|i1";
  NpyArray a;
  bool found = false;
  for (const auto& t : kTypes) {
    if (descr == t.descr) {
      a.type = t.type;
      found = true;
    }
  }
  if (!found) throw fail("unsupported dtype '" + descr + "'");
  if (!std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*(True|False)"))) throw fail("no fortran_order");
  if (m[1] == "True") throw fail("Fortran-ordered arrays are not supported");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) throw fail("no shape");
  const std::string dims = m[1];
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it) {
    const std::string d = it->str();
    if (d.size() > 18) throw fail("dimension " + d.substr(0, 40) + " is too large");
    a.shape.push_back(std::stoll(d));
  }
  const size_t data_offset = offset + header_len;
  // Overflow-safe size computation before allocating: stop multiplying once
  // the product exceeds the file (a zero dimension later still makes it 0).
  unsigned __int128 total = npy_item_size(a.type);
  for (auto d : a.shape) {
    total *= static_cast<unsigned __int128>(d);
    if (total > bytes.size()) total = static_cast<unsigned __int128>(bytes.size()) + 1;
  }
  if (total > bytes.size() - data_offset) {
    throw fail("truncated data: header says " + a.shape_string() + " of " + descr + " but only " +
               std::to_string(bytes.size() - data_offset) + " data bytes follow");
  }
  a.data.assign(bytes.begin() + data_offset, bytes.begin() + data_offset + static_cast<size_t>(total));
  return a;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::string serialize_npy(const NpyArray& a) {
  std::string header = std::string("{'descr': '") + npy_type_name(a.type) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < a.shape.size(); ++i) header += std::to_string(a.shape[i]) + ", ";
  if (a.shape.size() > 1) header.resize(header.size() - 2);
  else if (a.shape.size() == 1) header.resize(header.size() - 1);
  header += "), }";
  // Pad so that the data starts at a multiple of 64 bytes; end with newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  return out;
}

void write_npy(const std::string& path, const NpyArray& a) { write_file_atomic(path, serialize_npy(a)); }

}  // namespace medicosam
