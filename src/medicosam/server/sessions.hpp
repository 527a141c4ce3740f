#pragma once
// Leases of the native session API (nnInteractive's semantics): a client
// claims a session and gets a lease token; the session lives while it is
// used (idle timeout), the number of sessions is bounded (503 + Retry-After
// when full), an unknown or expired token gets 410. Each session has a
// folder in STATE/sessions/<token>/ with what it needs to come back after a
// crash or restart: meta.json (the image and how it is viewed) and
// state.json (segment::Session's autosave, written atomically after every
// change). The server re-attaches the image lazily on the next request.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medicosam/io/volume.hpp"
#include "medicosam/segment/image_session.hpp"
#include "medicosam/server/embedding_store.hpp"

namespace medicosam::server {

struct NativeSession {
  std::string token;
  std::string dir;    // STATE/sessions/<token>
  std::mutex mutex;   // one request at a time per session
  std::chrono::steady_clock::time_point last_access;
  nlohmann::json meta;  // {"image", "upload", "model", "axis", "normalize"}; empty until set_image
  std::shared_ptr<SliceEmbeddings> embeddings;
  std::unique_ptr<segment::ImageSession> image;  // null until attached
  io::LabelMap shown;  // what the client was last sent (for region updates)

  std::string state_path() const { return dir + "/state.json"; }
  std::string meta_path() const { return dir + "/meta.json"; }
};

class SessionManager {
 public:
  // Restores the leases found in state_dir/sessions (their images are
  // attached again on first use).
  SessionManager(std::string state_dir, int max_sessions, int idle_timeout_seconds);

  // HttpError 503 (with the seconds to wait in retry_after()) when full.
  std::shared_ptr<NativeSession> claim();
  // HttpError 410 for an unknown or expired token; refreshes the idle timer.
  std::shared_ptr<NativeSession> get(const std::string& token);
  // Ends a session and deletes its folder.
  void release(const std::string& token);
  // Ends sessions idle for longer than the timeout (their folders are moved
  // to STATE/expired/, so nothing committed is deleted). Returns how many.
  int reap();

  int size() const;
  int max_sessions() const { return max_; }
  int idle_timeout() const { return idle_timeout_; }
  int retry_after() const;
  int remaining_seconds(const NativeSession& s) const;

 private:
  std::string state_dir_;
  int max_, idle_timeout_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<NativeSession>> sessions_;
};

}  // namespace medicosam::server
