// End to end through the `medicosam` CLI with the real predictor (the tiny
// parity model) on the real 3D data in ../shared/data (a crop of the brain1
// MRI around its lesion, 3 slices, to keep encoding short): embed (old --image/--out
// form and the new cache form), propagate, session (with resume) and amg.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "medicosam/core/npy.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kShared = MEDICOSAM_SHARED_DIR;
const std::string kModel = kShared + "/fixtures/sam_parity/sam_tiny_seed0.pth";
const std::string kData = kShared + "/data/mri_tumor_3d_pyradiomics/nrrd/";

struct Env {
  fs::path dir;
  std::string cli;
  std::string volume, labels;
  int slice = 1;
  predict::Box box;
};

// Crops brain1 (and its labels) to 64 x 64 x 3 voxels around the lesion (slices 13..15).
Env& env() {
  static Env e = [] {
    Env e;
    const char* cli = std::getenv("MEDICOSAM_CLI");
    e.cli = cli ? cli : "";
    e.dir = fs::temp_directory_path() / ("medicosam_cli_volume_" + std::to_string(::getpid()));
    fs::create_directories(e.dir);
    const auto img = io::read_image(kData + "brain1_image.nrrd");
    const auto lab = io::read_image(kData + "brain1_label.nrrd");
    auto crop = [](const io::Volume& v) {
      io::Geometry g = v.geometry();
      g.size = {64, 64, 3};
      g.origin = v.geometry().index_to_physical({160, 70, 13});
      io::Volume out(v.pixel_type(), g);
      for (int z = 0; z < 3; ++z)
        for (int y = 0; y < 64; ++y)
          for (int x = 0; x < 64; ++x) out.set_value(x, y, z, 0, v.value(x + 160, y + 70, z + 13));
      return out;
    };
    const auto ci = crop(img), cl = crop(lab);
    e.volume = (e.dir / "brain1_crop.nrrd").string();
    e.labels = (e.dir / "brain1_crop_label.nrrd").string();
    io::write_image(e.volume, ci);
    io::write_image(e.labels, cl);
    // The prompt: the lesion's box on the middle slice, as a user would draw it.
    const auto s = io::extract_slice(cl, io::Axis::kAxial, e.slice);
    segment::BinaryMask m(static_cast<int>(s.placement.height),
                          static_cast<int>(s.placement.width));
    for (int y = 0; y < m.height; ++y)
      for (int x = 0; x < m.width; ++x)
        m.data[size_t(y) * m.width + x] = s.image.value(x, y, 0) != 0;
    const auto box = segment::bounding_box(m);
    if (!box) throw std::runtime_error("the crop misses the lesion");
    e.box = *box;
    return e;
  }();
  return e;
}

struct Run {
  int status;
  std::string out, err;
};

Run run(const std::string& args) {
  auto& e = env();
  const auto out = (e.dir / "stdout.txt").string(), err = (e.dir / "stderr.txt").string();
  const int rc = std::system((e.cli + " " + args + " > " + out + " 2> " + err).c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(out), slurp(err)};
}

std::string box_arg(const predict::Box& b) {
  return std::to_string(int(b.x0)) + "," + std::to_string(int(b.y0)) + "," +
         std::to_string(int(b.x1)) + "," + std::to_string(int(b.y1));
}

class CliVolume : public ::testing::Test {
 protected:
  void SetUp() override {
    if (env().cli.empty() || !fs::exists(env().cli))
      GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  }
  static void TearDownTestSuite() { fs::remove_all(env().dir); }
  // fp32: the checks compare with the official implementation's numbers (the
  // CLI's default, auto, picks bf16 on CPUs that compute it natively).
  static std::string model() { return " --model " + kModel + " --threads 2 --precision fp32 "; }
};

TEST_F(CliVolume, EmbedKeepsTheNpyFormAndFillsACacheOnce) {
  auto& e = env();
  const auto npy = (e.dir / "slice.npy").string();
  auto r = run("embed --image " + e.volume + " --slice 1 --out " + npy + model());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_npy(npy).shape, (std::vector<int64_t>{1, 256, 64, 64}));
  const auto cache = (e.dir / "cache").string();
  r = run("embed " + e.volume + " --cache " + cache + " --json" + model());
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["slices"], 3);
  EXPECT_EQ(j["computed"], 3);
  r = run("embed " + e.volume + " --cache " + cache + " --json" + model());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["reused"], 3);
  // The npy of slice 1 and the cached slice 1 are the same embedding.
  EXPECT_TRUE(fs::exists(cache + "/features/1.0.0.0.0"));
  std::ifstream f(cache + "/features/1.0.0.0.0", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto a = read_npy(npy);
  ASSERT_EQ(bytes.size(), a.data.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), reinterpret_cast<const char*>(a.data.data())));
  // Both forms at once, or none, is an error.
  r = run("embed " + e.volume + " --cache " + cache + " --out " + npy + model());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("either --out"), std::string::npos) << r.err;
}

TEST_F(CliVolume, PropagateWritesALabelMapOnTheSourceGrid) {
  auto& e = env();
  const auto out = (e.dir / "prop.nii.gz").string();
  const auto cache = (e.dir / "cache").string();
  auto r = run("propagate --volume " + e.volume + " --cache " + cache + " --slice " +
               std::to_string(e.slice) + " --box " + box_arg(e.box) +
               " --projection mask --iou-threshold 0 --out " + out + " --label 3 --json" + model());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = json::parse(r.out);
  // With the IoU stop disabled every slice is decoded once.
  EXPECT_EQ(j["decoded_slices"], 2);
  EXPECT_EQ(j["z_min"], 0);
  EXPECT_EQ(j["z_max"], 2);
  const auto labels = io::read_label_map(out);
  const auto src = io::read_image(e.volume);
  EXPECT_TRUE(io::same_grid(labels.geometry(), src.geometry(), 1e-4));
  EXPECT_EQ(labels.labels_present(), (std::vector<uint16_t>{3}));
  EXPECT_EQ(j["voxels"].get<int64_t>(), labels.count(3));
  // The prompted slice holds the decoder's answer for the box: non-empty.
  const auto s =
      io::label_slice(labels, io::slice_placement(labels.geometry(), io::Axis::kAxial, e.slice), 3);
  EXPECT_GT(std::count(s.data.begin(), s.data.end(), 1), 0);
}

TEST_F(CliVolume, PropagateRefusesACacheOfOtherDataAndWritesNothing) {
  auto& e = env();
  const auto out = (e.dir / "never.nii.gz").string();
  auto made =
      run("embed " + e.volume + " --cache " + (e.dir / "cache").string() + " --quiet" + model());
  ASSERT_EQ(made.status, 0) << made.err;
  // The label volume is other data than the cache was made for.
  auto r = run("propagate --volume " + e.labels + " --cache " + (e.dir / "cache").string() +
               " --slice 2 --box 1,1,20,20 --out " + out + model());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("other data"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run("propagate --volume " + e.volume + " --cache " + (e.dir / "cache").string() +
          " --slice 9 --box 1,1,20,20 --out " + out + model());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--slice 9"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliVolume, SessionScriptIsReproducibleAndResumable) {
  auto& e = env();
  const auto script = (e.dir / "actions.json").string();
  std::ofstream(script) << json::array({
      {{"action", "new_object"}, {"name", "lesion"}},
      {{"action", "set_box"},
       {"slice", e.slice},
       {"box", {e.box.x0, e.box.y0, e.box.x1, e.box.y1}}},
      {{"action", "propagate"}, {"projection", "mask"}, {"iou_threshold", 0.0}},
      {{"action", "commit"}},
      {{"action", "new_object"}},
      {{"action", "add_point"}, {"slice", 1}, {"x", 5}, {"y", 5}},
      {{"action", "commit"}},
      {{"action", "undo"}},
      {{"action", "discard"}},
  });
  const auto out1 = (e.dir / "session1.nrrd").string(), out2 = (e.dir / "session2.nrrd").string();
  auto r = run("session " + e.volume + " --cache " + (e.dir / "cache").string() + " --script " +
               script + " --out " + out1 + " --json" + model());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\"z_max\":2"), std::string::npos) << r.out;
  const auto l1 = io::read_label_map(out1);
  EXPECT_EQ(l1.labels_present(), (std::vector<uint16_t>{1}));
  // Autosave next to the output; a second run without a cache (slices encoded on
  // demand) gives the same labels.
  ASSERT_TRUE(fs::exists(out1 + ".session.json"));
  r = run("session " + e.volume + " --script " + script + " --out " + out2 + model());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto l2 = io::read_label_map(out2);
  EXPECT_TRUE(std::equal(l1.data(), l1.data() + l1.num_voxels(), l2.data()));
  // Resume from the autosave and add an object: the committed one is kept.
  const auto more = (e.dir / "more.json").string();
  std::ofstream(more)
      << R"([{"action": "new_object"}, {"action": "add_point", "slice": 0, "x": 5, "y": 5},
                             {"action": "commit", "overwrite": false}])";
  const auto out3 = (e.dir / "session3.nrrd").string();
  r = run("session " + e.volume + " --cache " + (e.dir / "cache").string() + " --resume " + out1 +
          ".session.json --script " + more + " --out " + out3 + model());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto l3 = io::read_label_map(out3);
  EXPECT_EQ(l3.count(1), l1.count(1));  // not overwritten
  // A bad action stops with its number and leaves the autosave at the last good state.
  const auto bad = (e.dir / "bad.json").string();
  std::ofstream(bad)
      << R"([{"action": "new_object"}, {"action": "set_box", "slice": 99, "box": [1, 1, 5, 5]}])";
  r = run("session " + e.volume + " --script " + bad + " --autosave " +
          (e.dir / "bad.state.json").string() + model());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("action 2"), std::string::npos) << r.err;
  std::ifstream st(e.dir / "bad.state.json");
  EXPECT_FALSE(json::parse(st)["current"].is_null());  // new_object was saved
}

TEST_F(CliVolume, AmgOnTheParityImageMatchesTheReferenceCount) {
  auto& e = env();
  const auto img = read_npy(kShared + "/fixtures/sam_parity/img0_image.npy");
  cv::Mat rgb(static_cast<int>(img.shape[0]), static_cast<int>(img.shape[1]), CV_8UC3,
              const_cast<uint8_t*>(img.as<uint8_t>())),
      bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  const auto png = (e.dir / "img0.png").string();
  ASSERT_TRUE(cv::imwrite(png, bgr));
  const auto out = (e.dir / "amg_labels.png").string();
  auto r = run("amg " + png +
               " --points-per-side 8 --pred-iou-thresh 0.05 --stability-score-thresh 0.75 "
               "--stability-score-offset 0.25 --box-nms-thresh 0.7 --out " +
               out + " --json" + model());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = json::parse(r.out);
  EXPECT_EQ(j["masks"], 1);  // amg_relaxed_nms07_img0.json: 1 mask
  const auto labels = io::read_label_map(out);
  EXPECT_EQ(labels.labels_present(), (std::vector<uint16_t>{1}));
  EXPECT_EQ(labels.count(1), 68586);  // its area in the reference
}

}  // namespace
}  // namespace medicosam
