#pragma once
// Synthetic images, masks and dataset folders for the eval tests.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "medicosam/eval/dataset.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::eval::testing {

inline segment::BinaryMask rect_mask(int h, int w, int x0, int y0, int x1, int y1) {
  segment::BinaryMask m(h, w);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) m.data[size_t(y) * w + x] = 1;
  return m;
}

inline segment::BinaryMask disc_mask(int h, int w, int cx, int cy, int r) {
  segment::BinaryMask m(h, w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      m.data[size_t(y) * w + x] = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
  return m;
}

inline segment::BinaryMask mask_or(segment::BinaryMask a, const segment::BinaryMask& b) {
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] |= b.data[i];
  return a;
}

// Dark noisy background, bright objects where `fg` is set (easy for GrabCut).
inline io::RGB8Image synthetic_image(const segment::BinaryMask& fg, unsigned seed = 1) {
  io::RGB8Image img;
  img.height = fg.height;
  img.width = fg.width;
  img.data.resize(size_t(fg.height) * fg.width * 3);
  unsigned s = seed;
  for (size_t i = 0; i < fg.data.size(); ++i) {
    s = s * 1103515245u + 12345u;
    const int noise = int((s >> 16) % 21) - 10;
    const int base = fg.data[i] ? 200 : 40;
    img.data[i * 3 + 0] = uint8_t(std::clamp(base + noise, 0, 255));
    img.data[i * 3 + 1] = uint8_t(std::clamp(base / 2 + noise, 0, 255));
    img.data[i * 3 + 2] = uint8_t(std::clamp(255 - base + noise, 0, 255));
  }
  return img;
}

inline void write_png(const std::filesystem::path& p, const segment::BinaryMask& m,
                      uint8_t value = 255) {
  cv::Mat img(m.height, m.width, CV_8UC1);
  for (size_t i = 0; i < m.data.size(); ++i) img.data[i] = m.data[i] ? value : 0;
  cv::imwrite(p.string(), img);
}

inline void write_rgb_png(const std::filesystem::path& p, const io::RGB8Image& rgb) {
  cv::Mat m(rgb.height, rgb.width, CV_8UC3, const_cast<uint8_t*>(rgb.data.data())), bgr;
  cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  cv::imwrite(p.string(), bgr);
}

// A fresh temporary folder, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("medicosam_eval_" + tag + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::rand()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A small binary dataset: images/, masks/, split.json with `n` images
// (img_00 ..), each with one or two bright discs; all in "test".
inline void write_binary_dataset(const std::filesystem::path& root, int n, int h = 96,
                                 int w = 128) {
  std::filesystem::create_directories(root / "images");
  std::filesystem::create_directories(root / "masks");
  std::string names;
  for (int i = 0; i < n; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "img_%02d", i);
    auto m = disc_mask(h, w, 30 + 3 * i, 40, 14 + i % 4);
    if (i % 2) m = mask_or(m, rect_mask(h, w, 80, 20, 110, 70));
    write_rgb_png(root / "images" / (std::string(name) + ".png"),
                  synthetic_image(m, unsigned(i + 1)));
    write_png(root / "masks" / (std::string(name) + ".png"), m);
    names += std::string(names.empty() ? "" : ", ") + "\"" + name + "\"";
  }
  std::FILE* f = std::fopen((root / "split.json").c_str(), "w");
  std::fprintf(f, "{\"train\": [], \"val\": [], \"test\": [%s]}\n", names.c_str());
  std::fclose(f);
}

// 48 x 40 x 12 volume, spacing 1 x 1 x 2.5 mm: a box prism (label 1, z 2..8),
// a cylinder (label 2, z 4..10) and a 2x2 speck (label 3, z 5..6) that is
// below min_size in its middle slice.
struct Phantom {
  io::Volume volume;
  io::LabelMap labels;
};

inline Phantom phantom() {
  io::Geometry g;
  g.size = {48, 40, 12};
  g.spacing = {1.0, 1.0, 2.5};
  Phantom p{io::Volume(io::PixelType::kInt16, g), io::LabelMap(g)};
  for (int64_t z = 0; z < 12; ++z)
    for (int64_t y = 0; y < 40; ++y)
      for (int64_t x = 0; x < 48; ++x) {
        uint16_t l = 0;
        if (z >= 2 && z <= 8 && x >= 5 && x < 20 && y >= 6 && y < 30) l = 1;
        if (z >= 4 && z <= 10 && (x - 34) * (x - 34) + (y - 20) * (y - 20) <= 64) l = 2;
        if (z >= 5 && z <= 6 && x >= 40 && x < 42 && y >= 2 && y < 4) l = 3;
        p.labels.set(x, y, z, l);
        p.volume.set_value(x, y, z, 0,
                           l ? 900.0 + 50 * l : 100.0 + double((x * 7 + y * 3 + z) % 17));
      }
  return p;
}

// `medicosam` ($MEDICOSAM_CLI, set by ctest) with its exit code and output
// (stdout, plus stderr unless with_stderr is false).
struct CliRun {
  int rc = -1;
  std::string output;
};

inline CliRun run_cli(const std::string& args, bool with_stderr = true) {
  const char* cli = std::getenv("MEDICOSAM_CLI");
  CliRun r;
  if (!cli) return r;
  const std::string cmd = std::string(cli) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline bool have_cli() {
  const char* cli = std::getenv("MEDICOSAM_CLI");
  return cli && std::filesystem::exists(cli);
}

}  // namespace medicosam::eval::testing
