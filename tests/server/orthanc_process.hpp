#pragma once
// Starts Debian's Orthanc (with its DICOMweb plugin) as a child process from a
// configuration of its own: a free port of 127.0.0.1, storage in a temporary
// folder, no DICOM listener. The system service the package may run on 8042
// is never used. Used by orthanc_test.cpp. See PROTOCOLS.md §E.
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace medicosam::servertest {

inline const char* kOrthancBinary = "/usr/sbin/Orthanc";
inline const char* kOrthancDicomWebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

// A port of 127.0.0.1 that was free a moment ago (bound, then closed).
inline int free_local_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    throw std::runtime_error("cannot bind a local port");
  }
  socklen_t n = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(s);
  return ntohs(a.sin_port);
}

class OrthancProcess {
 public:
  // Writes DIR/orthanc.json (storage in DIR/db) and starts Orthanc.
  explicit OrthancProcess(const std::filesystem::path& dir, int ready_timeout_seconds = 60)
      : dir_(dir), timeout_(ready_timeout_seconds) {
    std::filesystem::create_directories(dir_ / "db");
    port_ = free_local_port();
    const nlohmann::json config = {
        {"Name", "medicosam-test"},
        {"StorageDirectory", (dir_ / "db").string()},
        {"IndexDirectory", (dir_ / "db").string()},
        {"HttpPort", port_},
        {"DicomServerEnabled", false},
        {"RemoteAccessAllowed", false},
        {"AuthenticationEnabled", false},
        {"HttpThreadsCount", 10},
        {"Plugins", {kOrthancDicomWebPlugin}},
        {"DicomWeb",
         {{"Enable", true}, {"Root", "/dicom-web/"}, {"EnableWado", true}, {"WadoRoot", "/wado"},
          {"Host", "localhost"}, {"Ssl", false}}}};
    std::ofstream(dir_ / "orthanc.json") << config.dump(2);
    start();
  }
  OrthancProcess(const OrthancProcess&) = delete;
  OrthancProcess& operator=(const OrthancProcess&) = delete;
  ~OrthancProcess() { kill(SIGKILL); }

  // Starts Orthanc (again, on the same port and storage) and waits, bounded,
  // until GET /system answers.
  void start() {
    if (pid_ > 0) throw std::runtime_error("Orthanc is already running");
    const auto log = (dir_ / "orthanc.log").string();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      std::FILE* out = std::fopen((dir_ / "orthanc.out").c_str(), "a");
      if (out) ::dup2(fileno(out), 1), ::dup2(fileno(out), 2);
      std::string bin = kOrthancBinary, logarg = "--logfile=" + log, cfg = (dir_ / "orthanc.json").string();
      char* argv[] = {bin.data(), logarg.data(), cfg.data(), nullptr};
      ::execv(bin.c_str(), argv);
      std::_Exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("Orthanc exited at start (see " + log + "):\n" + tail(log));
      }
      httplib::Client c("127.0.0.1", port_);
      c.set_connection_timeout(1, 0);
      c.set_read_timeout(2, 0);
      if (auto r = c.Get("/system"); r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    kill(SIGKILL);
    throw std::runtime_error("Orthanc did not answer GET /system within " + std::to_string(timeout_) + " s (see " +
                             log + "):\n" + tail(log));
  }

  // Sends `sig`; SIGKILL and SIGTERM also wait for the exit.
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    if (sig == SIGKILL || sig == SIGTERM) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string dicomweb() const { return url() + "/dicom-web"; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(60, 0);
    return c;
  }

 private:
  static std::string tail(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    const auto s = ss.str();
    return s.size() > 3000 ? s.substr(s.size() - 3000) : s;
  }
  std::filesystem::path dir_;
  int timeout_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace medicosam::servertest
