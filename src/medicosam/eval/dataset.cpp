#include "medicosam/eval/dataset.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"

namespace medicosam::eval {
namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".tif" || ext == ".tiff" ||
         ext == ".bmp";
}

// stem -> path of the image files directly in `dir` (sorted by stem).
std::map<std::string, std::string> list_images(const fs::path& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || !is_image_file(e.path())) continue;
    out.emplace(e.path().stem().string(), e.path().string());
  }
  return out;
}

// "<stem>_<class>_<k>" -> "<class>" given the image stem; empty if it does not fit.
std::string class_of_instance_file(const std::string& mask_stem, const std::string& image_stem) {
  if (mask_stem.size() <= image_stem.size() + 1 ||
      mask_stem.compare(0, image_stem.size(), image_stem) != 0 ||
      mask_stem[image_stem.size()] != '_') {
    return "";
  }
  std::string rest = mask_stem.substr(image_stem.size() + 1);
  const auto us = rest.rfind('_');
  if (us != std::string::npos && us + 1 < rest.size() &&
      std::all_of(rest.begin() + us + 1, rest.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    rest = rest.substr(0, us);
  }
  return rest;
}

io::LabelMap read_truth(const std::string& path, const io::RGB8Image& image) {
  io::LabelMap lm = io::read_label_map(path);
  if (lm.size()[2] != 1) throw FormatError("'" + path + "': a 2D mask is expected, got a volume");
  if (lm.size()[0] != image.width || lm.size()[1] != image.height) {
    throw FormatError("'" + path + "': mask is " + std::to_string(lm.size()[0]) + "x" +
                      std::to_string(lm.size()[1]) + " but its image is " +
                      std::to_string(image.width) + "x" + std::to_string(image.height));
  }
  return lm;
}

segment::BinaryMask mask_where(const io::LabelMap& lm, uint16_t value, bool any_positive) {
  segment::BinaryMask m(int(lm.size()[1]), int(lm.size()[0]));
  const uint16_t* d = lm.data();
  for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = any_positive ? d[i] > 0 : d[i] == value;
  return m;
}

segment::BinaryMask resize_mask(const segment::BinaryMask& m, int size) {
  cv::Mat src(m.height, m.width, CV_8UC1, const_cast<uint8_t*>(m.data.data())), dst;
  cv::resize(src, dst, cv::Size(size, size), 0, 0, cv::INTER_NEAREST);
  return segment::BinaryMask(size, size, std::vector<uint8_t>(dst.data, dst.data + dst.total()));
}

io::RGB8Image resize_rgb(const io::RGB8Image& img, int size) {
  cv::Mat src(img.height, img.width, CV_8UC3, const_cast<uint8_t*>(img.data.data())), dst;
  cv::resize(src, dst, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  io::RGB8Image out;
  out.height = out.width = size;
  out.data.assign(dst.data, dst.data + dst.total() * 3);
  return out;
}

}  // namespace

Sample2D make_sample(std::string name, io::RGB8Image rgb, std::vector<ClassMask> classes,
                     int resize_to) {
  for (const auto& c : classes) {
    if (c.mask.height != rgb.height || c.mask.width != rgb.width) {
      throw InputError("sample '" + name + "': class '" + c.name + "' mask is " +
                       std::to_string(c.mask.width) + "x" + std::to_string(c.mask.height) +
                       ", image is " + std::to_string(rgb.width) + "x" +
                       std::to_string(rgb.height));
    }
  }
  Sample2D s;
  s.name = std::move(name);
  if (resize_to > 0 && (rgb.height != resize_to || rgb.width != resize_to)) {
    s.rgb = resize_rgb(rgb, resize_to);
    for (auto& c : classes) c.mask = resize_mask(c.mask, resize_to);
  } else {
    s.rgb = std::move(rgb);
  }
  for (auto& c : classes)
    if (!c.mask.empty()) s.classes.push_back(std::move(c));
  std::sort(s.classes.begin(), s.classes.end(),
            [](const ClassMask& a, const ClassMask& b) { return a.name < b.name; });
  return s;
}

Dataset2D Dataset2D::from_entries(std::string name, std::vector<ImageEntry> entries,
                                  const Dataset2DOptions& options) {
  Dataset2D d;
  d.name_ = std::move(name);
  d.options_ = options;
  if (options.limit > 0 && int64_t(entries.size()) > options.limit)
    entries.resize(size_t(options.limit));
  d.split_description_ = std::to_string(entries.size()) + " images";
  d.entries_ = std::move(entries);
  return d;
}

Dataset2D Dataset2D::open(const std::string& dir, const Dataset2DOptions& options) {
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::is_directory(root, ec)) throw InputError("--data '" + dir + "': not a folder");
  const auto images = list_images(root / "images");
  if (images.empty()) {
    throw InputError("--data '" + dir +
                     "': no images/ folder with PNG/JPEG/TIFF/BMP images (expected images/, " +
                     "masks/ or instances/, optional split.json)");
  }
  const auto masks = list_images(root / "masks");
  const auto instances = list_images(root / "instances");

  // The split: names from split.json, or every image.
  std::vector<std::string> names;
  std::string split_desc;
  const fs::path split_path = root / "split.json";
  if (options.split != "all" && fs::exists(split_path, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(split_path.string()));
    } catch (const nlohmann::json::exception& e) {
      throw FormatError("'" + split_path.string() + "': not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains(options.split) || !j[options.split].is_array()) {
      std::string keys;
      if (j.is_object())
        for (auto it = j.begin(); it != j.end(); ++it)
          keys += (keys.empty() ? "" : ", ") + it.key();
      throw InputError("--split '" + options.split + "': '" + split_path.string() +
                       "' has no such list (has: " + keys + "; or use --split all)");
    }
    for (const auto& n : j[options.split]) {
      if (!n.is_string())
        throw FormatError("'" + split_path.string() + "': split entries must be strings");
      const std::string name = n.get<std::string>();
      if (!images.count(name)) {
        throw InputError("'" + split_path.string() + "' lists '" + name + "' but " +
                         (root / "images").string() + " has no such image");
      }
      names.push_back(name);
    }
    split_desc = options.split + " (";
  } else {
    for (const auto& [stem, path] : images) names.push_back(stem);
    split_desc = options.split == "all" ? "all (" : "all (no split.json; ";
  }

  Dataset2D d;
  d.dir_ = dir;
  d.name_ = fs::absolute(root).lexically_normal().filename().string();
  if (d.name_.empty())
    d.name_ = fs::absolute(root).lexically_normal().parent_path().filename().string();
  d.options_ = options;

  // Per-instance files: map each mask file to the longest image stem it extends.
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> instance_files;
  for (const auto& [mstem, mpath] : masks) {
    if (images.count(mstem)) continue;
    std::string best_stem, best_class;
    for (auto it = images.begin(); it != images.end(); ++it) {
      const std::string c = class_of_instance_file(mstem, it->first);
      if (!c.empty() && it->first.size() > best_stem.size()) {
        best_stem = it->first;
        best_class = c;
      }
    }
    if (!best_stem.empty()) instance_files[best_stem].emplace_back(best_class, mpath);
  }

  for (const auto& name : names) {
    ImageEntry e;
    e.name = name;
    e.image_path = images.at(name);
    if (auto in = instances.find(name); options.instance_classes && in != instances.end()) {
      e.truth = ImageEntry::Truth::kClassMap;
      e.truth_path = in->second;
    } else if (auto m = masks.find(name); m != masks.end()) {
      e.truth = ImageEntry::Truth::kLabelMap;
      e.truth_path = m->second;
    } else if (auto in = instances.find(name); in != instances.end()) {
      e.truth = ImageEntry::Truth::kInstanceMap;
      e.truth_path = in->second;
    } else if (auto f = instance_files.find(name); f != instance_files.end()) {
      e.truth = ImageEntry::Truth::kInstanceFiles;
      e.class_files = f->second;
    } else {
      d.skipped_.push_back(name);
      continue;
    }
    d.entries_.push_back(std::move(e));
  }
  const size_t available = d.entries_.size();
  if (options.limit > 0 && int64_t(d.entries_.size()) > options.limit)
    d.entries_.resize(size_t(options.limit));
  d.split_description_ = split_desc + std::to_string(d.entries_.size()) + " of " +
                         std::to_string(available) + " images with ground truth";
  if (!d.skipped_.empty())
    d.split_description_ += "; " + std::to_string(d.skipped_.size()) + " without";
  d.split_description_ += ")";
  return d;
}

Sample2D Dataset2D::load(size_t i) const {
  const ImageEntry& e = entries_.at(i);
  const io::Volume img = io::read_image(e.image_path);
  if (!img.is_2d())
    throw FormatError("'" + e.image_path + "': a 2D image is expected, got a volume");
  io::RGB8Image rgb = io::to_rgb8(img, options_.normalization);

  std::vector<ClassMask> classes;
  switch (e.truth) {
    case ImageEntry::Truth::kLabelMap:
    case ImageEntry::Truth::kClassMap: {
      const io::LabelMap lm = read_truth(e.truth_path, rgb);
      const auto present = lm.labels_present();
      const bool binary = e.truth == ImageEntry::Truth::kLabelMap && present.size() == 1 &&
                          (present[0] == 255 || present[0] == 1);
      if (binary) {
        classes.push_back({"foreground", mask_where(lm, 0, true)});
      } else {
        for (uint16_t v : present)
          classes.push_back({"class_" + std::to_string(v), mask_where(lm, v, false)});
      }
      break;
    }
    case ImageEntry::Truth::kInstanceMap: {
      const io::LabelMap lm = read_truth(e.truth_path, rgb);
      classes.push_back({"foreground", mask_where(lm, 0, true)});
      break;
    }
    case ImageEntry::Truth::kInstanceFiles: {
      std::map<std::string, segment::BinaryMask> by_class;
      for (const auto& [cls, path] : e.class_files) {
        const io::LabelMap lm = read_truth(path, rgb);
        auto& m = by_class[cls];
        if (m.data.empty()) m = segment::BinaryMask(rgb.height, rgb.width);
        const uint16_t* d = lm.data();
        for (size_t k = 0; k < m.data.size(); ++k) m.data[k] |= d[k] > 0;
      }
      for (auto& [cls, m] : by_class) classes.push_back({cls, std::move(m)});
      break;
    }
  }
  Sample2D s = make_sample(e.name, std::move(rgb), std::move(classes), options_.resize_to);
  const auto& sp = img.geometry().spacing;
  if (options_.resize_to <= 0)
    s.spacing = {sp[0], sp[1]};
  else
    s.spacing = {sp[0] * img.width() / double(options_.resize_to),
                 sp[1] * img.height() / double(options_.resize_to)};
  return s;
}

}  // namespace medicosam::eval
