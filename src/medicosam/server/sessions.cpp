#include "medicosam/server/sessions.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <random>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/server/requests.hpp"

namespace medicosam::server {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
std::string new_token() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string t;
  for (int i = 0; i < 32; ++i) t += hex[rd() % 16];
  return t;
}
}  // namespace

SessionManager::SessionManager(std::string state_dir, int max_sessions, int idle_timeout_seconds)
    : state_dir_(std::move(state_dir)), max_(max_sessions), idle_timeout_(idle_timeout_seconds) {
  std::error_code ec;
  const auto dir = fs::path(state_dir_) / "sessions";
  fs::create_directories(dir, ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto token = e.path().filename().string();
    if (!e.is_directory() || e.is_symlink() || !is_valid_id(token)) continue;
    auto s = std::make_shared<NativeSession>();
    s->token = token;
    s->dir = e.path().string();
    s->last_access = Clock::now();
    try {
      if (fs::exists(s->meta_path())) s->meta = nlohmann::json::parse(read_file(s->meta_path()));
    } catch (const std::exception& ex) {
      spdlog::warn("session {}: unreadable meta.json ({}), restored without an image", token, ex.what());
    }
    sessions_[token] = s;
  }
  if (!sessions_.empty()) spdlog::info("restored {} session(s) from {}", sessions_.size(), dir.string());
}

std::shared_ptr<NativeSession> SessionManager::claim() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (static_cast<int>(sessions_.size()) >= max_) {
    throw HttpError(503, "all " + std::to_string(max_) + " sessions are in use; retry later");
  }
  auto s = std::make_shared<NativeSession>();
  s->token = new_token();
  s->dir = (fs::path(state_dir_) / "sessions" / s->token).string();
  s->last_access = Clock::now();
  fs::create_directories(s->dir);
  sessions_[s->token] = s;
  return s;
}

std::shared_ptr<NativeSession> SessionManager::get(const std::string& token) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = sessions_.find(token);
  if (token.empty() || it == sessions_.end())
    throw HttpError(410, "unknown or expired lease token: claim a new session");
  it->second->last_access = Clock::now();
  return it->second;
}

void SessionManager::release(const std::string& token) {
  std::shared_ptr<NativeSession> s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = sessions_.find(token);
    if (it == sessions_.end()) throw HttpError(410, "unknown or expired lease token");
    s = it->second;
    sessions_.erase(it);
  }
  std::lock_guard<std::mutex> busy(s->mutex);  // wait for a request in flight
  std::error_code ec;
  fs::remove_all(s->dir, ec);
}

int SessionManager::reap() {
  std::vector<std::shared_ptr<NativeSession>> expired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (now - it->second->last_access > std::chrono::seconds(idle_timeout_)) {
        expired.push_back(it->second);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& s : expired) {
    std::lock_guard<std::mutex> busy(s->mutex);
    std::error_code ec;
    const auto dest = fs::path(state_dir_) / "expired" / s->token;
    fs::create_directories(dest.parent_path(), ec);
    fs::rename(s->dir, dest, ec);
    spdlog::info("session {} expired after {} s idle (state kept in {})", s->token.substr(0, 8),
                 idle_timeout_, dest.string());
  }
  return static_cast<int>(expired.size());
}

int SessionManager::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(sessions_.size());
}

int SessionManager::retry_after() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int soonest = idle_timeout_;
  const auto now = Clock::now();
  for (const auto& [_, s] : sessions_) {
    const auto idle = std::chrono::duration_cast<std::chrono::seconds>(now - s->last_access).count();
    soonest = std::min<int>(soonest, std::max<int>(1, idle_timeout_ - static_cast<int>(idle)));
  }
  return std::max(1, soonest);
}

int SessionManager::remaining_seconds(const NativeSession& s) const {
  const auto idle = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - s.last_access).count();
  return std::max<int>(0, idle_timeout_ - static_cast<int>(idle));
}

}  // namespace medicosam::server
