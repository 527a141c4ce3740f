#include "cli_common.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"

namespace medicosam::cli {
namespace fs = std::filesystem;

void ModelOptions::add_to(CLI::App& app, bool model_required) {
  auto* opt = app.add_option("--model,-m", model,
                             "Checkpoint: SAM / MedicoSAM / MedSAM .pth, micro_sam export, or .safetensors");
  if (model_required) opt->required();
  app.add_option("--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--device", device, "cpu or cuda (when libtorch has CUDA)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--precision", precision,
                 "auto (default: bf16 where the CPU computes it natively, else fp32), fp32 (the reference "
                 "numerics) or bf16 (image encoder and the decoder's products over image tokens)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
}

predict::SamPredictor ModelOptions::load() const {
  return predict::SamPredictor(model.empty() ? default_model_path() : model, {threads, device, precision});
}

void ImageOptions::add_to(CLI::App& app, bool positional) {
  if (positional) {
    app.add_option("image", path, "Image (PNG/JPEG/TIFF) or volume (NIfTI, NRRD, MHA, DICOM folder)")->required();
  } else {
    app.add_option("--image,-i", path, "Image (PNG/JPEG/TIFF) or volume (NIfTI, NRRD, MHA, DICOM folder)")
        ->required();
  }
  app.add_option("--slice", slice, "Volumes: slice index along --axis (default: the middle slice)");
  app.add_option("--axis", axis, "Volumes: axial, coronal or sagittal (patient orientation)")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  app.add_option("--series", series, "DICOM folder with several series: the SeriesInstanceUID to use");
  app.add_option("--normalize", normalize,
                 "Intensity to 8 bit: minmax (default), percentile[:LO:HI], ct:soft-tissue|lung|bone|brain, "
                 "window:W:L; optional :slice or :volume scope");
}

LoadedImage load_image(const ImageOptions& opts) {
  LoadedImage out;
  io::ReadOptions ro;
  ro.series_uid = opts.series;
  out.volume = std::make_shared<const io::Volume>(io::read_image(opts.path, ro));
  const auto norm = opts.normalize.empty() ? io::Normalization{} : io::parse_normalization(opts.normalize);
  out.slices = std::make_shared<segment::VolumeSlices>(out.volume, io::parse_axis(opts.axis), norm);
  if (!out.is_volume() && opts.slice && *opts.slice != 0) {
    throw InputError("--slice " + std::to_string(*opts.slice) + ": '" + opts.path + "' is a 2D image");
  }
  const int64_t k = opts.slice.value_or(out.slices->count() / 2);
  io::slice_placement(out.volume->geometry(), out.slices->axis(), k);  // InputError naming the range
  out.slice = static_cast<int>(k);
  return out;
}

namespace {

std::vector<double> parse_numbers(const std::string& s, size_t count, const std::string& option,
                                  const std::string& form) {
  std::vector<double> v;
  std::stringstream ss(s);
  for (std::string tok; std::getline(ss, tok, ',');) {
    size_t used = 0;
    double d = 0;
    try {
      d = std::stod(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != tok.size() || !std::isfinite(d)) {
      throw InputError(option + " '" + s + "': expected " + form + " with numbers");
    }
    v.push_back(d);
  }
  if (v.size() != count) throw InputError(option + " '" + s + "': expected " + form);
  return v;
}

}  // namespace

predict::Point parse_point(const std::string& s) {
  const auto v = parse_numbers(s, 3, "--point", "X,Y,LABEL");
  if (v[2] != 0 && v[2] != 1) {
    throw InputError("--point '" + s + "': LABEL must be 1 (object) or 0 (background)");
  }
  return {v[0], v[1], static_cast<int>(v[2])};
}

predict::Box parse_box(const std::string& s) {
  const auto v = parse_numbers(s, 4, "--box", "X0,Y0,X1,Y1");
  return {v[0], v[1], v[2], v[3]};
}

namespace {

// Writes `img` through OpenCV to a temporary file, then renames it into place.
void write_png(const std::string& path, const cv::Mat& img) {
  write_via_temp_file(path, [&](const std::string& tmp) {
    bool ok = false;
    try {
      ok = cv::imwrite(tmp, img);
    } catch (const cv::Exception& e) {
      throw IoError("cannot write '" + path + "': " + e.what());
    }
    if (!ok) throw IoError("cannot write '" + path + "' (unsupported extension or unwritable folder)");
  });
}

}  // namespace

void write_overlay_png(const std::string& path, const io::RGB8Image& image, const std::vector<uint8_t>& mask,
                       const predict::Prompt& prompt) {
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.data.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::Mat m(image.height, image.width, CV_8UC1);
  for (size_t i = 0; i < mask.size(); ++i) m.data[i] = mask[i] ? 255 : 0;
  // Tint the object, then outline it.
  cv::Mat tint(bgr.size(), bgr.type(), cv::Scalar(255, 144, 30));
  cv::Mat blended;
  cv::addWeighted(bgr, 0.55, tint, 0.45, 0, blended);
  blended.copyTo(bgr, m);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(m, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  const int thick = std::max(1, std::max(image.height, image.width) / 400);
  cv::drawContours(bgr, contours, -1, cv::Scalar(255, 255, 0), thick);
  if (prompt.box) {
    const auto& b = *prompt.box;
    cv::rectangle(bgr, cv::Point2d(b.x0, b.y0), cv::Point2d(b.x1, b.y1), cv::Scalar(0, 215, 255), thick);
  }
  const int r = std::max(3, std::max(image.height, image.width) / 120);
  for (const auto& p : prompt.points) {
    const auto color = p.label == 1 ? cv::Scalar(0, 200, 0) : cv::Scalar(0, 0, 230);
    cv::circle(bgr, cv::Point2d(p.x, p.y), r, color, cv::FILLED);
    cv::circle(bgr, cv::Point2d(p.x, p.y), r, cv::Scalar(255, 255, 255), 1);
  }
  write_png(path, bgr);
}

std::string default_model_path() {
  if (const char* env = std::getenv("MEDICOSAM_MODEL"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "../share/medicosam/models/medicosam_default.safetensors");
    candidates.push_back(exe.parent_path() / "../models/medicosam_default.safetensors");
    candidates.push_back(exe.parent_path() / "../../models/medicosam_default.safetensors");
  }
  candidates.push_back(fs::path(MEDICOSAM_SOURCE_DIR) / "models/medicosam_default.safetensors");
  std::string tried;
  for (const auto& c : candidates) {
    if (fs::exists(c, ec)) return fs::weakly_canonical(c, ec).string();
    tried += (tried.empty() ? "" : ", ") + c.lexically_normal().string();
  }
  throw InputError("no --model given and no default model found (looked in " + tried +
                   "); set MEDICOSAM_MODEL or pass --model CKPT");
}

std::string default_web_dir() {
  if (const char* env = std::getenv("MEDICOSAM_WEB_DIR"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path() / "../share/medicosam/web");
  candidates.push_back(fs::path(MEDICOSAM_WEB_BUILD_DIR));
  for (const auto& c : candidates)
    if (fs::is_regular_file(c / "index.html", ec)) return fs::weakly_canonical(c, ec).string();
  return "";
}

}  // namespace medicosam::cli
