#pragma once
// Registration of the `medicosam` subcommands, one file each.
#include <CLI/CLI.hpp>

#include <string>

#include "medicosam/io/volume.hpp"

namespace medicosam::cli {

void register_info(CLI::App& app);
void register_embed(CLI::App& app);
void register_segment(CLI::App& app);
void register_propagate(CLI::App& app);
void register_session(CLI::App& app);
void register_amg(CLI::App& app);
void register_serve(CLI::App& app);
void register_eval(CLI::App& app);
void register_semantic(CLI::App& app);
// `train` re-executes itself per rank with --nproc, so it needs the command line.
void register_train(CLI::App& app, int argc, char** argv);

}  // namespace medicosam::cli
