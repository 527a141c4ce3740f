#include "medicosam/train/augment.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "medicosam/predict/transforms.hpp"

namespace medicosam::train {

AugmentOptions AugmentOptions::none() {
  AugmentOptions o;
  o.flips = o.rotate90 = false;
  o.brightness = o.contrast = o.gamma = 0;
  o.scale_min = o.scale_max = 1;
  return o;
}

AugmentOptions AugmentOptions::from_json(const nlohmann::json& j) {
  AugmentOptions o;
  if (j.is_boolean() && !j.get<bool>()) return none();
  if (!j.is_object()) return o;
  o.flips = j.value("flips", o.flips);
  o.rotate90 = j.value("rotate90", o.rotate90);
  o.brightness = j.value("brightness", o.brightness);
  o.contrast = j.value("contrast", o.contrast);
  o.gamma = j.value("gamma", o.gamma);
  o.scale_min = j.value("scale_min", o.scale_min);
  o.scale_max = j.value("scale_max", o.scale_max);
  return o;
}

nlohmann::json AugmentOptions::to_json() const {
  return {{"flips", flips},        {"rotate90", rotate90}, {"brightness", brightness},
          {"contrast", contrast},  {"gamma", gamma},       {"scale_min", scale_min},
          {"scale_max", scale_max}};
}

TrainSample augment(const TrainSample& s, const AugmentOptions& o, segment::Rng& rng) {
  cv::Mat img(s.height, s.width, CV_8UC3, const_cast<uint8_t*>(s.image.data()));
  cv::Mat lab(s.height, s.width, CV_16UC1, const_cast<uint16_t*>(s.instances.data()));
  img = img.clone();
  lab = lab.clone();
  // The class map (if any) goes through the same geometry as the instances.
  const bool has_classes = !s.classes.empty();
  cv::Mat cls = has_classes
                    ? cv::Mat(s.height, s.width, CV_16UC1, const_cast<uint16_t*>(s.classes.data())).clone()
                    : cv::Mat();

  // Geometry: flips and 90-degree rotations keep every pixel exact.
  if (o.flips && rng.bernoulli(0.5)) {
    cv::flip(img, img, 1);
    cv::flip(lab, lab, 1);
    if (has_classes) cv::flip(cls, cls, 1);
  }
  if (o.flips && rng.bernoulli(0.5)) {
    cv::flip(img, img, 0);
    cv::flip(lab, lab, 0);
    if (has_classes) cv::flip(cls, cls, 0);
  }
  if (o.rotate90) {
    const int k = static_cast<int>(rng.uniform_int(4));
    if (k > 0) {
      const int code = k == 1   ? cv::ROTATE_90_CLOCKWISE
                       : k == 2 ? cv::ROTATE_180
                                : cv::ROTATE_90_COUNTERCLOCKWISE;
      cv::rotate(img, img, code);
      cv::rotate(lab, lab, code);
      if (has_classes) cv::rotate(cls, cls, code);
    }
  }
  // Scale: zoom in by cropping a random region, or out by padding.
  const double scale =
      o.scale_max > o.scale_min ? rng.uniform(o.scale_min, o.scale_max) : o.scale_min;
  if (std::abs(scale - 1.0) > 1e-3) {
    const int h = img.rows, w = img.cols;
    if (scale > 1.0) {
      const int ch = std::max(8, static_cast<int>(h / scale)),
                cw = std::max(8, static_cast<int>(w / scale));
      const int y0 = static_cast<int>(rng.uniform_int(h - ch + 1)),
                x0 = static_cast<int>(rng.uniform_int(w - cw + 1));
      cv::Rect r(x0, y0, cw, ch);
      cv::Mat zi, zl;  // not in place: the crop is a view into img / lab
      cv::resize(img(r), zi, {w, h}, 0, 0, cv::INTER_LINEAR);
      cv::resize(lab(r), zl, {w, h}, 0, 0, cv::INTER_NEAREST_EXACT);
      img = zi;
      lab = zl;
      if (has_classes) {
        cv::Mat zc;
        cv::resize(cls(r), zc, {w, h}, 0, 0, cv::INTER_NEAREST_EXACT);
        cls = zc;
      }
    } else {
      const int nh = std::max(8, static_cast<int>(h * scale)),
                nw = std::max(8, static_cast<int>(w * scale));
      cv::Mat si, sl;
      cv::resize(img, si, {nw, nh}, 0, 0, cv::INTER_AREA);
      cv::resize(lab, sl, {nw, nh}, 0, 0, cv::INTER_NEAREST_EXACT);
      const int y0 = static_cast<int>(rng.uniform_int(h - nh + 1)),
                x0 = static_cast<int>(rng.uniform_int(w - nw + 1));
      cv::Scalar mean = cv::mean(img);
      img = cv::Mat(h, w, CV_8UC3, mean);
      lab = cv::Mat::zeros(h, w, CV_16UC1);
      si.copyTo(img(cv::Rect(x0, y0, nw, nh)));
      sl.copyTo(lab(cv::Rect(x0, y0, nw, nh)));
      if (has_classes) {
        cv::Mat sc;
        cv::resize(cls, sc, {nw, nh}, 0, 0, cv::INTER_NEAREST_EXACT);
        cls = cv::Mat::zeros(h, w, CV_16UC1);
        sc.copyTo(cls(cv::Rect(x0, y0, nw, nh)));
      }
    }
  }
  // Intensity: contrast around the mean, brightness shift, gamma (a lookup table).
  if (o.brightness > 0 || o.contrast > 0 || o.gamma > 0) {
    const double c = 1 + rng.uniform(-o.contrast, o.contrast);
    const double b = rng.uniform(-o.brightness, o.brightness) * 255;
    const double g = 1 + rng.uniform(-o.gamma, o.gamma);
    const double mean = cv::mean(img)[0];
    cv::Mat lut(1, 256, CV_8U);
    for (int v = 0; v < 256; ++v) {
      double x = (v - mean) * c + mean + b;
      x = std::clamp(x, 0.0, 255.0);
      x = 255.0 * std::pow(x / 255.0, g);
      lut.at<uint8_t>(v) = static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 255.0)));
    }
    cv::LUT(img, lut, img);
  }
  TrainSample out;
  out.name = s.name;
  out.height = img.rows;
  out.width = img.cols;
  out.image.assign(img.data, img.data + img.total() * 3);
  const uint16_t* l = lab.ptr<uint16_t>();
  out.instances.assign(l, l + lab.total());
  if (has_classes) {
    const uint16_t* c = cls.ptr<uint16_t>();
    out.classes.assign(c, c + cls.total());
  }
  return out;
}

ModelInput to_model_input(const TrainSample& s, int size) {
  const auto in = predict::preprocess_shape(s.height, s.width, size);
  ModelInput m;
  m.size = size;
  m.height = in.height;
  m.width = in.width;
  m.name = s.name;
  // Same resize as inference (PIL bilinear), so the model trains on what it will see.
  const auto resized =
      predict::resize_bilinear_pil(s.image.data(), s.height, s.width, 3, in.height, in.width);
  m.image.assign(static_cast<size_t>(size) * size * 3, 0);
  for (int y = 0; y < in.height; ++y) {
    std::copy(resized.begin() + static_cast<size_t>(y) * in.width * 3,
              resized.begin() + static_cast<size_t>(y + 1) * in.width * 3,
              m.image.begin() + static_cast<size_t>(y) * size * 3);
  }
  cv::Mat lab(s.height, s.width, CV_16UC1, const_cast<uint16_t*>(s.instances.data())), rl;
  cv::resize(lab, rl, {in.width, in.height}, 0, 0, cv::INTER_NEAREST_EXACT);
  m.instances.assign(static_cast<size_t>(size) * size, 0);
  for (int y = 0; y < in.height; ++y) {
    const uint16_t* row = rl.ptr<uint16_t>(y);
    std::copy(row, row + in.width, m.instances.begin() + static_cast<size_t>(y) * size);
  }
  if (!s.classes.empty()) {
    cv::Mat cls(s.height, s.width, CV_16UC1, const_cast<uint16_t*>(s.classes.data())), rc;
    cv::resize(cls, rc, {in.width, in.height}, 0, 0, cv::INTER_NEAREST_EXACT);
    m.classes.assign(static_cast<size_t>(size) * size, 0);
    for (int y = 0; y < in.height; ++y) {
      const uint16_t* row = rc.ptr<uint16_t>(y);
      std::copy(row, row + in.width, m.classes.begin() + static_cast<size_t>(y) * size);
    }
  }
  return m;
}

}  // namespace medicosam::train
