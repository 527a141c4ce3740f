#pragma once
// Starts `medicosam serve` as a child process on a free port of 127.0.0.1
// (--port 0; the port is read from the line it prints when listening), and
// stops it. Used by the server tests and the load benchmark.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace medicosam::servertest {

class ServerProcess {
 public:
  // `args` after `serve` (e.g. {"--datastore", dir}); `log` receives stderr.
  ServerProcess(const std::string& binary, const std::vector<std::string>& args, const std::string& log,
                int timeout_seconds = 180) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      FILE* err = std::fopen(log.c_str(), "a");
      if (err) ::dup2(fileno(err), 2);
      ::close(out[0]);
      std::vector<std::string> all = {binary, "serve", "--port", "0", "--host", "127.0.0.1"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(binary.c_str(), argv.data());
      std::_Exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
    // Bounded wait for "listening on http://127.0.0.1:PORT".
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      fd_set set;
      FD_ZERO(&set);
      FD_SET(out_, &set);
      timeval tv{1, 0};
      if (::select(out_ + 1, &set, nullptr, nullptr, &tv) > 0) {
        char c;
        const auto n = ::read(out_, &c, 1);
        if (n <= 0) break;  // exited
        if (c == '\n') {
          const auto p = line.find("http://127.0.0.1:");
          if (p != std::string::npos) {
            port_ = std::stoi(line.substr(p + 17));
            return;
          }
          line.clear();
        } else {
          line += c;
        }
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
    }
    stop(SIGKILL);
    throw std::runtime_error("medicosam serve did not start (see " + log + ")");
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(SIGTERM); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Sends `sig` and waits (bounded) for the exit; returns the exit status
  // (-1 if killed by a signal or already gone).
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (i == 299) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    pid_ = -1;
    if (out_ >= 0) ::close(out_), out_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int port_ = 0;
};

}  // namespace medicosam::servertest
