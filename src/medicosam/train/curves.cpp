#include "medicosam/train/curves.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "medicosam/report/line_plot.hpp"

namespace medicosam::train {
namespace fs = std::filesystem;

namespace {

// Columns of a numeric CSV with a header row.
std::vector<std::vector<double>> read_columns(const std::string& path,
                                              std::vector<std::string>& header) {
  std::ifstream in(path);
  std::vector<std::vector<double>> cols;
  std::string line;
  if (!std::getline(in, line)) return cols;
  std::stringstream hs(line);
  for (std::string h; std::getline(hs, h, ',');) header.push_back(h);
  cols.resize(header.size());
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    std::vector<double> row;
    for (std::string v; std::getline(ls, v, ',');) row.push_back(std::strtod(v.c_str(), nullptr));
    if (row.size() != header.size()) continue;
    for (size_t i = 0; i < row.size(); ++i) cols[i].push_back(row[i]);
  }
  return cols;
}

size_t column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  return header.size();
}

}  // namespace

void write_training_curves(const std::string& out_dir) {
  {
    std::vector<std::string> h;
    const auto c = read_columns((fs::path(out_dir) / "train_log.csv").string(), h);
    const size_t it = column(h, "iteration"), loss = column(h, "loss");
    if (it < c.size() && loss < c.size() && !c[it].empty()) {
      std::vector<double> smooth(c[loss].size());
      double s = c[loss][0];
      for (size_t i = 0; i < smooth.size(); ++i) smooth[i] = s = 0.98 * s + 0.02 * c[loss][i];
      report::LinePlot plot("Training loss", "step", "loss");
      plot.add_series("per step", c[it], c[loss]);
      plot.add_series("smoothed", c[it], smooth);
      plot.set_log_y(true);
      plot.save_png((fs::path(out_dir) / "loss.png").string());
    }
  }
  {
    std::vector<std::string> h;
    const auto c = read_columns((fs::path(out_dir) / "validation.csv").string(), h);
    const size_t it = column(h, "iteration");
    if (it < c.size() && !c[it].empty()) {
      report::LinePlot plot("Validation Dice", "step", "Dice");
      plot.set_y_range(0, 1);
      const std::pair<const char*, const char*> modes[] = {{"dice_point", "point"},
                                                           {"dice_box", "box"},
                                                           {"dice_points", "points"},
                                                           {"dice_box_points", "box + points"}};
      for (const auto& [col, name] : modes) {
        const size_t k = column(h, col);
        if (k < c.size()) plot.add_series(name, c[it], c[k]);
      }
      // Semantic runs: Dice per class ("dice_class1", ...) and their mean.
      for (size_t k = 0; k < h.size(); ++k) {
        if (h[k].rfind("dice_class", 0) == 0) plot.add_series("class " + h[k].substr(10), c[it], c[k]);
        if (h[k] == "dice_mean") plot.add_series("semantic mean", c[it], c[k]);
      }
      plot.save_png((fs::path(out_dir) / "validation.png").string());
    }
  }
}

}  // namespace medicosam::train
