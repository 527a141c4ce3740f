// libFuzzer target: our PNG and JPEG decoders (libpng/libjpeg with setjmp
// error hooks, see src/medicosam/io/raster.cpp). Every input must end in a
// decoded image or a medicosam::Error: no crash, no sanitizer report, no hang.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "medicosam/core/error.hpp"
#include "medicosam/io/raster.hpp"

namespace {

constexpr uint64_t kMaxBytes = uint64_t{64} << 20;

const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string d =
        std::string(tmp ? tmp : "/tmp") + "/medicosam_raster_fuzz_" + std::to_string(::getpid());
    ::mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

void cleanup() {
  std::remove((scratch_dir() + "/f.png").c_str());
  std::remove((scratch_dir() + "/f.jpg").c_str());
  ::rmdir(scratch_dir().c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The folder name (a static) must exist before the exit handler is
  // registered, so that it is destroyed after the handler ran.
  static const bool registered = (scratch_dir(), std::atexit(cleanup) == 0);
  (void)registered;
  for (const char* name : {"/f.png", "/f.jpg"}) {
    const std::string path = scratch_dir() + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
      if (name[3] == 'p') {
        medicosam::io::detail::read_png(path, kMaxBytes);
      } else {
        medicosam::io::detail::read_jpeg(path, kMaxBytes);
      }
    } catch (const medicosam::Error&) {
    }
  }
  return 0;
}
