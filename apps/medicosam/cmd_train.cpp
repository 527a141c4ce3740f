// `medicosam train`: fine-tuning with iterative prompting (the MedicoSAM
// recipe), on one process or several (data parallel, c10d), and
// `medicosam export`: a checkpoint as plain .pth (segment_anything-loadable) or
// safetensors, optionally in fp16.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/segment/amg.hpp"
#include "medicosam/train/trainer.hpp"

extern char** environ;

namespace medicosam::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::string out;
  std::string init;
  int64_t iterations = 0;
  int64_t stop_after = 0;
  int64_t seed = -1;
  int threads = 0;
  std::string device;
  bool no_resume = false;
  int nproc = 1;
  int rank = -1;
  int world_size = 0;
  std::string master_addr;
  int master_port = 0;
  bool json = false;
};

// Starts `n` copies of this program, one per rank, and waits for all of them.
int spawn_ranks(int n, int argc, char** argv, int port) {
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> args(argv, argv + argc);
    // Drop --nproc N; add the rank options.
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--nproc" && i + 1 < args.size()) {
        args.erase(args.begin() + i, args.begin() + i + 2);
        break;
      }
      if (args[i].rfind("--nproc=", 0) == 0) {
        args.erase(args.begin() + i);
        break;
      }
    }
    for (const auto& extra :
         {std::string("--rank"), std::to_string(r), std::string("--world-size"), std::to_string(n),
          std::string("--master-port"), std::to_string(port)}) {
      args.push_back(extra);
    }
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargs.data(), environ) != 0) {
      throw Error("cannot start training process for rank " + std::to_string(r));
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  if (failed)
    throw Error(std::to_string(failed) + " of " + std::to_string(n) + " training processes failed");
  return 0;
}

void run_train(const TrainArgs& a, int argc, char** argv) {
  auto cfg = train::TrainConfig::from_file(a.config);
  if (!a.out.empty()) cfg.out_dir = a.out;
  if (!a.init.empty()) cfg.init = a.init;
  if (a.iterations > 0) cfg.iterations = a.iterations;
  if (a.stop_after > 0) cfg.stop_after = a.stop_after;
  if (a.seed >= 0) cfg.seed = static_cast<uint64_t>(a.seed);
  if (a.threads > 0) cfg.threads = a.threads;
  if (!a.device.empty()) cfg.device = a.device;
  if (a.no_resume) cfg.resume = false;
  if (!a.master_addr.empty()) cfg.master_addr = a.master_addr;
  if (a.master_port > 0) cfg.master_port = a.master_port;
  if (a.nproc > 1) {
    if (a.rank >= 0)
      throw InputError("--nproc starts the ranks itself; do not combine it with --rank");
    spawn_ranks(a.nproc, argc, argv, cfg.master_port);
    return;
  }
  if (a.rank >= 0) {
    if (a.world_size < 1) throw InputError("--rank needs --world-size");
    cfg.rank = a.rank;
    cfg.world_size = a.world_size;
  }
  const auto s = train::run_training(cfg);
  if (cfg.rank != 0) return;
  if (a.json) {
    std::cout << nlohmann::json{{"iterations", s.iterations_done},
                                {"best_metric", s.best_metric},
                                {"best_iteration", s.best_iteration},
                                {"seconds", s.seconds},
                                {"data_wait_seconds", s.data_wait_seconds},
                                {"stopped_early", s.stopped_early},
                                {"best", s.best_checkpoint},
                                {"latest", s.latest_checkpoint}}
                     .dump()
              << std::endl;
  } else {
    std::fprintf(stderr,
                 "%s after %lld steps in %.0f s (waited %.1f s for data); best validation metric "
                 "%.4f at step %lld -> %s\n",
                 s.stopped_early ? "stopped" : "finished",
                 static_cast<long long>(s.iterations_done), s.seconds, s.data_wait_seconds,
                 s.best_metric, static_cast<long long>(s.best_iteration),
                 s.best_checkpoint.c_str());
  }
}

struct ExportArgs {
  std::string checkpoint;
  std::string out;
  std::string format;
  std::string dtype = "float32";
  std::optional<double> amg_pred_iou, amg_stability;  // medicosam.amg metadata (else carried over)
};

void run_export(const ExportArgs& a) {
  auto loaded = model::load_sam(a.checkpoint, torch::kCPU);
  model::SaveOptions opt;
  opt.dtype = a.dtype == "float16"    ? torch::kFloat16
              : a.dtype == "bfloat16" ? torch::kBFloat16
                                      : torch::kFloat32;
  if (!a.format.empty())
    opt.format = a.format == "safetensors" ? model::WeightsFormat::kSafetensors : model::WeightsFormat::kPth;
  opt.metadata["medicosam.source"] = a.checkpoint;
  // AMG defaults: the options, else those the input carries (the same model).
  if (a.amg_pred_iou.has_value() != a.amg_stability.has_value())
    throw InputError("give both --amg-pred-iou-thresh and --amg-stability-score-thresh");
  if (a.amg_pred_iou) {
    opt.metadata[segment::kAmgMetadataKey] = segment::amg_metadata_value(*a.amg_pred_iou, *a.amg_stability);
  } else if (const auto d = segment::amg_defaults_from_metadata(loaded.metadata, a.checkpoint); d.from_checkpoint) {
    opt.metadata[segment::kAmgMetadataKey] = d.record.dump();
  }
  if (opt.metadata.count(segment::kAmgMetadataKey) &&
      opt.format.value_or(model::weights_format_for(a.out)) != model::WeightsFormat::kSafetensors)
    std::fprintf(stderr, "note: .pth has no metadata; the AMG defaults are not written\n");
  model::save_sam(a.out, *loaded.sam, opt);
  const bool st = opt.format.value_or(model::weights_format_for(a.out)) == model::WeightsFormat::kSafetensors;
  std::fprintf(stderr, "wrote %s (%s, %s, %lld parameters)\n", a.out.c_str(), st ? "safetensors" : "pth",
               a.dtype.c_str(), static_cast<long long>(loaded.num_parameters));
}

}  // namespace

void register_train(CLI::App& app, int argc, char** argv) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand(
      "train", "Fine-tune or train a SAM with iterative prompting (MedicoSAM recipe)");
  cmd->add_option("--config,-c", args->config, "Training config (JSON; see docs/training.md)")
      ->required();
  cmd->add_option("--out,-o", args->out, "Output folder (overrides out_dir)");
  cmd->add_option("--init", args->init, "Start from this checkpoint (overrides init)");
  cmd->add_option("--iterations", args->iterations, "Optimizer steps (overrides iterations)");
  cmd->add_option("--stop-after", args->stop_after,
                  "Stop after this many steps of this run (resume later)");
  cmd->add_option("--seed", args->seed, "Random seed (overrides seed)");
  cmd->add_option("--threads", args->threads, "CPU threads per process");
  cmd->add_option("--device", args->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--no-resume", args->no_resume, "Start over even if out/latest.pt exists");
  cmd->add_option("--nproc", args->nproc,
                  "Data-parallel processes on this machine (c10d Gloo / NCCL)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--rank", args->rank,
                  "This process's rank (multi-machine: one process per rank)");
  cmd->add_option("--world-size", args->world_size, "Number of processes");
  cmd->add_option("--master-addr", args->master_addr, "Rendezvous host (rank 0's address)");
  cmd->add_option("--master-port", args->master_port, "Rendezvous TCP port");
  cmd->add_flag("--json", args->json, "Print a JSON summary line at the end");
  cmd->callback([args, argc, argv]() { run_train(*args, argc, argv); });

  auto eargs = std::make_shared<ExportArgs>();
  auto* exp = app.add_subcommand("export", "Write a checkpoint as plain SAM .pth or .safetensors");
  exp->add_option("checkpoint", eargs->checkpoint, "Any checkpoint medicosam reads")->required();
  exp->add_option("--out,-o", eargs->out, "Output file")->required();
  exp->add_option("--format", eargs->format, "pth or safetensors (default: from the extension)")
      ->check(CLI::IsMember({"pth", "safetensors"}));
  exp->add_option("--dtype", eargs->dtype, "float32 (default), float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  exp->add_option("--amg-pred-iou-thresh", eargs->amg_pred_iou,
                  "Store this automatic-mask predicted-IoU threshold in the metadata (medicosam.amg; default: "
                  "the input's)")
      ->check(CLI::Range(0.0, 1.0));
  exp->add_option("--amg-stability-score-thresh", eargs->amg_stability,
                  "Store this automatic-mask stability threshold in the metadata (with --amg-pred-iou-thresh)")
      ->check(CLI::Range(0.0, 1.0));
  exp->callback([eargs]() { run_export(*eargs); });
}

}  // namespace medicosam::cli
