#include "medicosam/core/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace medicosam {

std::string format_duration(double s) {
  char buf[32];
  if (s < 0) s = 0;
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  }
  return buf;
}

Progress::Progress(int64_t total, std::string label, bool enabled, int64_t already_done)
    : total_(total),
      done_(already_done),
      start_done_(already_done),
      label_(std::move(label)),
      enabled_(enabled),
      tty_(::isatty(2)) {
  start_ = last_render_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && enabled_ && tty_ && done_ > 0) std::fprintf(stderr, "\n");
}

void Progress::advance(int64_t n, const std::string& note) { set(done_ + n, note); }

void Progress::set(int64_t done, const std::string& note) {
  done_ = done;
  if (!note.empty()) note_ = note;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_render_).count();
  // Terminal: redraw at most 10x per second. Logs: a line every 10 s.
  if (since >= (tty_ ? 0.1 : 10.0) || done_ >= total_) render(false);
}

void Progress::finish(const std::string& note) {
  if (finished_) return;
  if (!note.empty()) note_ = note;
  render(true);
  finished_ = true;
}

void Progress::render(bool final) {
  last_render_ = std::chrono::steady_clock::now();
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(last_render_ - start_).count();
  const int64_t done_here = done_ - start_done_;
  const double rate = elapsed > 0 ? done_here / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
  const double frac = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  if (tty_) {
    const int width = 30;
    const int filled = static_cast<int>(frac * width + 0.5);
    std::string bar(filled, '#');
    bar.append(width - filled, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %3.0f%% %s<%s %s\033[K", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), frac * 100,
                 format_duration(elapsed).c_str(), final ? "0.0s" : format_duration(eta).c_str(), note_.c_str());
    if (final) std::fprintf(stderr, "\n");
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%.0f%%) elapsed %s, ETA %s %s\n", label_.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), frac * 100,
                 format_duration(elapsed).c_str(), final ? "0.0s" : format_duration(eta).c_str(), note_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace medicosam
