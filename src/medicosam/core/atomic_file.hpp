#pragma once
// Atomic writes: outputs are written to a temporary file in the destination
// folder and renamed into place only when complete, so a crash or an error
// never leaves a half-written file under the user's chosen name.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace medicosam {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // removes the temporary file unless commit() succeeded

  // Path of the temporary file, for libraries that want a file name.
  const std::string& temp_path() const { return temp_path_; }
  const std::string& path() const { return path_; }

  void write(const void* data, size_t size);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Flushes, fsyncs and renames over the destination. Throws IoError on failure.
  void commit();

 private:
  void close_stream();
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Writes `bytes` to `path` atomically.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Runs `writer(temp_path)` (which writes a complete file there, e.g. through a
// third-party library), then renames the result to `path`. On any exception the
// temporary file is removed and the exception propagates.
template <typename Writer>
void write_via_temp_file(const std::string& path, Writer&& writer);

// Implementation detail of write_via_temp_file.
std::string make_temp_path(const std::string& path);
void commit_temp_file(const std::string& temp_path, const std::string& path);
void remove_quietly(const std::string& path);

template <typename Writer>
void write_via_temp_file(const std::string& path, Writer&& writer) {
  const std::string tmp = make_temp_path(path);
  try {
    writer(tmp);
    commit_temp_file(tmp, path);
  } catch (...) {
    remove_quietly(tmp);
    throw;
  }
}

// Reads a whole file; throws InputError naming the file if it cannot.
std::string read_file(const std::string& path);

}  // namespace medicosam
