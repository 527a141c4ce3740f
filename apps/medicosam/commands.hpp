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
void register_eval(CLI::App& app);

// DICOM SEG output of `segment`: `labels` on the grid of the DICOM series at `source_path`.
void write_dicom_seg_output(const std::string& out, const std::string& source_path, const io::Volume& volume,
                            const io::LabelMap& labels);

}  // namespace medicosam::cli
