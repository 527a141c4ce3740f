#pragma once
// Shared helpers for the io tests: fixture paths, scratch folders, and
// optional interop checks through Debian's Python.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace medicosam::io::test {

inline std::string shared(const std::string& rel) {
  return std::string(MEDICOSAM_SHARED_DIR) + "/" + rel;
}
inline std::string fixture(const std::string& rel) {
  return std::string(MEDICOSAM_SOURCE_DIR) + "/tests/io/data/" + rel;
}

// A fresh folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("medicosam_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  // Names of the entries in the folder (to check nothing was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      out.push_back(e.path().filename().string());
    return out;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs a command, returns its exit status and captured stdout+stderr.
inline int run_command(const std::string& cmd, std::string* output) {
  output->clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline bool have_python_module(const std::string& module) {
  std::string out;
  return run_command("/usr/bin/python3 -c 'import " + module + "'", &out) == 0;
}

// Runs a Python script (Debian's interpreter) with arguments; returns stdout.
inline int run_python(const std::string& script, const std::string& args, std::string* output,
                      const TempDir& dir) {
  const std::string path = dir / "script.py";
  write_bytes(path, script);
  return run_command("/usr/bin/python3 " + path + " " + args, output);
}

}  // namespace medicosam::io::test
