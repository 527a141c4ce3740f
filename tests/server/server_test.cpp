// End-to-end tests of `medicosam serve`: the real binary on a free port of
// 127.0.0.1 with a temporary datastore, driven over plain HTTP the way 3D
// Slicer's MONAI Label module, MONAI's Python client and our native session
// API clients drive it, on the brain MRI of ../shared/data.
#include <gtest/gtest.h>

#include <chrono>
#include <httplib.h>

#include <algorithm>
#include <set>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/io/read.hpp"
#include "server_process.hpp"

namespace medicosam {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using servertest::ServerProcess;

const fs::path kShared = MEDICOSAM_SHARED_DIR;
const fs::path kBrain = kShared / "data/mri_tumor_3d_pyradiomics/nifti/brain1_image.nii.gz";
const fs::path kBrainLabel = kShared / "data/mri_tumor_3d_pyradiomics/nifti/brain1_label.nii.gz";
const fs::path kBrain2 = kShared / "data/mri_tumor_3d_pyradiomics/nifti/brain2_image.nii.gz";
const char* kSlicerBoundary = "----------lImIt_of_THE_fIle_eW_$";

std::string cli() {
  const char* bin = std::getenv("MEDICOSAM_CLI");
  return bin ? bin : "";
}

fs::path scratch(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("medicosam_server_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A multipart/form-data body as Slicer's client builds it (fixed boundary).
struct Field {
  std::string name, filename, content;
};
std::string slicer_multipart(const std::vector<Field>& fields) {
  std::string b;
  for (const auto& f : fields) {
    b += std::string("--") + kSlicerBoundary + "\r\n";
    b += "Content-Disposition: form-data; name=\"" + f.name + "\"";
    if (!f.filename.empty()) b += "; filename=\"" + f.filename + "\"";
    b += "\r\n";
    if (!f.filename.empty()) b += "Content-Type: application/octet-stream\r\n";
    b += "\r\n" + f.content + "\r\n";
  }
  b += std::string("--") + kSlicerBoundary + "--\r\n";
  return b;
}
std::string slicer_content_type() { return std::string("multipart/form-data; boundary=") + kSlicerBoundary; }

// Parses a multipart reply into (name, filename, content) parts.
std::vector<Field> parse_multipart_reply(const httplib::Result& r) {
  const auto ct = r->get_header_value("Content-Type");
  const auto p = ct.find("boundary=");
  EXPECT_NE(p, std::string::npos) << ct;
  const std::string delim = "--" + ct.substr(p + 9);
  std::vector<Field> parts;
  const std::string& body = r->body;
  size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) break;
    pos += 2;  // CRLF
    const auto hdr_end = body.find("\r\n\r\n", pos);
    const std::string headers = body.substr(pos, hdr_end - pos);
    const auto next = body.find("\r\n" + delim, hdr_end + 4);
    Field f;
    f.content = body.substr(hdr_end + 4, next - hdr_end - 4);
    auto attr = [&](const std::string& key) -> std::string {
      const auto k = headers.find(key + "=\"");
      if (k == std::string::npos) return "";
      const auto e = headers.find('"', k + key.size() + 2);
      return headers.substr(k + key.size() + 2, e - k - key.size() - 2);
    };
    f.name = attr("name");
    f.filename = attr("filename");
    parts.push_back(f);
    pos = next + 2;
  }
  return parts;
}

io::LabelMap read_label_bytes(const std::string& bytes, const std::string& ext = ".nii.gz") {
  const auto p = scratch("decode") / ("label" + ext);
  write_file_atomic(p.string(), bytes);
  return io::read_label_map(p.string());
}

// The lesion voxel nearest the centroid of the slice with the most lesion.
std::array<int64_t, 3> tumour_click() {
  const auto lab = io::read_label_map(kBrainLabel.string());
  const auto& s = lab.size();
  int64_t best_z = 0, best_n = 0;
  for (int64_t z = 0; z < s[2]; ++z) {
    int64_t n = 0;
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[0]; ++x) n += lab.at(x, y, z) != 0;
    if (n > best_n) best_n = n, best_z = z;
  }
  double cx = 0, cy = 0;
  for (int64_t y = 0; y < s[1]; ++y)
    for (int64_t x = 0; x < s[0]; ++x)
      if (lab.at(x, y, best_z)) cx += x, cy += y;
  cx /= best_n, cy /= best_n;
  std::array<int64_t, 3> best{0, 0, best_z};
  double bd = 1e18;
  for (int64_t y = 0; y < s[1]; ++y)
    for (int64_t x = 0; x < s[0]; ++x)
      if (lab.at(x, y, best_z) && (x - cx) * (x - cx) + (y - cy) * (y - cy) < bd)
        bd = (x - cx) * (x - cx) + (y - cy) * (y - cy), best = {x, y, best_z};
  return best;
}

void expect_same_grid(const io::Geometry& a, const io::Geometry& b) {
  EXPECT_EQ(a.size, b.size);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], 1e-4);
    EXPECT_NEAR(a.origin[i], b.origin[i], 1e-3);
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], 1e-5);
}

// No absolute path, stack trace or C++ type in what a client sees.
void expect_clean_error(const httplib::Result& r) {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body.find("/tmp/"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("/work/"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("std::"), std::string::npos) << r->body;
  const auto j = json::parse(r->body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r->body;
  EXPECT_TRUE(j.contains("detail")) << r->body;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(cli())) << "MEDICOSAM_CLI must point at the built CLI";
    datastore_ = new fs::path(scratch("datastore"));
    fs::copy_file(kBrain, *datastore_ / "brain1.nii.gz");
    fs::copy_file(kBrain2, *datastore_ / "brain2.nii.gz");
    server_ = new ServerProcess(cli(), {"--datastore", datastore_->string(), "--threads", "2", "--max-sessions", "3",
                                        "--max-upload", "64M"},
                                (scratch("logs") / "server.log").string());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(300, 0);
    return c;
  }
  std::string claim() {
    auto c = client();
    auto r = c.Post("/api/claim");
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body)["lease_token"];
  }
  httplib::Result api(const std::string& token, const std::string& path, const json& body = json::object()) {
    auto c = client();
    return c.Post(path.c_str(), {{"X-Lease-Token", token}}, body.dump(), "application/json");
  }
  static fs::path* datastore_;
  static ServerProcess* server_;
};
fs::path* ServerTest::datastore_ = nullptr;
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, InfoListsDeepgrowModelsWithoutTopLevelConfig) {
  auto c = client();
  for (const char* path : {"/info/", "/info"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const auto j = json::parse(r->body);
    EXPECT_FALSE(j.contains("config")) << "Slicer refuses a server with a top-level config";
    EXPECT_EQ(j["models"]["medicosam_2d"]["type"], "deepgrow");
    EXPECT_EQ(j["models"]["medicosam_2d"]["dimension"], 2);
    EXPECT_EQ(j["models"]["medicosam_3d"]["type"], "deepgrow");
    EXPECT_EQ(j["models"]["medicosam_3d"]["dimension"], 3);
    EXPECT_EQ(j["models"]["medicosam_automatic"]["type"], "segmentation");
    EXPECT_GE(j["datastore"]["total"].get<int>(), 2);
  }
  auto a = c.Get("/auth/");
  ASSERT_EQ(a->status, 200);
  EXPECT_EQ(json::parse(a->body)["enabled"], false);
}

TEST_F(ServerTest, SlicerUploadWithFixedBoundaryThenDownloadAndDelete) {
  auto c = client();
  const std::string bytes = read_file(kBrain2.string());
  auto r = c.Put("/datastore/?image=uploaded_case",  // the deprecated route Slicer still uses
                 slicer_multipart({{"params", "", R"({"client_id":"slicer"})"}, {"file", "brain2.nii.gz", bytes}}),
                 slicer_content_type().c_str());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["image"], "uploaded_case");
  auto all = json::parse(c.Get("/datastore/?output=all")->body);
  ASSERT_TRUE(all["objects"].contains("uploaded_case")) << all.dump();
  EXPECT_EQ(all["objects"]["uploaded_case"]["image"]["ext"], ".nii.gz");
  auto got = c.Get("/datastore/image?image=uploaded_case");
  ASSERT_EQ(got->status, 200);
  EXPECT_EQ(got->body, bytes);
  auto info = c.Get("/datastore/image/info?image=uploaded_case");
  EXPECT_EQ(json::parse(info->body)["client_id"], "slicer");
  auto d = c.Delete("/datastore/image?id=uploaded_case");
  ASSERT_EQ(d->status, 200) << d->body;
  EXPECT_EQ(c.Get("/datastore/image?image=uploaded_case")->status, 404);
}

TEST_F(ServerTest, Infer2DClickOnTumourAnswersMultipartLabelOnTheImageGrid) {
  const auto click = tumour_click();
  auto c = client();
  const json params = {{"foreground", {{click[0], click[1], click[2]}}}, {"background", json::array()},
                       {"label", "tumour"}, {"slice", click[2]}};
  auto r = c.Post("/infer/medicosam_2d?image=brain1",
                  slicer_multipart({{"params", "", params.dump()}}), slicer_content_type().c_str());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto parts = parse_multipart_reply(r);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "params");
  EXPECT_TRUE(parts[0].filename.empty()) << "the params part must have no filename (cgi.FieldStorage form field)";
  EXPECT_EQ(parts[1].name, "image");
  EXPECT_EQ(parts[1].filename, "result.nii.gz");
  const auto result = json::parse(parts[0].content);
  EXPECT_EQ(result["slice"], click[2]);
  const auto labels = read_label_bytes(parts[1].content);
  const auto image = io::probe_image(kBrain.string());
  expect_same_grid(labels.geometry(), image.geometry);
  EXPECT_EQ(labels.at(click[0], click[1], click[2]), 1) << "the clicked voxel is not in the mask";
  // A 2D model writes only the clicked slice.
  int64_t on = 0, off = 0;
  for (int64_t z = 0; z < labels.size()[2]; ++z)
    for (int64_t y = 0; y < labels.size()[1]; ++y)
      for (int64_t x = 0; x < labels.size()[0]; ++x)
        (z == click[2] ? on : off) += labels.at(x, y, z) != 0;
  EXPECT_GT(on, 20);
  EXPECT_EQ(off, 0);

  // output=image: the label alone; output=json: the params alone.
  auto img = c.Post("/infer/medicosam_2d?image=brain1&output=image", slicer_multipart({{"params", "", params.dump()}}),
                    slicer_content_type().c_str());
  ASSERT_EQ(img->status, 200);
  EXPECT_EQ(read_label_bytes(img->body).at(click[0], click[1], click[2]), 1);
  auto js = c.Post("/infer/medicosam_2d?image=brain1&output=json", params.dump(), "application/json");
  ASSERT_EQ(js->status, 200) << js->body;
  EXPECT_GT(json::parse(js->body)["voxels"].get<int64_t>(), 20);
}

TEST_F(ServerTest, Infer3DPropagatesThroughTheTumour) {
  const auto click = tumour_click();
  auto c = client();
  const json params = {{"foreground", {{click[0], click[1], click[2]}}}, {"label", "tumour"}};
  auto r = c.Post("/infer/medicosam_3d?image=brain1&output=image", slicer_multipart({{"params", "", params.dump()}}),
                  slicer_content_type().c_str());
  ASSERT_EQ(r->status, 200) << r->body;
  const auto labels = read_label_bytes(r->body);
  const auto truth = io::read_label_map(kBrainLabel.string());
  expect_same_grid(labels.geometry(), truth.geometry());
  EXPECT_EQ(labels.at(click[0], click[1], click[2]), 1);
  std::set<int64_t> slices;
  int64_t inter = 0, a = 0, b = 0;
  for (int64_t i = 0; i < labels.num_voxels(); ++i) {
    const bool p = labels.data()[i] != 0, t = truth.data()[i] != 0;
    inter += p && t, a += p, b += t;
    if (p) slices.insert(i / (labels.size()[0] * labels.size()[1]));
  }
  EXPECT_GT(slices.size(), 1u) << "3D model did not propagate";
  std::printf("3D infer from one click: %zu slices, Dice %.3f vs the reference lesion\n", slices.size(),
              2.0 * inter / std::max<int64_t>(1, a + b));
}

TEST_F(ServerTest, RoiAloneIsABoxPromptAndInvertedPairsAreSorted) {
  const auto truth = io::read_label_map(kBrainLabel.string());
  const auto click = tumour_click();
  int64_t x0 = 1 << 30, x1 = -1, y0 = 1 << 30, y1 = -1;
  for (int64_t y = 0; y < truth.size()[1]; ++y)
    for (int64_t x = 0; x < truth.size()[0]; ++x)
      if (truth.at(x, y, click[2])) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  auto c = client();
  // Pairs inverted as Slicer's RAS->IJK can produce them.
  const json params = {{"roi", {x1, x0, y1, y0, click[2], click[2]}}};
  auto r = c.Post("/infer/medicosam_2d?image=brain1&output=image", params.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  const auto labels = read_label_bytes(r->body);
  int64_t inter = 0, a = 0, b = 0;
  for (int64_t y = 0; y < truth.size()[1]; ++y)
    for (int64_t x = 0; x < truth.size()[0]; ++x) {
      const bool p = labels.at(x, y, click[2]) != 0, t = truth.at(x, y, click[2]) != 0;
      inter += p && t, a += p, b += t;
    }
  const double dice = 2.0 * inter / std::max<int64_t>(1, a + b);
  std::printf("box (ROI) on slice %lld: Dice %.3f\n", static_cast<long long>(click[2]), dice);
  EXPECT_GT(dice, 0.3);
}

TEST_F(ServerTest, SaveLabelThenActiveLearningMovesToTheNextImage) {
  auto c = client();
  auto first = c.Post("/activelearning/first", R"({"client_id":"test"})", "application/json");
  ASSERT_EQ(first->status, 200);
  const auto f = json::parse(first->body);
  ASSERT_TRUE(f.contains("id")) << first->body;
  const std::string id = f["id"];
  EXPECT_TRUE(fs::exists(f["path"].get<std::string>()));
  // Slicer saves a label of the same grid with label_info.
  const auto image = io::read_image(datastore_->string() + "/" + id + ".nii.gz");
  // Bytes of a label map written by our own writer (as a viewer would send).
  std::string label_bytes;
  {
    auto r = c.Post("/infer/medicosam_2d?image=" + id + "&output=image",
                    json{{"foreground", {{128, 128, image.size()[2] / 2}}}}.dump(), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    label_bytes = r->body;
  }
  const json params = {{"label_info", {{{"name", "tumour"}, {"idx", 1}}}}, {"model", "medicosam_2d"}};
  auto put = c.Put(("/datastore/label?image=" + id + "&tag=final").c_str(),
                   slicer_multipart({{"label", "label.nii.gz", label_bytes}, {"params", "", params.dump()}}),
                   slicer_content_type().c_str());
  ASSERT_EQ(put->status, 200) << put->body;
  auto back = c.Get(("/datastore/label?label=" + id + "&tag=final").c_str());
  ASSERT_EQ(back->status, 200);
  const auto saved = read_label_bytes(back->body);
  expect_same_grid(saved.geometry(), image.geometry());
  EXPECT_EQ(saved.num_voxels(), image.num_voxels());
  auto info = json::parse(c.Get(("/datastore/label/info?label=" + id + "&tag=final").c_str())->body);
  EXPECT_EQ(info["label_info"][0]["name"], "tumour");
  auto next = json::parse(c.Post("/activelearning/first", "{}", "application/json")->body);
  if (next.contains("id")) {
    EXPECT_NE(next["id"], id);
  }
  EXPECT_GE(json::parse(c.Get("/datastore/?output=stats")->body)["completed"].get<int>(), 1);
  // A raw .bin label (OHIF's save): uint8 in Fortran order on the image grid.
  std::string bin(static_cast<size_t>(image.num_voxels()), '\0');
  bin[0] = 2;
  auto put_bin = c.Put(("/datastore/label?image=" + id + "&tag=ohif").c_str(),
                       slicer_multipart({{"label", "label.bin", bin}}), slicer_content_type().c_str());
  ASSERT_EQ(put_bin->status, 200) << put_bin->body;
  EXPECT_EQ(read_label_bytes(c.Get(("/datastore/label?label=" + id + "&tag=ohif").c_str())->body).at(0, 0, 0), 2);
  auto bad_bin = c.Put(("/datastore/label?image=" + id + "&tag=ohif").c_str(),
                       slicer_multipart({{"label", "label.bin", "short"}}), slicer_content_type().c_str());
  EXPECT_EQ(bad_bin->status, 400);
  expect_clean_error(bad_bin);
  EXPECT_EQ(c.Delete(("/datastore/label?id=" + id + "&tag=ohif").c_str())->status, 200);
}

TEST_F(ServerTest, MonaiSessionUploadIsUsableForInfer) {
  auto c = client();
  auto r = c.Put("/session/?expiry=600", slicer_multipart({{"files", "case.nii.gz", read_file(kBrain.string())}}),
                 slicer_content_type().c_str());
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = json::parse(r->body);
  const std::string sid = j["session_id"];
  EXPECT_EQ(j["session_info"]["expiry"], 600.0);
  const auto click = tumour_click();
  auto inf = c.Post(("/infer/medicosam_2d?session_id=" + sid + "&output=image").c_str(),
                    json{{"foreground", {{click[0], click[1], click[2]}}}}.dump(), "application/json");
  ASSERT_EQ(inf->status, 200) << inf->body;
  EXPECT_EQ(read_label_bytes(inf->body).at(click[0], click[1], click[2]), 1);
  EXPECT_EQ(c.Get(("/session/" + sid).c_str())->status, 200);
  EXPECT_EQ(c.Delete(("/session/" + sid).c_str())->status, 200);
  EXPECT_EQ(c.Get(("/session/" + sid).c_str())->status, 404);
}

// Decodes a region update into (bbox, voxels) and checks one voxel's value.
uint16_t region_value(const json& region, const std::array<int64_t, 3>& v) {
  const auto& bb = region["bbox"];
  for (int d = 0; d < 3; ++d)
    if (v[d] < bb[d][0].get<int64_t>() || v[d] >= bb[d][1].get<int64_t>()) return 0xffff;  // outside
  static const std::string t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  const auto s = region["data"].get<std::string>();
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : s) {
    if (ch == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(t.find(ch));
    bits += 6;
    if (bits >= 8) bits -= 8, bytes += static_cast<char>((acc >> bits) & 0xff);
  }
  const int64_t nx = bb[0][1].get<int64_t>() - bb[0][0].get<int64_t>();
  const int64_t ny = bb[1][1].get<int64_t>() - bb[1][0].get<int64_t>();
  const int64_t o = ((v[2] - bb[2][0].get<int64_t>()) * ny + (v[1] - bb[1][0].get<int64_t>())) * nx +
                    (v[0] - bb[0][0].get<int64_t>());
  return static_cast<uint8_t>(bytes[2 * o]) | (static_cast<uint8_t>(bytes[2 * o + 1]) << 8);
}

TEST_F(ServerTest, NativeSessionPointsUndoRedoCommitPropagateExportSave) {
  const auto click = tumour_click();
  const auto token = claim();
  auto r = api(token, "/api/set_image", {{"image", "brain1"}});
  ASSERT_EQ(r->status, 200) << r->body;
  const auto si = json::parse(r->body);
  EXPECT_EQ(si["shape"], json({256, 256, 25}));
  r = api(token, "/api/point", {{"voxel", {click[0], click[1], click[2]}}, {"positive", true}});
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = json::parse(r->body);
  ASSERT_FALSE(j["region"]["bbox"].is_null());
  EXPECT_EQ(j["slice"], click[2]);
  const auto label = j["current"].get<int>();
  EXPECT_EQ(region_value(j["region"], click), label);
  // Only the changed region travels: the clicked slice, not the volume.
  EXPECT_EQ(j["region"]["bbox"][2], json({click[2], click[2] + 1}));
  // A negative click far away changes little; undo brings the first mask back, redo the second.
  r = api(token, "/api/point", {{"voxel", {5, 5, click[2]}}, {"positive", false}});
  ASSERT_EQ(r->status, 200) << r->body;
  r = api(token, "/api/undo");
  ASSERT_EQ(r->status, 200) << r->body;
  r = api(token, "/api/undo");
  j = json::parse(r->body);
  EXPECT_EQ(region_value(j["region"], click), 0) << "undo of the first click must clear the mask";
  r = api(token, "/api/redo");
  j = json::parse(r->body);
  EXPECT_EQ(region_value(j["region"], click), label);
  // Propagate, then commit.
  r = api(token, "/api/propagate");
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_LE(j["z_min"].get<int>(), click[2]);
  r = api(token, "/api/commit");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(json::parse(r->body)["current"].is_null());
  auto c = client();
  auto exp = c.Get("/api/export?format=nii.gz", {{"X-Lease-Token", token}});
  ASSERT_EQ(exp->status, 200) << exp->body;
  const auto labels = read_label_bytes(exp->body);
  expect_same_grid(labels.geometry(), io::probe_image(kBrain.string()).geometry);
  EXPECT_EQ(labels.at(click[0], click[1], click[2]), label);
  r = api(token, "/api/save", {{"tag", "session"}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(fs::exists(*datastore_ / "labels/session/brain1.nii.gz"));
  auto st = json::parse(c.Get("/api/state", {{"X-Lease-Token", token}})->body);
  EXPECT_EQ(st["objects"].size(), 1u);
  EXPECT_EQ(api(token, "/api/release")->status, 200);
  EXPECT_EQ(api(token, "/api/point", {{"voxel", {1, 1, 1}}})->status, 410);
}

TEST_F(ServerTest, SessionsAreBoundedWith503AndRetryAfter) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 3; ++i) {
    auto c = client();
    auto r = c.Post("/api/claim");
    if (r->status == 503) break;  // other tests' sessions may still hold a slot
    tokens.push_back(json::parse(r->body)["lease_token"]);
  }
  auto c = client();
  auto full = c.Post("/api/claim");
  EXPECT_EQ(full->status, 503);
  EXPECT_TRUE(full->has_header("Retry-After"));
  for (const auto& t : tokens) api(t, "/api/release");
  EXPECT_EQ(c.Post("/api/claim")->status, 200);
}

TEST_F(ServerTest, BadInputsGetClearErrorsAndTheServerStaysUp) {
  auto c = client();
  // Ids that try to leave the datastore.
  for (const char* path : {"/datastore/image?image=..%2F..%2Fetc%2Fpasswd", "/datastore/image?image=%2Fetc%2Fpasswd",
                           "/datastore/image?image=a%00b", "/datastore/label?label=..&tag=final",
                           "/datastore/label?label=brain1&tag=..%2F..%2Fx"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 400) << path << ": " << r->body;
    expect_clean_error(r);
  }
  // A symbolic link inside the datastore is not followed.
  fs::create_symlink("/etc/hostname", *datastore_ / "link.nii.gz");
  EXPECT_EQ(c.Get("/datastore/image?image=link")->status, 404);
  fs::remove(*datastore_ / "link.nii.gz");
  // Malformed params, unknown model, bad prompts.
  auto r = c.Post("/infer/medicosam_2d?image=brain1", slicer_multipart({{"params", "", "{not json"}}),
                  slicer_content_type().c_str());
  EXPECT_EQ(r->status, 400);
  expect_clean_error(r);
  r = c.Post("/infer/nosuch_2d?image=brain1", "{}", "application/json");
  EXPECT_EQ(r->status, 404);
  r = c.Post("/infer/medicosam_2d?image=brain1", R"({"foreground":[[1,2]]})", "application/json");
  EXPECT_EQ(r->status, 400);
  expect_clean_error(r);
  r = c.Post("/infer/medicosam_2d?image=brain1", R"({"foreground":[[9999,2,3]]})", "application/json");
  EXPECT_EQ(r->status, 400);
  expect_clean_error(r);
  r = c.Post("/infer/medicosam_2d?image=nosuch", R"({"foreground":[[1,2,3]]})", "application/json");
  EXPECT_EQ(r->status, 404);
  // A malformed multipart body (no closing boundary / wrong boundary).
  r = c.Post("/infer/medicosam_2d?image=brain1", "--xyz\r\ngarbage", "multipart/form-data; boundary=abc");
  ASSERT_TRUE(r);
  EXPECT_GE(r->status, 400);
  EXPECT_LT(r->status, 500);
  // A broken NIfTI upload is refused and not listed.
  std::string broken = read_file(kBrain.string()).substr(0, 200);
  r = c.Put("/datastore/?image=broken", slicer_multipart({{"file", "broken.nii.gz", broken}}),
            slicer_content_type().c_str());
  EXPECT_EQ(r->status, 400) << r->body;
  expect_clean_error(r);
  EXPECT_FALSE(json::parse(c.Get("/datastore/?output=all")->body)["objects"].contains("broken"));
  // A label of the wrong grid.
  r = c.Put("/datastore/label?image=brain1&tag=final",
            slicer_multipart({{"label", "l.nii.gz", read_file((kShared / "data/mri_tumor_3d_pyradiomics/nifti/breast1_label.nii.gz").string())}}),
            slicer_content_type().c_str());
  EXPECT_EQ(r->status, 400) << r->body;
  expect_clean_error(r);
  // Larger than --max-upload: refused before it is read.
  r = c.Put("/datastore/?image=huge", std::string(65 << 20, 'x'), "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  // Native API without a lease / with a bad token.
  EXPECT_EQ(api("", "/api/point", {{"voxel", {1, 2, 3}}})->status, 410);
  EXPECT_EQ(api("deadbeef", "/api/undo")->status, 410);
  const auto t = claim();
  EXPECT_EQ(api(t, "/api/point", {{"voxel", {1, 2, 3}}})->status, 409);  // no image yet
  EXPECT_EQ(api(t, "/api/set_image", {{"image", "../brain1"}})->status, 400);
  ASSERT_EQ(api(t, "/api/set_image", {{"image", "brain1"}})->status, 200);
  r = api(t, "/api/box", {{"voxels", {{10, 10, 3}, {20, 20, 4}}}});
  EXPECT_EQ(r->status, 400);
  expect_clean_error(r);
  r = api(t, "/api/point", {{"slice", 99}, {"x", 1}, {"y", 1}});
  EXPECT_EQ(r->status, 400);
  expect_clean_error(r);
  api(t, "/api/release");
  // Still alive.
  EXPECT_EQ(c.Get("/api/healthz")->status, 200);
  // The access log line is written after the response is sent: poll briefly (bounded).
  auto logs = c.Get("/logs/?lines=50");
  for (int i = 0; i < 40 && logs && logs->status == 200 &&
                  logs->body.find("GET /api/healthz 200") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    logs = c.Get("/logs/?lines=50");
  }
  ASSERT_TRUE(logs);
  ASSERT_EQ(logs->status, 200);
  EXPECT_NE(logs->body.find("GET /api/healthz 200"), std::string::npos) << logs->body;
}

TEST(ServerAuth, ApiKeyIsRequiredOnEveryRequestButAuthInfo) {
  const auto ds = scratch("auth_ds");
  fs::copy_file(kBrain2, ds / "b.nii.gz");
  ServerProcess s(cli(), {"--datastore", ds.string(), "--api-key", "s3cret", "--threads", "1"},
                  (scratch("auth_logs") / "server.log").string());
  httplib::Client c("127.0.0.1", s.port());
  auto a = c.Get("/auth/");
  ASSERT_EQ(a->status, 200);
  EXPECT_EQ(json::parse(a->body)["enabled"], true);
  EXPECT_EQ(c.Get("/info/")->status, 401);
  EXPECT_EQ(c.Get("/datastore/image?image=b")->status, 401);
  EXPECT_EQ(c.Get("/info/", {{"Authorization", "Bearer wrong"}})->status, 401);
  EXPECT_EQ(c.Get("/info/", {{"Authorization", "Bearer s3cret"}})->status, 200);
  EXPECT_EQ(s.stop(SIGTERM), 0) << "SIGTERM must stop the server cleanly";
}

TEST(ServerCrash, CommittedWorkSurvivesKill9AndRestart) {
  const auto ds = scratch("crash_ds");
  fs::copy_file(kBrain, ds / "brain1.nii.gz");
  const auto click = tumour_click();
  const auto log = (scratch("crash_logs") / "server.log").string();
  std::string token;
  {
    ServerProcess s(cli(), {"--datastore", ds.string(), "--threads", "2"}, log);
    httplib::Client c("127.0.0.1", s.port());
    c.set_read_timeout(300, 0);
    token = json::parse(c.Post("/api/claim")->body)["lease_token"];
    auto post = [&](const std::string& p, const json& b) {
      return c.Post(p.c_str(), {{"X-Lease-Token", token}}, b.dump(), "application/json");
    };
    ASSERT_EQ(post("/api/set_image", {{"image", "brain1"}})->status, 200);
    ASSERT_EQ(post("/api/point", {{"voxel", {click[0], click[1], click[2]}}})->status, 200);
    ASSERT_EQ(post("/api/commit", json::object())->status, 200);
    ASSERT_EQ(post("/api/point", {{"voxel", {click[0], click[1], click[2]}}})->status, 200);  // uncommitted
    s.stop(SIGKILL);
  }
  ServerProcess s(cli(), {"--datastore", ds.string(), "--threads", "2"}, log);
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(300, 0);
  auto st = c.Get("/api/state", {{"X-Lease-Token", token}});
  ASSERT_EQ(st->status, 200) << st->body;
  const auto j = json::parse(st->body);
  EXPECT_EQ(j["objects"].size(), 1u) << "the committed object is lost";
  EXPECT_FALSE(j["current"].is_null()) << "the object in progress is lost";
  auto exp = c.Get("/api/export", {{"X-Lease-Token", token}});
  ASSERT_EQ(exp->status, 200);
  EXPECT_EQ(read_label_bytes(exp->body).at(click[0], click[1], click[2]), 1);
  // No temporary files are left where labels and states live.
  for (const auto& e : fs::recursive_directory_iterator(ds)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace medicosam
