#pragma once
// `medicosam serve`: a long-running annotation server that keeps models and
// image embeddings in memory and speaks
//  - MONAI Label's REST protocol, so 3D Slicer's MONAI Label module, OHIF's
//    MONAI Label mode and MONAI Label's Python client use it unmodified
//    (/info/, /infer/{model}, /datastore/, /activelearning/, /session/,
//    /logs/, /train/, /auth/);
//  - a native session API under /api/ (claim a lease, set the image once,
//    points / boxes / undo / redo / propagate / commit with region updates,
//    export, save) in the spirit of nnInteractive's server.
// docs/server.md documents both. Torch-free header.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "medicosam/server/dicomweb.hpp"

namespace medicosam::server {

struct ServerOptions {
  std::string datastore;  // folder of images (labels kept in DATASTORE/labels)
  // Or a PACS: studies.url non-empty = the DICOMweb datastore (an empty
  // studies.cache_dir = STATE/dicomweb/<hash of the URL>). Exactly one of the two.
  DicomWebOptions studies;
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 = any free port (printed when listening)
  std::vector<std::pair<std::string, std::string>> models;  // name, checkpoint path
  int threads = 0;  // torch threads (0 = all cores)
  std::string device = "cpu";
  std::string precision = "auto";  // image encoder: auto | fp32 | bf16 (predict::PredictorOptions)
  std::string api_key;  // non-empty: every request needs "Authorization: Bearer KEY"
  int max_sessions = 8;
  int idle_timeout = 600;  // seconds
  uint64_t memory_budget = uint64_t{2} << 30;  // embeddings held in RAM
  uint64_t max_upload = uint64_t{2} << 30;     // request bodies larger than this are refused (413)
  int workers = 8;          // HTTP worker threads
  int request_timeout = 120;  // seconds to read / write a request
  std::string state_dir;  // sessions, caches, uploads (default DATASTORE/.medicosam; --studies: ~/.cache/medicosam/serve)
  std::string web_dir;  // the built web UI (index.html, app.js) served at /ui/; empty = no UI
  // Called once the server listens (with the bound port); default prints a line on stdout.
  std::function<void(const std::string& url)> on_listening;
};

// Loads the models, opens the datastore and serves until SIGINT or SIGTERM.
// Throws InputError for bad options (no datastore, unreadable model, port in use).
void run_server(const ServerOptions& options);

}  // namespace medicosam::server
