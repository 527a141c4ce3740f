#include "medicosam/core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "medicosam/core/error.hpp"

namespace medicosam {
namespace fs = std::filesystem;

std::string make_temp_path(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  fs::path p(path);
  std::ostringstream name;
  // Keep the final extension last so that libraries choosing a writer by
  // extension (ITK, OpenCV) pick the same one as for the real name.
  const std::string fname = p.filename().string();
  auto dot = fname.find('.');
  const std::string stem = dot == std::string::npos ? fname : fname.substr(0, dot);
  const std::string ext = dot == std::string::npos ? "" : fname.substr(dot);
  name << "." << stem << ".tmp-" << ::getpid() << "-" << counter++ << "-" << (rd() & 0xffff) << ext;
  return (p.parent_path() / name.str()).string();
}

void remove_quietly(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

void commit_temp_file(const std::string& temp_path, const std::string& path) {
  int fd = ::open(temp_path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    remove_quietly(temp_path);
    throw IoError("cannot write '" + path + "': " + why);
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  temp_path_ = make_temp_path(path_);
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (!file_) {
    throw IoError("cannot write '" + path_ + "': " + std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  close_stream();
  if (!committed_) remove_quietly(temp_path_);
}

void AtomicFile::close_stream() {
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
}

void AtomicFile::write(const void* data, size_t size) {
  if (!file_) throw IoError("cannot write '" + path_ + "': file already closed");
  if (size && std::fwrite(data, 1, size, file_) != size) {
    throw IoError("cannot write '" + path_ + "': " + std::strerror(errno));
  }
}

void AtomicFile::commit() {
  if (!file_) throw IoError("cannot write '" + path_ + "': file already closed");
  const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const std::string why = ok ? "" : std::strerror(errno);
  close_stream();
  if (!ok) throw IoError("cannot write '" + path_ + "': " + why);
  commit_temp_file(temp_path_, path_);
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError("'" + path + "' is a folder, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError("cannot read '" + path + "'");
  return ss.str();
}

}  // namespace medicosam
