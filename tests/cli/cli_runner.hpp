#pragma once
// Runs the built `medicosam` (MEDICOSAM_CLI) as users do and captures its exit
// code, stdout and stderr. Shared by the CLI test programs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace medicosam::clitest {

struct CliResult {
  int code = -1;
  std::string out, err;
};

// One scratch folder per test program, removed at exit.
inline std::filesystem::path cli_scratch() {
  struct Scratch {
    std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                ("medicosam_cli_" + std::to_string(::getpid()));
    Scratch() {
      std::filesystem::remove_all(dir);
      std::filesystem::create_directories(dir);
    }
    ~Scratch() { std::filesystem::remove_all(dir); }
  };
  static Scratch s;
  return s.dir;
}

// `prefix` goes before the binary (e.g. "env -u MEDICOSAM_MODEL ").
inline CliResult run_cli(const std::string& args, const std::string& prefix = "") {
  namespace fs = std::filesystem;
  const char* bin = std::getenv("MEDICOSAM_CLI");
  EXPECT_TRUE(bin && fs::exists(bin)) << "MEDICOSAM_CLI must point at the built CLI";
  const auto out = cli_scratch() / "stdout.txt", err = cli_scratch() / "stderr.txt";
  const std::string cmd =
      prefix + std::string(bin) + " " + args + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream o(out), e(err);
  r.out.assign(std::istreambuf_iterator<char>(o), {});
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  return r;
}

}  // namespace medicosam::clitest
