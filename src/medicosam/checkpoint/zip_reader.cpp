#include "medicosam/checkpoint/zip_reader.hpp"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
constexpr std::uint32_t kEndOfCentralDirSig = 0x06054b50;
constexpr std::uint32_t kZip64EndOfCentralDirSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kEndOfCentralDirSize = 22;
constexpr std::size_t kZip64EndOfCentralDirSize = 56;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
// Deflate cannot expand data by more than about 1032:1; a header claiming more
// is corrupted, and trusting it would mean a giant allocation.
constexpr std::uint64_t kMaxDeflateRatio = 1032;
// All deflated entries of one archive together may inflate to at most this
// floor plus kMaxArchiveRatio x the file's size. A torch checkpoint re-zipped
// with deflate shrinks by a few percent (float weights barely compress), so
// this only refuses zip bombs: a small file whose entries claim gigabytes.
constexpr std::uint64_t kInflateFloor = std::uint64_t{64} << 20;
constexpr std::uint64_t kMaxArchiveRatio = 64;

std::uint16_t rd16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
std::uint32_t rd32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t rd64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(rd32(p)) | (static_cast<std::uint64_t>(rd32(p + 4)) << 32);
}

// True if [offset, offset + length) lies within a buffer of `size` bytes.
bool in_bounds(std::uint64_t offset, std::uint64_t length, std::uint64_t size) {
  return offset <= size && length <= size - offset;
}

}  // namespace

std::uint32_t crc32_of(const void* data, std::size_t size, std::uint32_t crc) {
  // crc32_z takes a size_t length, so multi-gigabyte storages need no chunking.
  return static_cast<std::uint32_t>(
      ::crc32_z(crc, static_cast<const Bytef*>(data), static_cast<z_size_t>(size)));
}

ZipReader::ZipReader(std::string path, const std::uint8_t* data, std::size_t size)
    : path_(std::move(path)), data_(data), size_(size) {
  std::uint64_t cd_offset = 0, cd_size = 0, count = 0;
  locate_central_directory(cd_offset, cd_size, count);
  parse_central_directory(cd_offset, cd_size, count);
}

void ZipReader::fail(const std::string& problem) const {
  throw FormatError("'" + path_ + "' " + problem);
}

void ZipReader::locate_central_directory(std::uint64_t& cd_offset, std::uint64_t& cd_size,
                                         std::uint64_t& count) const {
  if (size_ < kEndOfCentralDirSize) {
    fail("is truncated or corrupted: zip central directory not found (file has only " +
         std::to_string(size_) + " bytes)");
  }
  // The end-of-central-directory record is the last 22 bytes plus a comment of
  // at most 65535 bytes; scan backwards for its signature.
  const std::size_t last = size_ - kEndOfCentralDirSize;
  const std::size_t first = last > 0xFFFF ? last - 0xFFFF : 0;
  std::size_t eocd = std::numeric_limits<std::size_t>::max();
  for (std::size_t pos = last + 1; pos-- > first;) {
    if (rd32(data_ + pos) == kEndOfCentralDirSig &&
        pos + kEndOfCentralDirSize + rd16(data_ + pos + 20) <= size_) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::numeric_limits<std::size_t>::max()) {
    fail("is truncated or corrupted: zip central directory not found");
  }
  const std::uint8_t* e = data_ + eocd;
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0) fail("is a multi-part zip archive (not supported)");
  count = rd16(e + 10);
  cd_size = rd32(e + 12);
  cd_offset = rd32(e + 16);
  std::uint64_t cd_end_limit = eocd;

  // ZIP64: a locator just before the record points at the 64-bit record.
  if (eocd >= kZip64LocatorSize && rd32(data_ + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const std::uint8_t* loc = data_ + eocd - kZip64LocatorSize;
    const std::uint64_t z64 = rd64(loc + 8);
    if (!in_bounds(z64, kZip64EndOfCentralDirSize, eocd - kZip64LocatorSize) ||
        rd32(data_ + z64) != kZip64EndOfCentralDirSig) {
      fail("is corrupted: the ZIP64 end-of-central-directory record is missing");
    }
    const std::uint8_t* r = data_ + z64;
    count = rd64(r + 32);
    cd_size = rd64(r + 40);
    cd_offset = rd64(r + 48);
    cd_end_limit = z64;
  } else if (cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    fail("is truncated or corrupted: ZIP64 central directory locator not found");
  }
  if (!in_bounds(cd_offset, cd_size, cd_end_limit)) {
    fail("is truncated or corrupted: the zip central directory (offset " +
         std::to_string(cd_offset) + ", " + std::to_string(cd_size) +
         " bytes) lies outside the file");
  }
}

void ZipReader::parse_central_directory(std::uint64_t cd_offset, std::uint64_t cd_size,
                                        std::uint64_t count) {
  // Each record is at least 46 bytes, which bounds a believable entry count.
  if (count > cd_size / kCentralHeaderSize) {
    fail("is corrupted: the zip directory claims " + std::to_string(count) +
         " entries but has room for fewer");
  }
  entries_.reserve(static_cast<std::size_t>(count));
  const std::uint8_t* p = data_ + cd_offset;
  const std::uint8_t* const end = p + cd_size;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (static_cast<std::size_t>(end - p) < kCentralHeaderSize || rd32(p) != kCentralHeaderSig) {
      fail("is corrupted: zip directory entry " + std::to_string(i) + " is malformed");
    }
    ZipEntry e;
    e.flags = rd16(p + 8);
    e.method = rd16(p + 10);
    e.crc32 = rd32(p + 16);
    e.compressed_size = rd32(p + 20);
    e.uncompressed_size = rd32(p + 24);
    const std::size_t name_len = rd16(p + 28);
    const std::size_t extra_len = rd16(p + 30);
    const std::size_t comment_len = rd16(p + 32);
    e.local_header_offset = rd32(p + 42);
    const std::size_t record_len = kCentralHeaderSize + name_len + extra_len + comment_len;
    if (static_cast<std::size_t>(end - p) < record_len) {
      fail("is corrupted: zip directory entry " + std::to_string(i) + " runs past the directory");
    }
    e.name.assign(reinterpret_cast<const char*>(p + kCentralHeaderSize), name_len);

    // ZIP64 extra field: 64-bit values for exactly those fields saturated above,
    // in this order.
    const std::uint8_t* x = p + kCentralHeaderSize + name_len;
    const std::uint8_t* const x_end = x + extra_len;
    while (x_end - x >= 4) {
      const std::uint16_t id = rd16(x);
      const std::size_t len = rd16(x + 2);
      if (static_cast<std::size_t>(x_end - x - 4) < len) break;
      if (id == kZip64ExtraId) {
        const std::uint8_t* f = x + 4;
        const std::uint8_t* const f_end = f + len;
        auto take = [&](std::uint64_t& field) {
          if (f_end - f < 8) fail("is corrupted: ZIP64 field of entry '" + e.name + "' is short");
          field = rd64(f);
          f += 8;
        };
        if (e.uncompressed_size == 0xFFFFFFFFu) take(e.uncompressed_size);
        if (e.compressed_size == 0xFFFFFFFFu) take(e.compressed_size);
        if (e.local_header_offset == 0xFFFFFFFFu) take(e.local_header_offset);
      }
      x += 4 + len;
    }

    // The data starts after the local header, whose name/extra lengths may
    // differ from the central ones (torch pads the local extra field so that
    // tensor data is 64-byte aligned).
    if (!in_bounds(e.local_header_offset, kLocalHeaderSize, size_) ||
        rd32(data_ + e.local_header_offset) != kLocalHeaderSig) {
      fail("is truncated or corrupted: zip entry '" + e.name + "' has no local header");
    }
    const std::uint8_t* lh = data_ + e.local_header_offset;
    e.data_offset = e.local_header_offset + kLocalHeaderSize + rd16(lh + 26) + rd16(lh + 28);
    if (!in_bounds(e.data_offset, e.compressed_size, size_)) {
      fail("is truncated: zip entry '" + e.name + "' needs " + std::to_string(e.compressed_size) +
           " bytes at offset " + std::to_string(e.data_offset) + " but the file has only " +
           std::to_string(size_) + " bytes");
    }
    index_.emplace(e.name, entries_.size());  // keeps the first of duplicate names
    entries_.push_back(std::move(e));
    p += record_len;
  }
  // Entries must not share bytes: overlapping entries (many names for one
  // compressed blob) are the classic way to make a small zip inflate to
  // terabytes, and no zip writer produces them.
  std::vector<const ZipEntry*> by_offset;
  by_offset.reserve(entries_.size());
  for (const ZipEntry& e : entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const ZipEntry* a, const ZipEntry* b) {
    return a->local_header_offset < b->local_header_offset;
  });
  for (std::size_t k = 1; k < by_offset.size(); ++k) {
    const ZipEntry& prev = *by_offset[k - 1];
    if (by_offset[k]->local_header_offset < prev.data_offset + prev.compressed_size) {
      fail("is corrupted: zip entries '" + prev.name + "' and '" + by_offset[k]->name +
           "' overlap in the file");
    }
  }
  inflate_limit_ = kInflateFloor + kMaxArchiveRatio * static_cast<std::uint64_t>(size_);
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::string_view ZipReader::read(const ZipEntry& entry, std::string& scratch) const {
  if (entry.flags & 0x1) fail("has an encrypted zip entry '" + entry.name + "' (not supported)");
  const char* raw = reinterpret_cast<const char*>(data_ + entry.data_offset);
  std::string_view out;
  if (entry.method == 0) {
    if (entry.compressed_size != entry.uncompressed_size) {
      fail("is corrupted: stored zip entry '" + entry.name + "' has inconsistent sizes");
    }
    out = std::string_view(raw, static_cast<std::size_t>(entry.compressed_size));
  } else if (entry.method == 8) {
    if (entry.uncompressed_size > entry.compressed_size * kMaxDeflateRatio + 1024) {
      fail("is corrupted: zip entry '" + entry.name + "' claims an impossible size of " +
           std::to_string(entry.uncompressed_size) + " bytes");
    }
    if (entry.uncompressed_size > inflate_limit_ - inflated_total_) {
      fail("is corrupted or a zip bomb: inflating entry '" + entry.name + "' (" +
           std::to_string(entry.uncompressed_size) + " bytes) would bring the archive's " +
           "deflated entries to more than " + std::to_string(inflate_limit_ >> 20) +
           " MiB, " + std::to_string(kMaxArchiveRatio) + " times the file's size");
    }
    inflated_total_ += entry.uncompressed_size;
    scratch.resize(static_cast<std::size_t>(entry.uncompressed_size));
    z_stream zs{};
    if (::inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail("could not be inflated: zlib init failed");
    std::uint64_t in_left = entry.compressed_size;
    std::uint64_t out_left = entry.uncompressed_size;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw));
    zs.next_out = reinterpret_cast<Bytef*>(scratch.data());
    int rc = Z_OK;
    // avail_in/avail_out are 32-bit; feed entries over 4 GB in chunks.
    constexpr std::uint64_t kChunk = 1u << 30;
    while (rc == Z_OK) {
      if (zs.avail_in == 0) {
        zs.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
        in_left -= zs.avail_in;
      }
      if (zs.avail_out == 0) {
        zs.avail_out = static_cast<uInt>(std::min(out_left, kChunk));
        out_left -= zs.avail_out;
      }
      rc = ::inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_BUF_ERROR && (zs.avail_in > 0 || in_left > 0) &&
          (zs.avail_out > 0 || out_left > 0)) {
        rc = Z_OK;  // progress is still possible
      }
    }
    const std::uint64_t produced = zs.total_out;
    ::inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != entry.uncompressed_size) {
      fail("is corrupted: zip entry '" + entry.name + "' does not inflate to its declared size");
    }
    out = scratch;
  } else {
    fail("uses zip compression method " + std::to_string(entry.method) + " for entry '" +
         entry.name + "' (only stored and deflated entries are supported)");
  }
  // Newer torch can skip checksums (torch.serialization.set_crc32_options(False))
  // and then records 0: nothing to verify against.
  if (entry.crc32 != 0 && crc32_of(out.data(), out.size()) != entry.crc32) {
    fail("is corrupted: CRC-32 mismatch in zip entry '" + entry.name + "'");
  }
  return out;
}

}  // namespace medicosam::checkpoint
