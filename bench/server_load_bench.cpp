// Load benchmark of `medicosam serve` (printed, not asserted): N concurrent
// clients, each with its own native session on its own image, K clicks each
// on cached embeddings. Prints p50 / p99 click latency, errors, and the
// server's peak resident memory.
//
//   medicosam_server_load_bench [--clients 8] [--clicks 50] [--think-ms 0] [--cli PATH] [--model CKPT]
//
// --think-ms: pause between a client's clicks (0 = back to back, which only
// measures saturation: on 2 cores 8 clients then queue behind each other;
// 300-1000 ms is how fast a person clicks).
//
// Starts the server itself (free port on 127.0.0.1, temporary datastore of
// copies of the brain MRIs in ../shared/data, named per client).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "../tests/server/server_process.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

static long peak_rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

int main(int argc, char** argv) {
  int clients = 8, clicks = 50, think_ms = 0;
  std::string cli = MEDICOSAM_CLI_PATH, model;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--clients") clients = std::stoi(argv[i + 1]);
    else if (a == "--clicks") clicks = std::stoi(argv[i + 1]);
    else if (a == "--think-ms") think_ms = std::stoi(argv[i + 1]);
    else if (a == "--cli") cli = argv[i + 1];
    else if (a == "--model") model = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const fs::path data = fs::path(MEDICOSAM_SHARED_DIR) / "data/mri_tumor_3d_pyradiomics/nifti";
  const auto tmp = fs::temp_directory_path() / ("medicosam_load_" + std::to_string(::getpid()));
  fs::create_directories(tmp / "ds");
  const char* cases[] = {"brain1_image.nii.gz", "brain2_image.nii.gz", "breast1_image.nii.gz"};
  for (int c = 0; c < clients; ++c)
    fs::copy_file(data / cases[c % 3], tmp / "ds" / ("case" + std::to_string(c) + ".nii.gz"));
  std::vector<std::string> args = {"--datastore", (tmp / "ds").string(), "--threads", "2",
                                   "--max-sessions", std::to_string(clients), "--workers", std::to_string(clients + 2)};
  if (!model.empty()) args.insert(args.end(), {"--model", model});
  medicosam::servertest::ServerProcess server(cli, args, (tmp / "server.log").string());
  std::printf("server on port %d, %d clients x %d clicks, %d ms between clicks, model %s\n", server.port(), clients,
              clicks, think_ms, model.empty() ? "(embedded default)" : model.c_str());

  std::mutex m;
  std::vector<double> latencies, singles;
  std::atomic<int> errors{0};
  auto run_client = [&](int c, int n_clicks, std::vector<double>& out) {
    httplib::Client cl("127.0.0.1", server.port());
    cl.set_read_timeout(600, 0);
    auto r = cl.Post("/api/claim");
    if (!r || r->status != 200) return void(++errors);
    const std::string token = json::parse(r->body)["lease_token"];
    const httplib::Headers h = {{"X-Lease-Token", token}};
    r = cl.Post("/api/set_image", h, json{{"image", "case" + std::to_string(c)}}.dump(), "application/json");
    if (!r || r->status != 200) return void(++errors);
    const auto shape = json::parse(r->body)["shape"];
    const int64_t nx = shape[0], ny = shape[1], k = shape[2].get<int64_t>() / 2;
    // Warm-up: the first click embeds the slice (not counted).
    r = cl.Post("/api/point", h, json{{"voxel", {nx / 2, ny / 2, k}}}.dump(), "application/json");
    if (!r || r->status != 200) return void(++errors);
    for (int i = 0; i < n_clicks; ++i) {
      if (think_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(think_ms));
      const int64_t x = nx / 4 + (i * 7) % (nx / 2), y = ny / 4 + (i * 11) % (ny / 2);
      const auto t0 = Clock::now();
      r = cl.Post("/api/point", h, json{{"voxel", {x, y, k}}, {"positive", i % 3 != 2}}.dump(), "application/json");
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (!r || r->status != 200) {
        ++errors;
        continue;
      }
      std::lock_guard<std::mutex> lock(m);
      out.push_back(ms);
      if (i % 10 == 9) cl.Post("/api/reset", h, "{}", "application/json");  // keep the prompt count realistic
    }
    cl.Post("/api/release", h, "{}", "application/json");
  };
  auto pct = [](std::vector<double> v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
  };
  // One client alone first: the reference median.
  run_client(0, clicks, singles);
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int c = 0; c < clients; ++c) threads.emplace_back([&, c] { run_client(c, clicks, latencies); });
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double single_p50 = pct(singles, 0.5);
  std::printf("single client: p50 %.1f ms, p99 %.1f ms (%zu clicks)\n", single_p50, pct(singles, 0.99), singles.size());
  std::printf("%d clients: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %zu clicks in %.1f s (%.1f clicks/s), errors %d\n",
              clients, pct(latencies, 0.5), pct(latencies, 0.99), pct(latencies, 1.0), latencies.size(), wall,
              latencies.size() / wall, errors.load());
  std::printf("p99 / single-client median: %.2f (target < 4)\n", pct(latencies, 0.99) / std::max(1e-9, single_p50));
  std::printf("server peak RSS: %.0f MB\n", peak_rss_kb(server.pid()) / 1024.0);
  server.stop();
  fs::remove_all(tmp);
  return errors.load() == 0 ? 0 : 1;
}
