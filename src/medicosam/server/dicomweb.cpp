#include "medicosam/server/dicomweb.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom.hpp"
#include "medicosam/io/dicom_seg.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/server/requests.hpp"

namespace medicosam::server {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kListingTtl = std::chrono::seconds(5);


std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A read-only mapping of a whole file (empty files map to an empty view).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw IoError("cannot open '" + path + "'");
    struct stat st {};
    ::fstat(fd_, &st);
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (data_ == MAP_FAILED) {
        ::close(fd_);
        throw IoError("cannot map '" + path + "'");
      }
    }
  }
  ~MappedFile() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view view() const { return data_ ? std::string_view(static_cast<const char*>(data_), size_) : std::string_view(); }

 private:
  int fd_ = -1;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

// ------------------------------------------------------------------ helpers

std::string default_studies_state_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "medicosam" / "serve").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "medicosam" / "serve").string();
  throw InputError("serve --studies: neither XDG_CACHE_HOME nor HOME is set; pass --state-dir DIR");
}

std::string default_studies_cache_dir(const std::string& state_dir, const std::string& url) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(url)));
  return (fs::path(state_dir) / "dicomweb" / hex).string();
}

// ------------------------------------------------------------------ client

DicomWebClient::DicomWebClient(DicomWebOptions options) : opt_(std::move(options)) {
  url_ = opt_.url;
  while (!url_.empty() && url_.back() == '/') url_.pop_back();
  const auto scheme_end = url_.find("://");
  const auto scheme = scheme_end == std::string::npos ? "" : lower(url_.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https")
    throw InputError("--studies '" + excerpt(opt_.url) + "': give the DICOMweb root as http://HOST:PORT/PATH or https://...");
  const auto path_start = url_.find('/', scheme_end + 3);
  origin_ = url_.substr(0, path_start);
  prefix_ = path_start == std::string::npos ? "" : url_.substr(path_start);
  if (origin_.find('@') != std::string::npos)
    throw InputError("--studies: put no credentials in the URL; use --studies-user with --studies-password-file, or --studies-token-file");
  if (origin_.size() <= scheme_end + 3) throw InputError("--studies '" + url_ + "': no host");
  if (!opt_.user.empty() && !opt_.token.empty()) throw InputError("--studies: give a user/password or a token, not both");
  if (opt_.timeout_seconds <= 0) opt_.timeout_seconds = 60;
}

namespace {

std::unique_ptr<httplib::Client> make_client(const std::string& origin, const DicomWebOptions& o) {
  auto c = std::make_unique<httplib::Client>(origin);
  c->set_connection_timeout(o.timeout_seconds, 0);
  c->set_read_timeout(o.timeout_seconds, 0);
  c->set_write_timeout(o.timeout_seconds, 0);
  c->set_keep_alive(false);
  c->set_follow_location(false);
  if (!o.token.empty()) {
    c->set_bearer_token_auth(o.token);
  } else if (!o.user.empty()) {
    c->set_basic_auth(o.user, o.password);
  }
  return c;
}

}  // namespace

void DicomWebClient::fail(const std::string& what, int http_status, const std::string& reason) const {
  throw HttpError(http_status, "PACS " + url_ + ": " + what + " failed: " + reason);
}

namespace {

// Why a request got no reply, and the status our client gets (502, or 504 for
// a timeout: a read that failed after the full timeout is a timeout).
std::pair<int, std::string> transport_failure(httplib::Error e, double seconds, int timeout) {
  switch (e) {
    case httplib::Error::Connection:
      return {502, "cannot connect (is the PACS running and the URL right?)"};
    case httplib::Error::ConnectionTimeout:
      return {504, "no connection within " + std::to_string(timeout) + " s"};
    case httplib::Error::Read:
      if (seconds >= timeout - 0.5) return {504, "no answer within " + std::to_string(timeout) + " s (--studies-timeout)"};
      return {502, "the connection was closed before the reply was complete"};
    case httplib::Error::Write:
      return {502, "the connection was closed while sending"};
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
    case httplib::Error::SSLLoadingCerts:
      return {502, "TLS failed (" + httplib::to_string(e) + ")"};
    default:
      return {502, httplib::to_string(e)};
  }
}

std::string status_reason(int status, const std::string& body) {
  std::string r = "HTTP " + std::to_string(status);
  if (status == 401 || status == 403) return r + " (the PACS refused our credentials)";
  const auto e = excerpt(body);
  return e.empty() ? r : r + ": " + e;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

std::vector<PacsSeries> DicomWebClient::search_series(const std::string& query) const {
  const std::string what = "searching series (QIDO-RS " + query + ")";
  auto c = make_client(origin_, opt_);
  const auto t0 = Clock::now();
  // Attributes that QIDO-RS does not have to return by default.
  const std::string path = prefix_ + "/series?" + query + (query.empty() ? "" : "&") +
                           "includefield=00201209&includefield=0008103E&includefield=00200011&includefield=00080021&"
                           "includefield=00080031";
  auto r = c->Get(path, {{"Accept", "application/dicom+json"}});
  if (!r) {
    const auto [st, why] = transport_failure(r.error(), seconds_since(t0), opt_.timeout_seconds);
    fail(what, st, why);
  }
  if (r->status == 204) return {};
  if (r->status != 200) fail(what, 502, status_reason(r->status, r->body));
  try {
    return parse_series_search(r->body);
  } catch (const std::runtime_error& e) {
    fail(what, 502, e.what());
  }
}

SegReferences DicomWebClient::seg_references(const std::string& study_uid, const std::string& series_uid) const {
  const std::string what = "reading the metadata of series " + series_uid + " (WADO-RS)";
  auto c = make_client(origin_, opt_);
  const auto t0 = Clock::now();
  auto r = c->Get(prefix_ + "/studies/" + study_uid + "/series/" + series_uid + "/metadata",
                  {{"Accept", "application/dicom+json"}});
  if (!r) {
    const auto [st, why] = transport_failure(r.error(), seconds_since(t0), opt_.timeout_seconds);
    fail(what, st, why);
  }
  if (r->status != 200) fail(what, 502, status_reason(r->status, r->body));
  try {
    return parse_seg_references(r->body);
  } catch (const std::runtime_error& e) {
    fail(what, 502, e.what());
  }
}

int64_t DicomWebClient::retrieve_series(const std::string& study_uid, const std::string& series_uid,
                                        const std::string& folder) const {
  const std::string what = "fetching series " + series_uid + " (WADO-RS)";
  const auto reply_path = (fs::path(folder) / ".reply").string();
  int status = 0;
  std::string content_type, error_body;
  std::FILE* out = std::fopen(reply_path.c_str(), "wb");
  if (!out) throw IoError("cannot write the series cache '" + folder + "'");
  bool write_failed = false;
  auto c = make_client(origin_, opt_);
  const auto t0 = Clock::now();
  auto r = c->Get(
      prefix_ + "/studies/" + study_uid + "/series/" + series_uid,
      {{"Accept", "multipart/related; type=\"application/dicom\""}},
      [&](const httplib::Response& res) {
        status = res.status;
        content_type = res.get_header_value("Content-Type");
        return true;
      },
      [&](const char* data, size_t n) {
        if (status != 200) {  // keep the start of an error reply for the message
          if (error_body.size() < 1000) error_body.append(data, std::min<size_t>(n, 1000));
          return true;
        }
        if (std::fwrite(data, 1, n, out) != n) {
          write_failed = true;
          return false;
        }
        return true;
      });
  const bool closed_ok = std::fclose(out) == 0;
  if (write_failed || !closed_ok) throw IoError("cannot write the series cache '" + folder + "' (disk full?)");
  if (!r) {
    const auto [st, why] = transport_failure(r.error(), seconds_since(t0), opt_.timeout_seconds);
    fail(what, st, why);
  }
  if (r->status != 200) fail(what, 502, status_reason(r->status, error_body));

  std::vector<std::string_view> parts;
  int64_t n = 0;
  {
    MappedFile reply(reply_path);
    try {
      parts = parse_multipart_related(reply.view(), content_type);
    } catch (const std::runtime_error& e) {
      fail(what, 502, std::string("incomplete or malformed reply: ") + e.what());
    }
    for (const auto& p : parts) {
      ++n;
      if (p.size() < 132 || p.substr(128, 4) != "DICM")
        fail(what, 502, "part " + std::to_string(n) + " of the reply is not a DICOM file");
      char name[32];
      std::snprintf(name, sizeof name, "%05lld.dcm", static_cast<long long>(n));
      const auto path = (fs::path(folder) / name).string();
      std::FILE* f = std::fopen(path.c_str(), "wb");
      const bool ok = f && std::fwrite(p.data(), 1, p.size(), f) == p.size();
      if (f && std::fclose(f) != 0) throw IoError("cannot write the series cache '" + folder + "' (disk full?)");
      if (!ok) throw IoError("cannot write the series cache '" + folder + "' (disk full?)");
    }
  }
  std::error_code ec;
  fs::remove(reply_path, ec);
  if (n == 0) fail(what, 502, "the PACS returned no instance");
  return n;
}

void DicomWebClient::store_instance(const std::string& dicom_bytes) const {
  const std::string what = "storing the DICOM SEG (STOW-RS)";
  const std::string boundary = "medicosam-" + random_hex(24);
  std::string body;
  body.reserve(dicom_bytes.size() + 200);
  body += "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n";
  body += dicom_bytes;
  body += "\r\n--" + boundary + "--\r\n";
  auto c = make_client(origin_, opt_);
  const auto t0 = Clock::now();
  auto r = c->Post(prefix_ + "/studies", {{"Accept", "application/dicom+json"}}, body,
                   ("multipart/related; type=\"application/dicom\"; boundary=" + boundary).c_str());
  if (!r) {
    const auto [st, why] = transport_failure(r.error(), seconds_since(t0), opt_.timeout_seconds);
    fail(what, st, why + " (the PACS may or may not have stored it)");
  }
  if (r->status != 200 && r->status != 202) fail(what, 502, status_reason(r->status, r->body));
  if (const auto why = stow_failure(r->body); !why.empty()) fail(what, 502, why);
}

// ------------------------------------------------------------------ datastore

namespace {

// Creates the cache folder and removes downloads a crash left behind.
std::string prepare_cache(const DicomWebOptions& o) {
  if (o.cache_dir.empty()) throw InputError("serve --studies: no cache folder");
  std::error_code ec;
  fs::create_directories(o.cache_dir, ec);
  if (ec) throw InputError("serve --studies: cannot create the cache folder '" + o.cache_dir + "': " + ec.message());
  for (const auto& e : fs::directory_iterator(o.cache_dir, ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(".download-", 0) == 0) fs::remove_all(e.path(), ec);
  }
  fs::remove_all(fs::path(o.cache_dir) / ".medicosam" / "tmp", ec);  // SEGs being written or read at a crash
  return o.cache_dir;
}

}  // namespace

DicomWebDatastore::DicomWebDatastore(DicomWebOptions options)
    : Datastore(prepare_cache(options)), client_(options), filters_(options.filters) {
  if (filters_.empty()) filters_ = {"Modality=CT", "Modality=MR"};
  std::error_code ec;
  fs::create_directories(fs::path(root()) / ".medicosam" / "tmp", ec);
}

std::string DicomWebDatastore::description() const { return "DICOMweb " + client_.url() + " (cache " + root() + ")"; }

std::shared_ptr<const DicomWebDatastore::Listing> DicomWebDatastore::listing(bool force) const {
  std::lock_guard<std::mutex> lock(listing_mutex_);
  const auto now = Clock::now();
  if (!force && listing_ && now - listing_->at < kListingTtl) return listing_;
  auto l = std::make_shared<Listing>();
  for (const auto& filter : filters_)
    for (auto& s : client_.search_series(filter)) {
      // UIDs go into paths and URLs: anything but digits and dots (and what ids allow) is skipped.
      if (s.modality == "SEG" || !is_valid_id(s.series_uid) || !is_valid_id(s.study_uid)) continue;
      l->series[s.series_uid] = std::move(s);
    }
  for (auto seg : client_.search_series("Modality=SEG")) {
    if (!is_valid_id(seg.series_uid) || !is_valid_id(seg.study_uid)) continue;
    auto it = seg_refs_.find(seg.series_uid);
    if (it == seg_refs_.end()) {  // a SEG series does not change: its metadata is read once
      auto refs = client_.seg_references(seg.study_uid, seg.series_uid);
      refs.date_time = std::max(refs.date_time, seg.date_time);
      it = seg_refs_.emplace(seg.series_uid, std::move(refs)).first;
    }
    seg.date_time = it->second.date_time;
    l->labelled.insert(it->second.series.begin(), it->second.series.end());
    for (const auto& ref : it->second.series) l->segs_of[ref].push_back(seg);
  }
  l->at = now;
  listing_ = l;
  return l;
}

bool DicomWebDatastore::cached(const std::string& id) const {
  const auto p = find_image(id);
  std::error_code ec;
  return p && fs::is_directory(*p, ec);
}

std::shared_ptr<std::mutex> DicomWebDatastore::fetch_lock(const std::string& id) const {
  std::lock_guard<std::mutex> lock(fetch_mutex_);
  auto& m = fetching_[id];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

std::vector<std::string> DicomWebDatastore::image_ids() const {
  std::vector<std::string> ids;
  for (const auto& [uid, _] : listing()->series) ids.push_back(uid);
  return ids;
}

bool DicomWebDatastore::has_image(const std::string& id) const {
  check_id(id, "image id");
  return cached(id) || listing()->series.count(id) > 0;
}

std::string DicomWebDatastore::image_path(const std::string& id) const {
  check_id(id, "image id");
  if (cached(id)) return *find_image(id);
  const auto lock = fetch_lock(id);
  std::lock_guard<std::mutex> guard(*lock);
  if (cached(id)) return *find_image(id);  // another request fetched it meanwhile
  auto l = listing();
  auto it = l->series.find(id);
  if (it == l->series.end()) {
    l = listing(true);
    it = l->series.find(id);
    if (it == l->series.end())
      throw HttpError(404, "no series '" + id + "' on the PACS " + client_.url() + " (among the series the filter lists)");
  }
  const PacsSeries s = it->second;
  const auto tmp = fs::path(root()) / (".download-" + id + "-" + random_hex(8));
  const auto t0 = Clock::now();
  try {
    fs::create_directories(tmp);
    const auto n = client_.retrieve_series(s.study_uid, id, tmp.string());
    if (s.instances >= 0 && n != s.instances)
      throw HttpError(502, "PACS " + client_.url() + ": fetching series " + id + " (WADO-RS) failed: incomplete series: " +
                               std::to_string(n) + " of the " + std::to_string(s.instances) + " instances QIDO-RS lists");
    std::vector<io::DicomSeriesInfo> found;
    try {
      found = io::list_dicom_series(tmp.string());
    } catch (const Error& e) {
      throw HttpError(502, "PACS " + client_.url() + ": fetching series " + id + " (WADO-RS) failed: the instances cannot be read");
    }
    if (found.size() != 1 || found[0].series_uid != id || found[0].num_files != n)
      throw HttpError(502, "PACS " + client_.url() + ": fetching series " + id +
                               " (WADO-RS) failed: the reply holds instances of other series or unreadable files");
    fs::rename(tmp, fs::path(root()) / id);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(root()) / id, ec)) bytes += e.file_size(ec);
  spdlog::info("dicomweb: series {} fetched from {} ({} instances, {:.1f} MB) in {:.0f} ms", id, client_.url(),
               s.instances, bytes / 1e6, seconds_since(t0) * 1000);
  return (fs::path(root()) / id).string();
}

void DicomWebDatastore::add_image(const std::string&, const std::string&, const std::string&) {
  throw HttpError(405, "the DICOMweb datastore takes no image uploads: store the series in the PACS " + client_.url());
}

void DicomWebDatastore::delete_image(const std::string&) {
  throw HttpError(405, "the DICOMweb datastore does not delete series: that is the PACS's business (" + client_.url() + ")");
}

std::vector<std::string> DicomWebDatastore::label_tags(const std::string& id) const {
  auto tags = local_label_tags(id);
  if (listing()->labelled.count(id) && std::find(tags.begin(), tags.end(), "final") == tags.end()) {
    tags.push_back("final");
    std::sort(tags.begin(), tags.end());
  }
  return tags;
}

bool DicomWebDatastore::has_label(const std::string& id, const std::string& tag) const {
  if (has_local_label(id, tag)) return true;
  return tag == "final" && listing()->labelled.count(id) > 0;
}

json DicomWebDatastore::image_info(const std::string& id) const {
  check_id(id, "image id");
  const auto l = listing();
  const auto it = l->series.find(id);
  const bool in_cache = cached(id);
  if (it == l->series.end() && !in_cache) throw HttpError(404, "no series '" + id + "' on the PACS " + client_.url());
  json info = read_info(id + ".json");
  info["name"] = id;
  info["ext"] = "";
  info["cached"] = in_cache;
  info["ts"] = 0.0;
  if (in_cache) {
    std::error_code ec;
    const auto t = fs::last_write_time(fs::path(root()) / id, ec);
    const auto sys = std::chrono::time_point_cast<std::chrono::system_clock::duration>(
        t - fs::file_time_type::clock::now() + std::chrono::system_clock::now());
    info["ts"] = std::chrono::duration<double>(sys.time_since_epoch()).count();
  }
  if (it != l->series.end()) {
    info["study_uid"] = it->second.study_uid;
    info["modality"] = it->second.modality;
    info["series_description"] = it->second.description;
    info["series_number"] = it->second.series_number;
    if (it->second.instances >= 0) info["instances"] = it->second.instances;
  }
  info["labelled_in_pacs"] = l->labelled.count(id) > 0;
  return info;
}

void DicomWebDatastore::save_label(const std::string& id, const std::string& tag, const io::LabelMap& labels,
                                   const io::Volume& source, const json& info) {
  if (tag != "final") return Datastore::save_label(id, tag, labels, source, info);
  const auto series_dir = image_path(id);
  std::string bytes, seg_series, seg_study;
  {
    const ScratchPath tmp((fs::path(root()) / ".medicosam" / "tmp" / ("seg-" + random_hex(16) + ".dcm")).string());
    io::write_segmentation(tmp.path(), labels, source, series_dir);
    bytes = read_file(tmp.path());
    try {
      const auto s = io::list_dicom_series(tmp.path());
      if (!s.empty()) seg_series = s[0].series_uid, seg_study = s[0].study_uid;
    } catch (const Error&) {
    }
  }
  const auto t0 = Clock::now();
  client_.store_instance(bytes);  // throws (502/504): nothing local is written then
  spdlog::info("dicomweb: label of series {} stored on {} as DICOM SEG series {} ({} bytes) in {:.0f} ms", id,
               client_.url(), seg_series, bytes.size(), seconds_since(t0) * 1000);
  json merged = info;
  merged["dicom_seg"] = {{"stored_to", client_.url()}, {"series_uid", seg_series}, {"bytes", bytes.size()}};
  Datastore::save_label(id, tag, labels, source, merged);
  PacsSeries seg;
  seg.study_uid = seg_study;
  seg.series_uid = seg_series;
  seg.modality = "SEG";
  {  // its ContentDate + ContentTime are about now (local time, as DICOM dates are)
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
    seg.date_time = buf;
  }
  remember_seg(seg, id);
}

void DicomWebDatastore::remember_seg(const PacsSeries& seg, const std::string& referenced) {
  std::lock_guard<std::mutex> lock(listing_mutex_);
  if (!seg.series_uid.empty()) {
    auto& refs = seg_refs_[seg.series_uid];
    refs.series.insert(referenced);
    refs.date_time = seg.date_time;
  }
  if (listing_) {
    auto l = std::make_shared<Listing>(*listing_);
    l->labelled.insert(referenced);
    if (!seg.series_uid.empty()) l->segs_of[referenced].push_back(seg);
    listing_ = l;
  }
}

std::string DicomWebDatastore::label_file(const std::string& id, const std::string& tag) {
  check_id(id, "image id");
  check_id(tag, "label tag");
  if (has_local_label(id, tag)) return label_path(id, tag);
  const auto l = listing();
  const auto it = l->segs_of.find(id);
  if (tag != "final" || it == l->segs_of.end() || it->second.empty())
    throw HttpError(404, "image '" + id + "' has no label '" + tag + "'");
  // The newest SEG (by SeriesDate/Time; among equals the last listed).
  PacsSeries seg = it->second.front();
  for (const auto& s : it->second)
    if (s.date_time >= seg.date_time) seg = s;
  const auto geometry = io::probe_image(image_path(id)).geometry;  // the SEG goes onto the series' grid
  const ScratchPath scratch((fs::path(root()) / ".medicosam" / "tmp" / ("pacs-seg-" + random_hex(16))).string());
  const fs::path tmp = scratch.path();
  {
    fs::create_directories(tmp);
    client_.retrieve_series(seg.study_uid, seg.series_uid, tmp.string());
    io::LabelMap labels;
    try {
      labels = io::read_dicom_seg((tmp / "00001.dcm").string(), geometry);
    } catch (const FormatError& e) {
      throw HttpError(502, "PACS " + client_.url() + ": the SEG series " + seg.series_uid + " that references " + id +
                               " cannot be read onto its grid");
    }
    const auto path = label_path(id, tag);
    fs::create_directories(fs::path(path).parent_path());
    io::write_label_map(path, labels);
    json names = json::array();
    for (const auto& s : labels.segments) names.push_back({{"idx", s.label}, {"name", s.name}});
    set_label_info(id, tag, {{"label_info", names}, {"source", "DICOM SEG on the PACS"}, {"dicom_seg", {{"series_uid", seg.series_uid}}}});
    spdlog::info("dicomweb: label of series {} taken from SEG series {} on {}", id, seg.series_uid, client_.url());
  }
  return label_path(id, tag);
}

json DicomWebDatastore::describe(const std::string& output) const {
  if (output == "train") {
    json list = json::array();
    for (const auto& id : image_ids())
      if (has_local_label(id, "final") && cached(id))
        list.push_back({{"image", *find_image(id)}, {"label", label_path(id, "final")}});
    return list;
  }
  json d = Datastore::describe(output);
  if (output != "stats") {
    d["name"] = client_.url();
    d["description"] = "medicosam DICOMweb datastore (PACS " + client_.url() + ")";
  }
  return d;
}

}  // namespace medicosam::server
