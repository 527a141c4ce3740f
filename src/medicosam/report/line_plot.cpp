#include "medicosam/report/line_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::report {
namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTickScale = 0.42;
constexpr double kLabelScale = 0.5;
constexpr double kTitleScale = 0.6;
constexpr double kLegendScale = 0.42;

const cv::Scalar kBlack(0, 0, 0), kWhite(255, 255, 255), kGrid(228, 228, 228),
    kFrame(140, 140, 140);

cv::Scalar bgr(const std::array<uint8_t, 3>& rgb) {
  return cv::Scalar(rgb[2], rgb[1], rgb[0]);
}

cv::Size text_size(const std::string& s, double scale, int thickness = 1) {
  int baseline = 0;
  return cv::getTextSize(s, kFont, scale, thickness, &baseline);
}

// Shortens `s` with "..." until it fits `max_width` pixels.
std::string fit_text(std::string s, double scale, int max_width) {
  if (text_size(s, scale).width <= max_width) return s;
  while (s.size() > 4 && text_size(s + "...", scale).width > max_width) s.pop_back();
  return s + "...";
}

void put_text(cv::Mat& img, const std::string& s, cv::Point origin, double scale,
              const cv::Scalar& color, int thickness = 1) {
  cv::putText(img, s, origin, kFont, scale, color, thickness, cv::LINE_AA);
}

// Text rotated 90 degrees counter-clockwise, centred vertically on `center_y`,
// its left edge at `x`.
void put_vertical_text(cv::Mat& img, const std::string& s, int x, int center_y, double scale) {
  int baseline = 0;
  const cv::Size sz = cv::getTextSize(s, kFont, scale, 1, &baseline);
  cv::Mat tile(sz.height + baseline + 4, sz.width + 4, CV_8UC3, kWhite);
  put_text(tile, s, {2, sz.height + 2}, scale, kBlack);
  cv::Mat rotated;
  cv::rotate(tile, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  const int y0 = std::max(0, center_y - rotated.rows / 2);
  const cv::Rect roi(x, y0, std::min(rotated.cols, img.cols - x),
                     std::min(rotated.rows, img.rows - y0));
  if (roi.width <= 0 || roi.height <= 0) return;
  cv::Mat dst = img(roi);
  cv::min(dst, rotated(cv::Rect(0, 0, roi.width, roi.height)), dst);  // dark text over white
}

void dashed_line(cv::Mat& img, cv::Point2d a, cv::Point2d b, const cv::Scalar& color,
                 int thickness) {
  const double len = std::hypot(b.x - a.x, b.y - a.y);
  if (len < 1e-9) return;
  const double on = 9, off = 6;
  for (double t = 0; t < len; t += on + off) {
    const double t1 = std::min(len, t + on);
    const cv::Point2d p = a + (b - a) * (t / len), q = a + (b - a) * (t1 / len);
    cv::line(img, cv::Point(cvRound(p.x), cvRound(p.y)), cv::Point(cvRound(q.x), cvRound(q.y)),
             color, thickness, cv::LINE_AA);
  }
}

std::array<double, 2> padded(double lo, double hi) {
  if (!(lo < hi)) {
    const double d = lo == 0 ? 0.5 : std::abs(lo) * 0.1;
    return {lo - d, hi + d};
  }
  return {lo, hi};
}

// Ticks for a log10 axis given in log units [lo, hi].
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  const int d0 = int(std::floor(lo + 1e-9)), d1 = int(std::ceil(hi - 1e-9));
  if (d1 - d0 >= 2) {
    const int step = std::max(1, (d1 - d0 + 5) / 6);
    for (int d = d0; d <= d1; d += step) ticks.push_back(d);
  } else {
    for (int d = d0; d <= d1; ++d)
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = d + std::log10(m);
        if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push_back(v);
      }
  }
  return ticks;
}

}  // namespace

std::array<uint8_t, 3> palette_color(size_t i) {
  // Okabe-Ito (colour-blind safe), without yellow (weak on white), then extras.
  static const std::array<uint8_t, 3> kPalette[] = {
      {0, 114, 178}, {213, 94, 0}, {0, 158, 115},   {204, 121, 167}, {86, 180, 233},
      {230, 159, 0}, {0, 0, 0},    {127, 127, 127}, {148, 103, 189}, {140, 86, 75}};
  return kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  const auto r = padded(lo, hi);
  lo = r[0];
  hi = r[1];
  const double raw = (hi - lo) / std::max(1, max_ticks - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * mag >= raw * (1 - 1e-9)) {
      step = m * mag;
      break;
    }
  }
  const double first = std::floor(lo / step + 1e-9) * step,
               last = std::ceil(hi / step - 1e-9) * step;
  // Snap to a few decimals below the step, so 3 * 0.2 is 0.6 and not 0.6000000000000001.
  const double snap = std::pow(10.0, std::max(0.0, -std::floor(std::log10(step)) + 2));
  std::vector<double> ticks;
  for (int i = 0;; ++i) {
    double v = first + i * step;
    if (snap < 1e15) v = std::round(v * snap) / snap;
    if (std::abs(v) < step * 1e-9) v = 0.0;  // no "-0"
    ticks.push_back(v);
    if (v >= last - step * 1e-9 || i > 1000) break;
  }
  return ticks;
}

std::string format_tick(double value, double step) {
  char buf[64];
  const double a = std::max(std::abs(value), std::abs(step));
  if (a != 0 && (a >= 1e6 || a < 1e-4)) {
    std::snprintf(buf, sizeof(buf), "%.3g", value);
    return buf;
  }
  int decimals = 0;
  const double s = std::abs(step) > 0 ? std::abs(step) : 1;
  while (decimals < 8) {
    const double scaled = s * std::pow(10.0, decimals);
    if (std::abs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) break;
    ++decimals;
  }
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  std::string out = buf;
  if (out == "-0" || out.rfind("-0.", 0) == 0) {
    bool all_zero = true;
    for (char c : out.substr(1))
      if (c != '0' && c != '.') all_zero = false;
    if (all_zero) out = out.substr(1);
  }
  return out;
}

LinePlot::LinePlot(std::string title, std::string xlabel, std::string ylabel)
    : title_(std::move(title)), xlabel_(std::move(xlabel)), ylabel_(std::move(ylabel)) {}

Series& LinePlot::add_series(const std::string& name, std::vector<double> xs,
                             std::vector<double> ys) {
  if (xs.size() != ys.size()) {
    throw InputError("LinePlot::add_series '" + name + "': " + std::to_string(xs.size()) +
                     " x values but " + std::to_string(ys.size()) + " y values");
  }
  Series s;
  s.name = name;
  s.xs = std::move(xs);
  s.ys = std::move(ys);
  s.color = palette_color(series_.size());
  series_.push_back(std::move(s));
  return series_.back();
}

void LinePlot::set_x_range(double lo, double hi) {
  if (!(lo < hi)) throw InputError("LinePlot::set_x_range: need lo < hi");
  x_range_ = std::array<double, 2>{lo, hi};
}

void LinePlot::set_y_range(double lo, double hi) {
  if (!(lo < hi)) throw InputError("LinePlot::set_y_range: need lo < hi");
  y_range_ = std::array<double, 2>{lo, hi};
}

void LinePlot::set_size(int width, int height) {
  if (width < 200 || height < 150 || width > 8000 || height > 8000) {
    throw InputError("LinePlot::set_size: " + std::to_string(width) + "x" + std::to_string(height) +
                     " (need 200..8000 x 150..8000)");
  }
  width_ = width;
  height_ = height;
}

std::vector<uint8_t> LinePlot::render_rgb(int* out_width, int* out_height) const {
  cv::Mat img(height_, width_, CV_8UC3, kWhite);
  auto ty = [&](double y) {
    return log_y_ ? (y > 0 ? std::log10(y) : std::numeric_limits<double>::quiet_NaN()) : y;
  };
  auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(ty(y)); };

  // Data ranges (y in axis units, i.e. log10 for a log axis).
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto& s : series_)
    for (size_t i = 0; i < s.xs.size(); ++i)
      if (usable(s.xs[i], s.ys[i])) {
        x_lo = std::min(x_lo, s.xs[i]);
        x_hi = std::max(x_hi, s.xs[i]);
        y_lo = std::min(y_lo, ty(s.ys[i]));
        y_hi = std::max(y_hi, ty(s.ys[i]));
      }
  const bool have_data = x_lo <= x_hi;
  if (!have_data) {
    x_lo = 0, x_hi = 1, y_lo = log_y_ ? -1 : 0, y_hi = log_y_ ? 1 : 1;
  }

  std::vector<double> xticks, yticks;
  if (x_range_) {
    x_lo = (*x_range_)[0];
    x_hi = (*x_range_)[1];
    for (double t : nice_ticks(x_lo, x_hi, 9))
      if (t >= x_lo - 1e-9 * (x_hi - x_lo) && t <= x_hi + 1e-9 * (x_hi - x_lo)) xticks.push_back(t);
  } else {
    xticks = nice_ticks(x_lo, x_hi, 8);
    x_lo = xticks.front();
    x_hi = xticks.back();
  }
  if (y_range_) {
    y_lo = ty((*y_range_)[0]);
    y_hi = ty((*y_range_)[1]);
    if (!std::isfinite(y_lo) || !std::isfinite(y_hi)) {
      throw InputError("LinePlot: a log y axis needs a positive y range");
    }
  } else if (!log_y_) {
    const auto t = nice_ticks(y_lo, y_hi);
    y_lo = t.front();
    y_hi = t.back();
  } else {
    const auto r = padded(y_lo, y_hi);
    y_lo = std::floor(r[0] * 10) / 10;
    y_hi = std::ceil(r[1] * 10) / 10;
  }
  if (log_y_) {
    for (double t : log_ticks(y_lo, y_hi))
      if (t >= y_lo - 1e-9 && t <= y_hi + 1e-9) yticks.push_back(t);
  } else {
    for (double t : nice_ticks(y_lo, y_hi))
      if (t >= y_lo - 1e-9 * (y_hi - y_lo) && t <= y_hi + 1e-9 * (y_hi - y_lo)) yticks.push_back(t);
  }
  const double xstep = xticks.size() > 1 ? xticks[1] - xticks[0] : 1.0;
  const double ystep = yticks.size() > 1 ? yticks[1] - yticks[0] : 1.0;
  auto ylabel_of = [&](double t) {
    if (!log_y_) return format_tick(t, ystep);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", std::pow(10.0, t));
    return std::string(buf);
  };

  // Layout.
  int ytick_w = 0;
  for (double t : yticks) ytick_w = std::max(ytick_w, text_size(ylabel_of(t), kTickScale).width);
  const int label_h = text_size("Ag", kLabelScale).height;
  const int tick_h = text_size("0", kTickScale).height;
  const int title_h = text_size("Ag", kTitleScale).height;
  const int left = 12 + label_h + 10 + ytick_w + 8;
  const int right = 24;
  const int top = title_.empty() ? 16 : 14 + title_h + 14;
  const int bottom = 8 + tick_h + 12 + label_h + 12;
  const cv::Rect area(left, top, std::max(10, width_ - left - right),
                      std::max(10, height_ - top - bottom));
  auto px = [&](double x) { return area.x + (x - x_lo) / (x_hi - x_lo) * area.width; };
  auto py = [&](double y) {
    return area.y + area.height - (y - y_lo) / (y_hi - y_lo) * area.height;
  };

  // Grid and ticks.
  for (double t : xticks) {
    const int x = cvRound(px(t));
    cv::line(img, {x, area.y}, {x, area.y + area.height}, kGrid, 1);
    const std::string s = format_tick(t, xstep);
    const cv::Size sz = text_size(s, kTickScale);
    put_text(img, s, {x - sz.width / 2, area.y + area.height + 8 + sz.height}, kTickScale, kBlack);
  }
  for (double t : yticks) {
    const int y = cvRound(py(t));
    cv::line(img, {area.x, y}, {area.x + area.width, y}, kGrid, 1);
    const std::string s = ylabel_of(t);
    const cv::Size sz = text_size(s, kTickScale);
    put_text(img, s, {area.x - 8 - sz.width, y + sz.height / 2}, kTickScale, kBlack);
  }
  cv::rectangle(img, area, kFrame, 1);

  // Titles.
  if (!title_.empty()) {
    const std::string t = fit_text(title_, kTitleScale, width_ - 20);
    const cv::Size sz = text_size(t, kTitleScale);
    put_text(img, t, {(width_ - sz.width) / 2, 14 + sz.height}, kTitleScale, kBlack, 1);
  }
  if (!xlabel_.empty()) {
    const std::string t = fit_text(xlabel_, kLabelScale, area.width);
    const cv::Size sz = text_size(t, kLabelScale);
    put_text(img, t, {area.x + (area.width - sz.width) / 2, height_ - 12}, kLabelScale, kBlack);
  }
  if (!ylabel_.empty()) {
    put_vertical_text(img, fit_text(ylabel_, kLabelScale, area.height), 8, area.y + area.height / 2,
                      kLabelScale);
  }
  if (!have_data) {
    const cv::Size sz = text_size("no data", kLabelScale);
    put_text(img, "no data", {area.x + (area.width - sz.width) / 2, area.y + area.height / 2},
             kLabelScale, kFrame);
  }

  // Series, clipped to the plot area.
  cv::Mat plot = img(area);
  const cv::Point2d origin(area.x, area.y);
  std::vector<cv::Point2d> all_points;
  for (const auto& s : series_) {
    const cv::Scalar color = bgr(s.color);
    bool have_prev = false;
    cv::Point2d prev;
    size_t n_usable = 0;
    for (size_t i = 0; i < s.xs.size(); ++i) n_usable += usable(s.xs[i], s.ys[i]);
    for (size_t i = 0; i < s.xs.size(); ++i) {
      if (!usable(s.xs[i], s.ys[i])) {
        have_prev = false;
        continue;
      }
      const cv::Point2d p(px(s.xs[i]) - origin.x, py(ty(s.ys[i])) - origin.y);
      all_points.push_back(p + origin);
      if (have_prev) {
        if (s.dashed) {
          dashed_line(plot, prev, p, color, 2);
        } else {
          cv::line(plot, cv::Point(cvRound(prev.x), cvRound(prev.y)),
                   cv::Point(cvRound(p.x), cvRound(p.y)), color, 2, cv::LINE_AA);
        }
      }
      if (s.markers && n_usable <= 40)
        cv::circle(plot, cv::Point(cvRound(p.x), cvRound(p.y)), 3, color, -1, cv::LINE_AA);
      prev = p;
      have_prev = true;
    }
  }

  // Legend in the corner of the plot area that covers the fewest data points.
  if (!series_.empty()) {
    const int sample_w = 26, pad = 8;
    const int row_h = text_size("Ag", kLegendScale).height + 8;
    int text_w = 0;
    std::vector<std::string> names;
    for (const auto& s : series_) {
      names.push_back(
          fit_text(s.name.empty() ? "(unnamed)" : s.name, kLegendScale, area.width / 2));
      text_w = std::max(text_w, text_size(names.back(), kLegendScale).width);
    }
    const int lw = pad + sample_w + 6 + text_w + pad;
    const int lh = pad + row_h * int(series_.size()) + pad / 2;
    const int m = 8;
    const cv::Rect corners[] = {
        {area.x + area.width - lw - m, area.y + area.height - lh - m, lw, lh},  // bottom right
        {area.x + area.width - lw - m, area.y + m, lw, lh},                     // top right
        {area.x + m, area.y + area.height - lh - m, lw, lh},                    // bottom left
        {area.x + m, area.y + m, lw, lh}};                                      // top left
    const cv::Rect* best = &corners[0];
    size_t best_count = SIZE_MAX;
    for (const auto& c : corners) {
      size_t count = 0;
      for (const auto& p : all_points) count += c.contains(cv::Point(cvRound(p.x), cvRound(p.y)));
      if (count < best_count) {
        best_count = count;
        best = &c;
      }
    }
    const cv::Rect box = *best & cv::Rect(0, 0, width_, height_);
    cv::Mat roi = img(box);
    cv::Mat white(roi.size(), roi.type(), kWhite);
    cv::addWeighted(roi, 0.15, white, 0.85, 0, roi);
    cv::rectangle(img, box, kFrame, 1);
    for (size_t i = 0; i < series_.size(); ++i) {
      const int y = box.y + pad + int(i) * row_h + row_h / 2;
      const cv::Scalar color = bgr(series_[i].color);
      const cv::Point2d a(box.x + pad, y), b(box.x + pad + sample_w, y);
      if (series_[i].dashed) {
        dashed_line(img, a, b, color, 2);
      } else {
        cv::line(img, a, b, color, 2, cv::LINE_AA);
      }
      const cv::Size sz = text_size(names[i], kLegendScale);
      put_text(img, names[i], {box.x + pad + sample_w + 6, y + sz.height / 2}, kLegendScale,
               kBlack);
    }
  }

  cv::Mat rgb;
  cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
  if (out_width) *out_width = width_;
  if (out_height) *out_height = height_;
  return std::vector<uint8_t>(rgb.data, rgb.data + rgb.total() * 3);
}

std::vector<uint8_t> LinePlot::encode_png() const {
  int w = 0, h = 0;
  auto rgb = render_rgb(&w, &h);
  cv::Mat m(h, w, CV_8UC3, rgb.data()), bgr_img;
  cv::cvtColor(m, bgr_img, cv::COLOR_RGB2BGR);
  std::vector<uint8_t> png;
  if (!cv::imencode(".png", bgr_img, png)) throw IoError("LinePlot: PNG encoding failed");
  return png;
}

void LinePlot::save_png(const std::string& path) const {
  const auto png = encode_png();
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

}  // namespace medicosam::report
