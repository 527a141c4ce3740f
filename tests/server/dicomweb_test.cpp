// The DICOMweb datastore against a scripted in-process PACS (cpp-httplib
// server): the failures a real PACS shows only by accident (a partial series,
// a truncated reply, HTTP 500, a slow answer, a refused STOW, nobody
// listening) each give a 502/504 naming the PACS URL, and leave neither a
// partial series in the cache nor a label that the PACS did not take. The
// same round trip against a real Orthanc is in orthanc_test.cpp.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/server/dicomweb.hpp"
#include "medicosam/server/requests.hpp"

namespace medicosam::server {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kCt = fs::path(MEDICOSAM_SHARED_DIR) / "data/ct_dicom_seg_dcmqi/ct_dicom";

fs::path scratch(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("medicosam_dicomweb_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A port nothing listens on (bound, then closed).
int closed_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(s);
  return ntohs(a.sin_port);
}

json dicom_attr(const std::string& vr, const json& value) { return {{"vr", vr}, {"Value", json::array({value})}}; }

// A PACS holding the 3-slice CT of ../shared, whose WADO-RS and STOW-RS
// answers the test scripts.
class FakePacs {
 public:
  enum class Wado { kOk, kPartial, kTruncated, kError500, kSlow, kNotDicom };
  enum class Stow { kOk, kFailed, kError409 };

  FakePacs() {
    info_ = io::list_dicom_series(kCt.string()).at(0);
    for (const auto& f : info_.files) files_.push_back(read_file(f));
    svr_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auth_.empty() || req.get_header_value("Authorization") == auth_) return httplib::Server::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_content("authentication required", "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    });
    svr_.Get("/dicom-web/series", [this](const httplib::Request& req, httplib::Response& res) {
      ++qido_calls;
      json out = json::array();
      const auto modality = req.get_param_value("Modality");
      if (modality == "CT") {
        out.push_back({{"0020000D", dicom_attr("UI", info_.study_uid)},
                       {"0020000E", dicom_attr("UI", info_.series_uid)},
                       {"00080060", dicom_attr("CS", "CT")},
                       {"00201209", dicom_attr("IS", static_cast<int>(files_.size()))}});
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (modality == "SEG" && stored_)
        out.push_back({{"0020000D", dicom_attr("UI", info_.study_uid)},
                       {"0020000E", dicom_attr("UI", "1.2.3.4.5")},
                       {"00080060", dicom_attr("CS", "SEG")}});
      res.set_content(out.dump(), "application/dicom+json");
    });
    svr_.Get(R"(/dicom-web/studies/([^/]+)/series/([^/]+)/metadata)", [this](const httplib::Request&, httplib::Response& res) {
      json ref = {{"0020000E", dicom_attr("UI", info_.series_uid)}};
      json instance = {{"00081115", {{"vr", "SQ"}, {"Value", json::array({ref})}}}};
      res.set_content(json::array({instance}).dump(), "application/dicom+json");
    });
    svr_.Get(R"(/dicom-web/studies/([^/]+)/series/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++wado_calls;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stored_ && req.matches[2] == "1.2.3.4.5") {  // the SEG as it was stored
          res.set_content(stored_body_, stored_content_type_.c_str());
          return;
        }
      }
      if (req.matches[2] != info_.series_uid) {
        res.status = 404;
        return;
      }
      const std::string b = "fakeboundary42";
      std::string body;
      size_t n = files_.size();
      if (wado == Wado::kPartial || wado == Wado::kTruncated) n -= 1;
      for (size_t i = 0; i < n; ++i) {
        body += "--" + b + "\r\nContent-Type: application/dicom\r\n\r\n";
        body += wado == Wado::kNotDicom ? std::string(files_[i].size(), 'x') : files_[i];
        body += "\r\n";
      }
      if (wado != Wado::kTruncated) body += "--" + b + "--\r\n";
      if (wado == Wado::kError500) {
        res.status = 500;
        res.set_content("database is locked", "text/plain");
        return;
      }
      if (wado == Wado::kSlow) std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      res.set_content(body, ("multipart/related; type=\"application/dicom\"; boundary=" + b).c_str());
    });
    svr_.Post("/dicom-web/studies", [this](const httplib::Request& req, httplib::Response& res) {
      ++stow_calls;
      last_stow_content_type = req.get_header_value("Content-Type");
      if (stow == Stow::kError409) {
        res.status = 409;
        res.set_content("conflict", "text/plain");
        return;
      }
      json failed_item = {{"00081197", dicom_attr("US", 272)}};
      json reply = stow == Stow::kFailed
                       ? json{{"00081198", {{"vr", "SQ"}, {"Value", json::array({failed_item})}}}}
                       : json{{"00081198", {{"vr", "SQ"}}},
                              {"00081199", {{"vr", "SQ"}, {"Value", json::array({json::object()})}}}};
      if (stow == Stow::kOk) {
        std::lock_guard<std::mutex> lock(mutex_);
        stored_ = true;
        stored_body_ = req.body;
        stored_content_type_ = req.get_header_value("Content-Type");
      }
      res.set_content(reply.dump(), "application/dicom+json");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~FakePacs() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/dicom-web"; }
  const io::DicomSeriesInfo& series() const { return info_; }
  void require_authorization(const std::string& header) {
    std::lock_guard<std::mutex> lock(mutex_);
    auth_ = header;
  }
  std::string stored_body() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stored_body_;
  }

  std::atomic<Wado> wado{Wado::kOk};
  std::atomic<Stow> stow{Stow::kOk};
  std::atomic<int> qido_calls{0}, wado_calls{0}, stow_calls{0};
  std::string last_stow_content_type;

 private:
  io::DicomSeriesInfo info_;
  std::vector<std::string> files_;
  httplib::Server svr_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  bool stored_ = false;
  std::string stored_body_, stored_content_type_, auth_;
};

DicomWebOptions url_only(const std::string& url) {
  DicomWebOptions o;
  o.url = url;
  return o;
}

DicomWebOptions options(const std::string& url, const fs::path& cache, int timeout = 10) {
  DicomWebOptions o;
  o.url = url;
  o.cache_dir = cache.string();
  o.timeout_seconds = timeout;
  return o;
}

// The status and message of the HttpError `f` throws.
template <typename F>
std::pair<int, std::string> http_error(F&& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return {e.status(), e.what()};
  }
  return {0, "no error"};
}

// Nothing but complete series (and the datastore's own folders) in the cache.
std::vector<std::string> cache_entries(const fs::path& cache) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(cache)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(MultipartRelated, SplitsPartsAndRejectsTruncatedReplies) {
  const std::string ct = "multipart/related; type=\"application/dicom\"; boundary=\"b1\"";
  const std::string body = "--b1\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b1\r\nContent-Type: application/dicom\r\n"
                           "Content-Length: 4\r\n\r\nB\r\nB\r\n--b1--\r\n";
  const auto parts = parse_multipart_related(body, ct);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "AAA");
  EXPECT_EQ(parts[1], "B\r\nB");  // Content-Length wins over a CRLF inside the data
  // A preamble before the first boundary is allowed; an unquoted boundary too.
  EXPECT_EQ(parse_multipart_related("preamble\r\n--b1\r\n\r\nX\r\n--b1--", "multipart/related; boundary=b1").size(), 1u);
  // Truncated: no closing delimiter, or a part shorter than its Content-Length.
  EXPECT_THROW(parse_multipart_related(body.substr(0, body.size() - 8), ct), std::runtime_error);
  EXPECT_THROW(parse_multipart_related("--b1\r\nContent-Length: 10\r\n\r\nAB", ct), std::runtime_error);
  EXPECT_THROW(parse_multipart_related("--b1\r\nContent-Length: 1\r\n\r\nAB\r\n--b1--", ct), std::runtime_error);
  EXPECT_THROW(parse_multipart_related(body, "application/dicom"), std::runtime_error);
  EXPECT_THROW(parse_multipart_related(body, "multipart/related"), std::runtime_error);
  EXPECT_THROW(parse_multipart_related("", ct), std::runtime_error);
}

TEST(DicomJson, ReadsQidoMetadataAndStowRepliesAndRefusesGarbage) {
  // IS values come as numbers (Orthanc) or strings; entries without UIDs are left out.
  const auto series = parse_series_search(R"([
    {"0020000D": {"vr": "UI", "Value": ["1.2"]}, "0020000E": {"vr": "UI", "Value": ["1.2.3"]},
     "00080060": {"vr": "CS", "Value": ["CT"]}, "00201209": {"vr": "IS", "Value": [3]}},
    {"0020000D": {"vr": "UI", "Value": ["1.2"]}, "0020000E": {"vr": "UI", "Value": ["1.2.4"]},
     "00201209": {"vr": "IS", "Value": ["12"]}, "0008103E": {"vr": "LO"}},
    {"0020000E": {"vr": "UI", "Value": ["1.2.5"]}}, 7, []])");
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].series_uid, "1.2.3");
  EXPECT_EQ(series[0].modality, "CT");
  EXPECT_EQ(series[0].instances, 3);
  EXPECT_EQ(series[1].instances, 12);
  EXPECT_EQ(series[1].description, "");
  EXPECT_TRUE(parse_series_search("").empty());  // 204-like empty reply
  EXPECT_THROW(parse_series_search("{\"a\": 1}"), std::runtime_error);
  EXPECT_THROW(parse_series_search("<html>"), std::runtime_error);

  const auto refs = parse_seg_references(R"([
    {"00080023": {"vr": "DA", "Value": ["20240102"]}, "00080033": {"vr": "TM", "Value": ["101500"]},
     "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}},
                                         {"0020000E": {"vr": "UI", "Value": ["1.2.4"]}}]}},
    {"00081115": {"vr": "SQ", "Value": "not a list"}}, {"00081115": 5}])");
  EXPECT_EQ(refs.series, (std::set<std::string>{"1.2.3", "1.2.4"}));
  EXPECT_EQ(refs.date_time, "20240102101500");
  EXPECT_THROW(parse_seg_references("{}"), std::runtime_error);

  EXPECT_EQ(stow_failure(R"({"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ", "Value": [{}]}})"), "");
  EXPECT_NE(stow_failure(R"({"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [272]}}]},
                            "00081199": {"vr": "SQ", "Value": [{}]}})").find("FailureReason 272"), std::string::npos);
  EXPECT_NE(stow_failure(R"({"00081198": {"vr": "SQ"}})").find("no ReferencedSOPSequence"), std::string::npos);
  EXPECT_NE(stow_failure("garbage").find("not DICOM JSON"), std::string::npos);
}

TEST(DicomWebClient, RefusesCredentialsInTheUrlAndOtherSchemes) {
  EXPECT_THROW(DicomWebClient(url_only("http://user:secret@pacs:8042/dicom-web")), InputError);
  EXPECT_THROW(DicomWebClient(url_only("ftp://pacs/dicom-web")), InputError);
  EXPECT_THROW(DicomWebClient(url_only("pacs:8042")), InputError);
  EXPECT_EQ(DicomWebClient(url_only("http://pacs:8042/dicom-web/")).url(), "http://pacs:8042/dicom-web");
}

TEST(DicomWebDatastore, ListsFetchesOnceAndReadsTheSeriesAsTheCliDoes) {
  FakePacs pacs;
  const auto cache = scratch("ok");
  DicomWebDatastore ds(options(pacs.url(), cache));
  const auto uid = pacs.series().series_uid;
  EXPECT_EQ(ds.image_ids(), std::vector<std::string>{uid});
  EXPECT_TRUE(ds.has_image(uid));
  EXPECT_FALSE(ds.has_label(uid, "final"));
  const auto path = ds.image_path(uid);
  EXPECT_EQ(fs::path(path), cache / uid);
  EXPECT_EQ(ds.image_path(uid), path);
  EXPECT_EQ(pacs.wado_calls.load(), 1) << "a cached series is not fetched again";
  const auto fetched = io::read_image(path), direct = io::read_image(kCt.string());
  ASSERT_EQ(fetched.size(), direct.size());
  EXPECT_EQ(fetched.format, "DICOM");
  EXPECT_EQ(fetched.series_uid, uid);
  EXPECT_EQ(fetched.pixel_type(), direct.pixel_type());
  ASSERT_EQ(fetched.num_bytes(), direct.num_bytes());
  EXPECT_EQ(0, std::memcmp(fetched.data(), direct.data(), direct.num_bytes())) << "same HU as the CLI";
  EXPECT_EQ(fetched.geometry().origin, direct.geometry().origin);
  const auto info = ds.image_info(uid);
  EXPECT_EQ(info["instances"], 3);
  EXPECT_EQ(info["cached"], true);
  EXPECT_EQ(ds.describe("stats")["total"], 1);
  EXPECT_EQ(http_error([&] { ds.image_path("1.2.999"); }).first, 404);
  EXPECT_EQ(http_error([&] { ds.add_image("x", "x.nii.gz", "abc"); }).first, 405);
}

TEST(DicomWebDatastore, BrokenSeriesRepliesGive502AndLeaveNoCacheEntry) {
  FakePacs pacs;
  const auto uid = pacs.series().series_uid;
  const std::pair<FakePacs::Wado, std::string> cases[] = {
      {FakePacs::Wado::kPartial, "2 of the 3 instances"},
      {FakePacs::Wado::kTruncated, "truncated"},
      {FakePacs::Wado::kError500, "HTTP 500: database is locked"},
      {FakePacs::Wado::kNotDicom, "not a DICOM file"},
  };
  for (const auto& [mode, expected] : cases) {
    const auto cache = scratch("broken");
    DicomWebDatastore ds(options(pacs.url(), cache));
    pacs.wado = mode;
    const auto [status, message] = http_error([&] { ds.image_path(uid); });
    EXPECT_EQ(status, 502) << message;
    EXPECT_NE(message.find(pacs.url()), std::string::npos) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_EQ(cache_entries(cache), (std::vector<std::string>{".medicosam", "labels"})) << message;
    pacs.wado = FakePacs::Wado::kOk;  // the PACS recovers: the same datastore fetches it whole
    EXPECT_NO_THROW(io::read_image(ds.image_path(uid)));
  }
}

TEST(DicomWebDatastore, SlowPacsGives504AndDownPacsGives502) {
  FakePacs pacs;
  const auto uid = pacs.series().series_uid;
  {
    const auto cache = scratch("slow");
    DicomWebDatastore ds(options(pacs.url(), cache, 1));
    ds.image_ids();  // the listing is quick
    pacs.wado = FakePacs::Wado::kSlow;
    const auto t0 = std::chrono::steady_clock::now();
    const auto [status, message] = http_error([&] { ds.image_path(uid); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(status, 504) << message;
    EXPECT_NE(message.find("no answer within 1 s"), std::string::npos) << message;
    EXPECT_LT(s, 2.4) << "the timeout bounds the wait";
    EXPECT_EQ(cache_entries(cache), (std::vector<std::string>{".medicosam", "labels"}));
  }
  const std::string down = "http://127.0.0.1:" + std::to_string(closed_port()) + "/dicom-web";
  DicomWebDatastore ds(options(down, scratch("down")));
  const auto [status, message] = http_error([&] { ds.image_ids(); });
  EXPECT_EQ(status, 502) << message;
  EXPECT_NE(message.find(down), std::string::npos) << message;
  EXPECT_NE(message.find("cannot connect"), std::string::npos) << message;
}

TEST(DicomWebDatastore, SavesFinalLabelsAsSegByStowAndKeepsNothingThePacsRefused) {
  FakePacs pacs;
  const auto cache = scratch("stow");
  DicomWebDatastore ds(options(pacs.url(), cache));
  const auto uid = pacs.series().series_uid;
  const auto vol = io::read_image(ds.image_path(uid));
  io::LabelMap labels(vol.geometry());
  for (int64_t y = 100; y < 200; ++y)
    for (int64_t x = 150; x < 260; ++x) labels.data()[labels.offset(x, y, 1)] = 1;
  labels.segments.push_back({});
  labels.segments.back().label = 1;
  labels.segments.back().name = "liver";

  for (auto mode : {FakePacs::Stow::kFailed, FakePacs::Stow::kError409}) {
    pacs.stow = mode;
    const auto [status, message] = http_error([&] { ds.save_label(uid, "final", labels, vol, json::object()); });
    EXPECT_EQ(status, 502) << message;
    EXPECT_NE(message.find(pacs.url()), std::string::npos) << message;
    EXPECT_NE(message.find(mode == FakePacs::Stow::kFailed ? "FailureReason 272" : "HTTP 409"), std::string::npos)
        << message;
    EXPECT_FALSE(fs::exists(ds.label_path(uid, "final"))) << "no local copy of a label the PACS refused";
    EXPECT_FALSE(ds.has_label(uid, "final"));
    EXPECT_TRUE(fs::is_empty(cache / ".medicosam" / "tmp")) << "no SEG left behind";
  }
  pacs.stow = FakePacs::Stow::kOk;
  ds.save_label(uid, "final", labels, vol, {{"source", "test"}});
  EXPECT_NE(pacs.last_stow_content_type.find("multipart/related; type=\"application/dicom\"; boundary="), std::string::npos);
  EXPECT_TRUE(fs::exists(ds.label_path(uid, "final")));
  EXPECT_TRUE(ds.has_label(uid, "final"));
  EXPECT_EQ(ds.label_info(uid, "final")["source"], "test");
  EXPECT_EQ(ds.describe("stats")["completed"], 1);
  // What went to the PACS is one complete SEG that reads back as the label.
  const auto body = pacs.stored_body();
  const auto ct = pacs.last_stow_content_type;
  const auto parts = parse_multipart_related(body, ct);
  ASSERT_EQ(parts.size(), 1u);
  const auto seg_path = scratch("seg") / "seg.dcm";
  write_file_atomic(seg_path.string(), parts[0]);
  const auto back = io::read_dicom_seg(seg_path.string(), vol.geometry());
  EXPECT_EQ(back.count(1), labels.count(1));
  ASSERT_FALSE(back.segments.empty());
  EXPECT_EQ(back.segments[0].name, "liver");
  // Another tag stays local (the PACS keeps the final labels only).
  const int stows = pacs.stow_calls;
  ds.save_label(uid, "draft", labels, vol, json::object());
  EXPECT_EQ(pacs.stow_calls.load(), stows);
  EXPECT_TRUE(ds.has_label(uid, "draft"));
  // A fresh datastore (new cache) sees the series as labelled through the SEG on the PACS.
  DicomWebDatastore fresh(options(pacs.url(), scratch("fresh")));
  EXPECT_TRUE(fresh.has_label(uid, "final"));
  EXPECT_EQ(fresh.label_tags(uid), std::vector<std::string>{"final"});
  // ... and serves it: the SEG fetched by WADO-RS, put on the series' grid, kept as the local copy.
  const auto copy = fresh.label_file(uid, "final");
  const auto fetched = io::read_label_map(copy);
  EXPECT_EQ(fetched.size(), labels.size());
  EXPECT_EQ(fetched.count(1), labels.count(1));
  EXPECT_EQ(fetched.at(200, 150, 1), 1);
  EXPECT_EQ(fresh.label_info(uid, "final")["source"], "DICOM SEG on the PACS");
  EXPECT_EQ(http_error([&] { fresh.label_file(uid, "draft"); }).first, 404);
}

TEST(DicomWebDatastore, SendsCredentialsAndNeverShowsThem) {
  FakePacs pacs;
  pacs.require_authorization("Bearer s3cret-token");
  {
    DicomWebDatastore ds(options(pacs.url(), scratch("noauth")));
    const auto [status, message] = http_error([&] { ds.image_ids(); });
    EXPECT_EQ(status, 502) << message;
    EXPECT_NE(message.find("refused our credentials"), std::string::npos) << message;
  }
  {
    auto o = options(pacs.url(), scratch("token"));
    o.token = "wrong-token";
    DicomWebDatastore ds(o);
    const auto [status, message] = http_error([&] { ds.image_ids(); });
    EXPECT_EQ(status, 502) << message;
    EXPECT_EQ(message.find("wrong-token"), std::string::npos) << message;
  }
  auto o = options(pacs.url(), scratch("token"));
  o.token = "s3cret-token";
  DicomWebDatastore ds(o);
  EXPECT_EQ(ds.image_ids().size(), 1u);
  EXPECT_NO_THROW(ds.image_path(pacs.series().series_uid));
  const std::string userpass = "annotator:pa ss:word";
  pacs.require_authorization("Basic " + base64_encode(reinterpret_cast<const uint8_t*>(userpass.data()), userpass.size()));
  auto b = options(pacs.url(), scratch("basic"));
  b.user = "annotator";
  b.password = "pa ss:word";
  EXPECT_EQ(DicomWebDatastore(b).image_ids().size(), 1u);
}

}  // namespace
}  // namespace medicosam::server
