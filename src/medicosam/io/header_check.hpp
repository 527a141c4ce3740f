#pragma once
// Format detection and header validation for NIfTI, NRRD and MetaImage,
// before any file is handed to ITK. ITK's readers trust their headers: a
// malicious or broken header can make them allocate huge buffers, read past
// the data or abort. These parsers are self-contained (no ITK), bounded, and
// the libFuzzer target in fuzz/ exercises them.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace medicosam::io {

enum class FileFormat { kUnknown, kNifti, kNrrd, kMetaImage, kDicom, kPng, kJpeg, kTiff, kBmp };
const char* format_name(FileFormat f);

enum class DataEncoding { kRaw, kGzip, kZlib, kBzip2, kAscii, kHex };

// What a header says about the voxel data.
struct HeaderSummary {
  FileFormat format = FileFormat::kUnknown;
  int dimension = 0;                     // spatial axes (1..3)
  std::array<int64_t, 3> size{1, 1, 1};  // spatial size, 1 for absent axes
  int components = 1;                    // per voxel (1 scalar, 3 RGB, ...)
  int component_bytes = 0;               // bytes per component
  std::string component_type;            // e.g. "int16", "float32"
  uint64_t data_bytes = 0;               // uncompressed voxel bytes
  DataEncoding encoding = DataEncoding::kRaw;
  std::string data_file;  // file holding the data; empty = the header file itself
  // Where the data starts in the data file: skip `header_bytes` raw bytes,
  // then `line_skip` lines, then `byte_skip` bytes (raw bytes for raw and
  // text encodings, decompressed bytes for gzip/zlib).
  int64_t header_bytes = 0;
  int64_t line_skip = 0;
  int64_t byte_skip = 0;
  bool data_at_end = false;  // raw data is the last data_bytes of the file (skip -1)
};

// Voxel count times bytes, or an error if it does not fit in 64 bits.
uint64_t checked_data_bytes(const std::array<int64_t, 3>& size, int components, int component_bytes,
                            const std::string& name);

// Parses a NIfTI-1 (or Analyze 7.5) header from the first bytes of the
// (decompressed) file. Throws FormatError naming `name` on anything invalid or
// unsupported.
HeaderSummary parse_nifti_header(const uint8_t* bytes, size_t n, const std::string& name);
// Parses a NRRD header; `text` is the start of the file (header and possibly
// data). The header must end with an empty line unless `detached` (.nhdr).
HeaderSummary parse_nrrd_header(std::string_view text, bool detached, const std::string& name);
// Parses a MetaImage header (.mha/.mhd) up to and including ElementDataFile.
HeaderSummary parse_metaimage_header(std::string_view text, const std::string& name);

// Throws FormatError if the data would exceed `max_bytes` (refuse before allocating).
void check_size_limit(const HeaderSummary& h, uint64_t max_bytes, const std::string& name);

// Decompresses a gzip (or zlib) byte stream in memory and returns how many
// bytes it yields, stopping after `stop_after`; throws FormatError if the
// stream is corrupt or truncated before `stop_after` bytes.
uint64_t inflated_size(const uint8_t* data, size_t n, uint64_t stop_after, const std::string& name);

// Format by magic bytes (decompressing .gz for NIfTI), then by extension.
// Does not validate. Returns kUnknown for anything else.
FileFormat detect_format(const std::string& path);
// Format guessed from the name only ("a.nii.gz" -> kNifti).
FileFormat format_from_extension(const std::string& path);

// Full pre-ITK check of a NIfTI/NRRD/MetaImage file: parses the header,
// enforces `max_bytes`, and makes sure the data is all there (file sizes,
// complete gzip/zlib stream). Throws InputError/FormatError naming the file.
HeaderSummary validate_image_file(const std::string& path, FileFormat format, uint64_t max_bytes);

}  // namespace medicosam::io
