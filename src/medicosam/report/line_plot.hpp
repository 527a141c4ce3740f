#pragma once
// PNG line plots for reports: evaluation curves (Dice per correction round,
// one line per model), training curves (loss, validation metrics). Axes with
// "nice" ticks and labels, several named series with a legend, a title.
// Torch-free; OpenCV stays inside the .cpp.
//
//   report::LinePlot plot("kvasir_seg: Dice per iteration", "iteration", "Dice");
//   plot.add_series("medicosam (box start)", xs, ys);
//   plot.set_y_range(0, 1);
//   plot.save_png("dice.png");
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace medicosam::report {

struct Series {
  std::string name;
  std::vector<double> xs;
  std::vector<double> ys;                 // non-finite values leave a gap in the line
  std::array<uint8_t, 3> color{0, 0, 0};  // RGB
  bool dashed = false;
  bool markers = true;  // a dot at every point (only drawn when there are few points)
};

class LinePlot {
 public:
  LinePlot(std::string title, std::string xlabel, std::string ylabel);

  // Adds a series with the next palette colour; returns it for tweaks
  // (colour, dashes). Throws InputError if xs and ys differ in length.
  Series& add_series(const std::string& name, std::vector<double> xs, std::vector<double> ys);
  const std::vector<Series>& series() const { return series_; }

  // Fixed axis ranges (default: the data range, padded to nice ticks).
  void set_x_range(double lo, double hi);
  void set_y_range(double lo, double hi);
  // Logarithmic y axis (loss curves); non-positive values are skipped.
  void set_log_y(bool log_y) { log_y_ = log_y; }
  // Image size in pixels (default 800 x 500).
  void set_size(int width, int height);

  // The plot as RGB pixels (height x width x 3, row-major).
  std::vector<uint8_t> render_rgb(int* width, int* height) const;
  // PNG bytes of the plot.
  std::vector<uint8_t> encode_png() const;
  // Writes the PNG atomically; throws IoError on failure.
  void save_png(const std::string& path) const;

 private:
  std::string title_, xlabel_, ylabel_;
  std::vector<Series> series_;
  std::optional<std::array<double, 2>> x_range_, y_range_;
  bool log_y_ = false;
  int width_ = 800, height_ = 500;
};

// Up to about `max_ticks` round tick values (1, 2, 2.5, 5 x 10^k steps)
// covering [lo, hi]. The first tick is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6);
// Tick label with as many decimals as the tick step needs ("0.25", "100").
std::string format_tick(double value, double step);
// The i-th colour of the plot palette (colour-blind friendly, cycles).
std::array<uint8_t, 3> palette_color(size_t i);

}  // namespace medicosam::report
