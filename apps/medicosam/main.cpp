// medicosam: interactive and automatic segmentation of medical images with
// Segment-Anything-family models. One subcommand per user task.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "commands.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/runtime_env.hpp"

int main(int argc, char** argv) {
  medicosam::tune_runtime_environment(argv);
  CLI::App app{"medicosam: segment medical images with SAM / MedicoSAM models, natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "medicosam 0.1.0");
  medicosam::cli::register_info(app);
  medicosam::cli::register_embed(app);
  medicosam::cli::register_segment(app);
  medicosam::cli::register_propagate(app);
  medicosam::cli::register_session(app);
  medicosam::cli::register_amg(app);
  medicosam::cli::register_semantic(app);
  medicosam::cli::register_serve(app);
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
