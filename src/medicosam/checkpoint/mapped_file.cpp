#include "medicosam/checkpoint/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "medicosam/core/error.hpp"

namespace medicosam::checkpoint {
namespace {

// Closes a file descriptor on scope exit; the mapping stays valid after close.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw InputError("cannot open '" + path_ + "': " + std::strerror(errno));
  }
  FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw InputError("cannot open '" + path_ + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw InputError("cannot open '" + path_ + "': not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ == 0) return;  // mmap of length 0 fails; an empty view is all we need
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    throw InputError("cannot map '" + path_ + "' into memory: " + std::strerror(errno));
  }
  // Tensors are copied out front to back.
  ::madvise(p, size_, MADV_SEQUENTIAL);
  mapping_ = p;
  data_ = static_cast<const std::uint8_t*>(p);
}

MappedFile::~MappedFile() {
  if (mapping_) ::munmap(mapping_, size_);
}

}  // namespace medicosam::checkpoint
