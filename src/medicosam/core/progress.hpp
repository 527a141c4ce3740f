#pragma once
// Progress reporting for long work: a bar with rate and ETA on a terminal,
// a periodic log line otherwise (CI logs, pipes).
#include <chrono>
#include <cstdint>
#include <string>

namespace medicosam {

class Progress {
 public:
  // `total` units of work; `label` names the task ("embedding slices").
  // Output goes to stderr. Disabled when `enabled` is false. `already_done`
  // units (resumed work) count as done but not towards the rate and ETA.
  Progress(int64_t total, std::string label, bool enabled = true, int64_t already_done = 0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Marks `n` more units done; `note` is shown after the bar (e.g. "loss 0.31").
  void advance(int64_t n = 1, const std::string& note = "");
  void set(int64_t done, const std::string& note = "");
  void finish(const std::string& note = "");
  int64_t done() const { return done_; }

 private:
  void render(bool final);
  int64_t total_;
  int64_t done_ = 0;
  int64_t start_done_ = 0;
  std::string label_;
  std::string note_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_render_;
};

// Formats seconds as "1h02m", "3m05s" or "12.3s".
std::string format_duration(double seconds);

}  // namespace medicosam
