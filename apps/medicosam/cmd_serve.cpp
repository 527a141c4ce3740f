// `medicosam serve`: the annotation server (MONAI Label protocol for 3D
// Slicer / OHIF / MONAI's client, and a native session API). Parses options
// and hands them to server::run_server.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli_common.hpp"
#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/server/requests.hpp"
#include "medicosam/server/server.hpp"

namespace medicosam::cli {
namespace {

struct ServeArgs {
  server::ServerOptions o;
  std::vector<std::string> models;
  std::string memory_budget = "2G", max_upload = "2G";
  std::string web_dir;
  std::string studies_password_file, studies_token_file;
};

// A password or token from a file (first line, trailing whitespace dropped):
// secrets never go on the command line, where `ps` shows them.
std::string read_secret(const std::string& path, const std::string& option) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError(option + " '" + path + "': cannot read the file");
  std::string s;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && s.size() < 65536) s.append(buf, n);
  std::fclose(f);
  const auto nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  if (s.empty()) throw InputError(option + " '" + path + "': the file is empty");
  return s;
}

void run_serve(ServeArgs& a) {
  if (a.o.datastore.empty() == a.o.studies.url.empty())
    throw InputError("serve: give either --datastore DIR (a folder of images) or --studies URL (a DICOMweb PACS)");
  if (!a.studies_password_file.empty()) a.o.studies.password = read_secret(a.studies_password_file, "--studies-password-file");
  if (!a.studies_token_file.empty()) a.o.studies.token = read_secret(a.studies_token_file, "--studies-token-file");
  if (a.o.studies.user.empty() != a.studies_password_file.empty())
    throw InputError("serve: --studies-user and --studies-password-file go together");
  for (const auto& m : a.models) {
    const auto eq = m.find('=');
    if (eq == std::string::npos) {
      std::string stem = std::filesystem::path(m).stem().string();
      for (auto& c : stem)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
      a.o.models.push_back({stem, m});
    } else {
      a.o.models.push_back({m.substr(0, eq), m.substr(eq + 1)});
    }
  }
  if (a.o.models.empty()) a.o.models.push_back({"medicosam", default_model_path()});
  try {
    a.o.memory_budget = server::parse_size(a.memory_budget, "--memory-budget");
    a.o.max_upload = server::parse_size(a.max_upload, "--max-upload");
    for (const auto& [name, _] : a.o.models) server::check_id(name, "--model name");
  } catch (const server::HttpError& e) {
    throw InputError(e.what());
  }
  if (a.o.api_key.empty()) {
    if (const char* k = std::getenv("MEDICOSAM_API_KEY"); k && *k) a.o.api_key = k;
  }
  if (a.web_dir.empty()) {
    a.o.web_dir = default_web_dir();
    if (a.o.web_dir.empty()) std::fprintf(stderr, "serve: the web UI is not built (build the 'web' target); serving the APIs only\n");
  } else if (a.web_dir != "none") {
    a.o.web_dir = a.web_dir;
  }
  server::run_server(a.o);
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve", "Annotation server: MONAI Label protocol (3D Slicer, OHIF) and a native session API");
  auto* ds = cmd->add_option("--datastore,-d", a->o.datastore,
                             "Folder of images; labels are kept in DIR/labels (or --studies)");
  auto* studies = cmd->add_option("--studies", a->o.studies.url,
                                  "DICOMweb root of a PACS, e.g. http://127.0.0.1:8042/dicom-web (instead of --datastore)");
  ds->excludes(studies);
  studies->excludes(ds);
  cmd->add_option("--studies-filter", a->o.studies.filters,
                  "QIDO-RS series query, e.g. 'Modality=CT&StudyDate=20240101-' (repeatable, results merged; "
                  "default: Modality=CT and Modality=MR)");
  cmd->add_option("--studies-user", a->o.studies.user, "PACS user (HTTP basic auth; password from --studies-password-file)");
  cmd->add_option("--studies-password-file", a->studies_password_file, "File holding the PACS password")
      ->check(CLI::ExistingFile);
  auto* token = cmd->add_option("--studies-token-file", a->studies_token_file, "File holding a bearer token for the PACS")
                    ->check(CLI::ExistingFile);
  token->excludes("--studies-user");
  cmd->add_option("--studies-cache", a->o.studies.cache_dir,
                  "Where fetched series and label copies are kept (default STATE_DIR/dicomweb/<hash of the URL>)");
  cmd->add_option("--studies-timeout", a->o.studies.timeout_seconds,
                  "Seconds to wait for the PACS to connect or send data (60); then 504")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--host", a->o.host, "Address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port,-p", a->o.port, "Port (default 8000; 0 = any free port, printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--model,-m", a->models,
                  "Checkpoint to serve, as NAME=PATH or PATH (repeatable; default: the embedded model)");
  cmd->add_option("--threads", a->o.threads, "CPU threads for the models (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", a->o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--precision", a->o.precision,
                  "Image encoder: auto (bf16 where the CPU computes it natively, else fp32), fp32, bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--api-key", a->o.api_key,
                  "Require 'Authorization: Bearer KEY' on every request (or set MEDICOSAM_API_KEY)");
  cmd->add_option("--max-sessions", a->o.max_sessions, "Native sessions at once (8); more get 503")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--idle-timeout", a->o.idle_timeout, "Seconds before an unused session expires (600)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--memory-budget", a->memory_budget, "Embeddings kept in RAM, e.g. 512M, 2G (2G); the rest on disk");
  cmd->add_option("--max-upload", a->max_upload, "Largest request body accepted (2G)");
  cmd->add_option("--workers", a->o.workers, "HTTP worker threads (8)")->check(CLI::Range(1, 256));
  cmd->add_option("--request-timeout", a->o.request_timeout, "Seconds to read or write one request (120)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--state-dir", a->o.state_dir,
                  "Sessions, caches and uploads (default DATASTORE/.medicosam; with --studies ~/.cache/medicosam/serve)");
  cmd->add_option("--web-dir", a->web_dir,
                  "The web annotation UI served at /ui/ (default: the one built or installed with medicosam; none = off)");
  cmd->callback([a]() { run_serve(*a); });
}

}  // namespace medicosam::cli
