#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "medicosam/core/error.hpp"
#include "medicosam/report/line_plot.hpp"

using namespace medicosam;
using namespace medicosam::report;

namespace {
// Number of pixels of exactly this RGB colour.
int count_color(const std::vector<uint8_t>& rgb, std::array<uint8_t, 3> c) {
  int n = 0;
  for (size_t i = 0; i + 2 < rgb.size(); i += 3)
    n += rgb[i] == c[0] && rgb[i + 1] == c[1] && rgb[i + 2] == c[2];
  return n;
}
}  // namespace

TEST(LinePlot, NiceTicksAreRoundAndCoverTheRange) {
  EXPECT_EQ(nice_ticks(0, 1, 6), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  EXPECT_EQ(nice_ticks(0, 7, 8), (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}));
  const auto t = nice_ticks(0.13, 0.87, 5);
  EXPECT_LE(t.front(), 0.13);
  EXPECT_GE(t.back(), 0.87);
  EXPECT_NEAR(t[1] - t[0], 0.2, 1e-12);
  EXPECT_EQ(nice_ticks(0, 0.7, 4), (std::vector<double>{0, 0.25, 0.5, 0.75}));
  const auto big = nice_ticks(1234, 98765, 6);
  EXPECT_NEAR(big[1] - big[0], 20000, 1e-6);
  const auto flat = nice_ticks(3, 3);  // a constant series still gets an axis
  EXPECT_LT(flat.front(), 3);
  EXPECT_GT(flat.back(), 3);
  EXPECT_TRUE(nice_ticks(NAN, 1).empty());
}

TEST(LinePlot, TickLabelsHaveTheDecimalsTheStepNeeds) {
  EXPECT_EQ(format_tick(0.25, 0.25), "0.25");
  EXPECT_EQ(format_tick(0.5, 0.25), "0.50");
  EXPECT_EQ(format_tick(3, 1), "3");
  EXPECT_EQ(format_tick(0.4, 0.2), "0.4");
  EXPECT_EQ(format_tick(-1e-17, 0.2), "0.0");
  EXPECT_EQ(format_tick(2e-5, 1e-5), "2e-05");
}

TEST(LinePlot, DrawsEverySeriesInItsColour) {
  LinePlot plot("Dice per iteration", "iteration", "Dice");
  std::vector<double> xs{0, 1, 2, 3, 4, 5, 6, 7};
  plot.add_series("model (box)", xs, {0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85});
  auto& s = plot.add_series("grabcut (box)", xs, {0.3, 0.35, 0.4, NAN, 0.5, 0.52, 0.55, 0.56});
  s.dashed = true;
  plot.set_y_range(0, 1);
  int w = 0, h = 0;
  const auto rgb = plot.render_rgb(&w, &h);
  EXPECT_EQ(w, 800);
  EXPECT_EQ(h, 500);
  ASSERT_EQ(rgb.size(), size_t(w) * h * 3);
  EXPECT_NE(palette_color(0), palette_color(1));
  EXPECT_GT(count_color(rgb, palette_color(0)), 200);  // line, markers and legend sample
  EXPECT_GT(count_color(rgb, palette_color(1)), 100);
  EXPECT_EQ(count_color(rgb, palette_color(2)), 0);

  plot.set_size(400, 300);
  const auto png = plot.encode_png();
  const cv::Mat decoded = cv::imdecode(png, cv::IMREAD_COLOR);
  EXPECT_EQ(decoded.cols, 400);
  EXPECT_EQ(decoded.rows, 300);
}

TEST(LinePlot, SavesAPngFile) {
  const auto path = std::filesystem::temp_directory_path() / "medicosam_line_plot_test.png";
  LinePlot plot("training loss", "iteration", "loss");
  plot.set_log_y(true);
  std::vector<double> xs, ys;
  for (int i = 0; i < 500; ++i) {
    xs.push_back(i);
    ys.push_back(2.0 * std::exp(-i / 80.0) + 0.01);
  }
  plot.add_series("train", xs, ys);
  plot.add_series("validation", {0, 100, 200, 300, 400}, {1.5, 0.6, 0.3, 0.2, 0.15});
  plot.save_png(path.string());
  const cv::Mat img = cv::imread(path.string());
  EXPECT_EQ(img.cols, 800);
  EXPECT_EQ(img.rows, 500);
  std::filesystem::remove(path);
}

TEST(LinePlot, EmptyPlotStillRenders) {
  LinePlot plot("nothing yet", "x", "y");
  int w = 0, h = 0;
  EXPECT_EQ(plot.render_rgb(&w, &h).size(), size_t(800) * 500 * 3);
}

TEST(LinePlot, BadInputIsRejected) {
  LinePlot plot("t", "x", "y");
  EXPECT_THROW(plot.add_series("s", {1, 2}, {1}), InputError);
  EXPECT_THROW(plot.set_y_range(1, 1), InputError);
  EXPECT_THROW(plot.set_size(10, 10), InputError);
  plot.set_log_y(true);
  plot.set_y_range(-1, 1);
  EXPECT_THROW(plot.encode_png(), InputError);
}
