#pragma once
// Runs a piece of parsing code in a forked child under a memory limit and
// reports what it did and how much memory it took: the hostile-file tests use
// it to show that a small file cannot make a reader allocate without bound.
//
// The child gets RLIMIT_AS = its current address space + `limit_bytes`, so an
// unbounded allocation ends in std::bad_alloc (reported as such, and the test
// fails) instead of exhausting the machine. Under AddressSanitizer, whose
// shadow memory makes an address-space limit meaningless, no limit is set and
// only the measured peak is checked. The peak is the child's maximum resident
// set (getrusage of the reaped child) minus its resident set when it started
// (after fork, before the code under test), i.e. what that code added.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>

#include "medicosam/core/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define MEDICOSAM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEDICOSAM_TEST_ASAN 1
#endif
#endif

namespace medicosam::checkpoint::testing {

// Added to the peak a test allows: ASan's shadow memory, redzones and
// quarantine make every allocation cost more.
#ifdef MEDICOSAM_TEST_ASAN
constexpr double kSanitizerSlackMiB = 256;
#else
constexpr double kSanitizerSlackMiB = 0;
#endif

struct LimitedRun {
  // "ok" (returned normally), "FormatError", "InputError", "Error" (other
  // medicosam errors), "bad_alloc", "exception", "crash" (signal / no report).
  std::string outcome;
  std::string message;   // what() of the exception, or the returned string
  double peak_mib = 0;   // resident memory the child added at its peak
  int signal = 0;        // the signal that ended the child, if any
};

inline long resident_kib_now() {
  long pages_total = 0, pages_resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return pages_resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

inline unsigned long long address_space_bytes_now() {
  unsigned long long pages_total = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%llu", &pages_total) != 1) pages_total = 0;
    std::fclose(f);
  }
  return pages_total * static_cast<unsigned long long>(::sysconf(_SC_PAGESIZE));
}

// Runs `fn` (returning std::string, reported as the message) in a child
// limited to `limit_bytes` more memory and at most `seconds` of wall time.
template <typename F>
LimitedRun run_with_memory_limit(unsigned long long limit_bytes, F&& fn, unsigned seconds = 120) {
  LimitedRun r;
  int fds[2];
  if (::pipe(fds) != 0) {
    r.outcome = "crash";
    r.message = "pipe() failed";
    return r;
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const long rss_start = resident_kib_now();
    ::close(fds[0]);
    ::alarm(seconds);
#ifndef MEDICOSAM_TEST_ASAN
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = address_space_bytes_now() + limit_bytes;
    ::setrlimit(RLIMIT_AS, &lim);
#endif
    std::string report = std::to_string(rss_start) + "\n";
    try {
      report += "ok\n" + std::string(fn());
    } catch (const FormatError& e) {
      report += std::string("FormatError\n") + e.what();
    } catch (const InputError& e) {
      report += std::string("InputError\n") + e.what();
    } catch (const Error& e) {
      report += std::string("Error\n") + e.what();
    } catch (const std::bad_alloc& e) {
      report += std::string("bad_alloc\n") + e.what();
    } catch (const std::exception& e) {
      report += std::string("exception\n") + e.what();
    }
    std::size_t off = 0;
    while (off < report.size()) {
      const ssize_t n = ::write(fds[1], report.data() + off, report.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::close(fds[1]);
    std::_Exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    report.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  rusage usage{};
  ::wait4(pid, &status, 0, &usage);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  const std::size_t first = report.find('\n');
  const long rss_start = first == std::string::npos ? 0 : std::atol(report.c_str());
  if (first != std::string::npos) report.erase(0, first + 1);
  r.peak_mib = static_cast<double>(usage.ru_maxrss - rss_start) / 1024.0;
  if (r.peak_mib < 0) r.peak_mib = 0;
  const std::size_t nl = report.find('\n');
  if (nl == std::string::npos) {
    r.outcome = "crash";
    r.message = "the child reported nothing (signal " + std::to_string(r.signal) + ")";
  } else {
    r.outcome = report.substr(0, nl);
    r.message = report.substr(nl + 1);
  }
  return r;
}

}  // namespace medicosam::checkpoint::testing
