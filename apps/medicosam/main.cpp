// medicosam: interactive and automatic segmentation of medical images with
// Segment-Anything-family models. One subcommand per user task.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "commands.hpp"
#include "medicosam/core/error.hpp"

namespace {

// Training runs a data-loading thread next to the OpenMP compute threads. With
// libgomp's default active waiting, idle compute threads spin and take the
// cores the loader (and other processes) need: measured 14 s -> 3.6 s per
// step on a busy 2-core machine. The policy is read when libgomp loads, so the
// process re-executes itself once with it set (unless the user chose one).
void use_passive_openmp_waits_for_training(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "train" || std::getenv("OMP_WAIT_POLICY")) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
}

}  // namespace

int main(int argc, char** argv) {
  use_passive_openmp_waits_for_training(argc, argv);
  CLI::App app{"medicosam: segment medical images with SAM / MedicoSAM models, natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "medicosam 0.1.0");
  medicosam::cli::register_info(app);
  medicosam::cli::register_embed(app);
  medicosam::cli::register_segment(app);
  medicosam::cli::register_propagate(app);
  medicosam::cli::register_session(app);
  medicosam::cli::register_amg(app);
  medicosam::cli::register_eval(app);
  medicosam::cli::register_train(app, argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const medicosam::Error& e) {
    std::fprintf(stderr, "medicosam: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // Anything else is a bug or an environment problem; still one line, no abort.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));  // torch errors append a backtrace
    std::fprintf(stderr, "medicosam: internal error: %s\n", what.c_str());
    return 2;
  }
  return 0;
}
