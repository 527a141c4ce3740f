// libFuzzer target: the header checks that stand between untrusted files and
// ITK (NIfTI / NRRD / MetaImage header parsing, size checks, gzip/zlib
// inflation, and the file-level validation of data presence).
// Every input must end in success or a medicosam::Error, never a crash, a
// sanitizer report, a hang or a huge allocation.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "medicosam/core/error.hpp"
#include "medicosam/io/header_check.hpp"

namespace {

using medicosam::io::FileFormat;

constexpr uint64_t kMaxBytes = uint64_t{64} << 20;  // small limit keeps iterations fast

template <typename F>
void guarded(F&& f) {
  try {
    f();
  } catch (const medicosam::Error&) {
    // Refusing bad input with a clear error is the expected outcome.
  }
}

void parse_all_in_memory(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  guarded([&] {
    const auto h = medicosam::io::parse_nifti_header(data, size, "fuzz.nii");
    medicosam::io::check_size_limit(h, kMaxBytes, "fuzz.nii");
  });
  guarded([&] {
    const auto h = medicosam::io::parse_nrrd_header(text, false, "fuzz.nrrd");
    medicosam::io::check_size_limit(h, kMaxBytes, "fuzz.nrrd");
  });
  guarded([&] { medicosam::io::parse_nrrd_header(text, true, "fuzz.nhdr"); });
  guarded([&] {
    const auto h = medicosam::io::parse_metaimage_header(text, "fuzz.mha");
    medicosam::io::check_size_limit(h, kMaxBytes, "fuzz.mha");
  });
  guarded([&] { medicosam::io::inflated_size(data, size, 1 << 20, "fuzz.gz"); });
}

// The same bytes as files, through format detection and full validation
// (which also looks at data sizes and decompresses).
void validate_as_files(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp ? tmp : "/tmp") + "/medicosam_fuzz_" + std::to_string(::getpid());
  }();
  static const bool made = [] {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return false;
    std::atexit([] {  // libFuzzer ends with exit(): leave no scratch files behind
      for (const char* n : {"f.nii", "f.nii.gz", "f.nrrd", "f.mha"})
        std::remove((dir + "/" + n).c_str());
      ::rmdir(dir.c_str());
    });
    return true;
  }();
  if (!made) return;
  struct Case {
    const char* name;
    FileFormat format;
  };
  for (const Case& c : {Case{"f.nii", FileFormat::kNifti}, Case{"f.nii.gz", FileFormat::kNifti},
                        Case{"f.nrrd", FileFormat::kNrrd}, Case{"f.mha", FileFormat::kMetaImage}}) {
    const std::string path = dir + "/" + c.name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    guarded([&] { medicosam::io::detect_format(path); });
    guarded([&] { medicosam::io::validate_image_file(path, c.format, kMaxBytes); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parse_all_in_memory(data, size);
  validate_as_files(data, size);
  return 0;
}
