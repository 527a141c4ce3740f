#pragma once
// The DICOMweb datastore (`medicosam serve --studies URL`): images are the
// series of a PACS (Orthanc, dcm4chee, a cloud DICOM store), found by QIDO-RS,
// fetched once by WADO-RS into a local cache and read by our DICOM reader; a
// saved "final" label goes back to the PACS as a DICOM SEG by STOW-RS. The
// image id is the SeriesInstanceUID (MONAI Label's convention, PROTOCOLS.md
// §A, §E); a series counts as labelled when a SEG on the PACS references it
// (ReferencedSeriesSequence).
//
// Every failure of the PACS (down, slow, 4xx/5xx, a partial series, a refused
// STOW) is an HttpError 502 (504 for a timeout) naming the PACS URL and what
// failed. A series is downloaded into a temporary folder, checked (every part
// is DICOM of that series, the count matches QIDO's
// NumberOfSeriesRelatedInstances) and only then renamed into the cache, so
// the cache never holds a partial series; a SEG is written completely before
// it is sent, and the local copy of the label is written only after the PACS
// accepted it. Secrets (password, token) are never logged or shown.
//
// Torch-free; HTTP through cpp-httplib's client.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "medicosam/server/datastore.hpp"
#include "medicosam/server/dicomweb_parse.hpp"

namespace medicosam::server {

struct DicomWebOptions {
  std::string url;  // e.g. http://127.0.0.1:8042/dicom-web (no credentials in it)
  // QIDO-RS series queries ("Modality=CT", "Modality=MR&StudyDate=20240101-"),
  // each run on its own and the results merged. Empty = Modality=CT and Modality=MR.
  std::vector<std::string> filters;
  std::string user, password;  // HTTP basic authentication (both or neither)
  std::string token;           // or a bearer token
  std::string cache_dir;       // the local cache (series, label copies, infos)
  int timeout_seconds = 60;    // connecting / waiting for data from the PACS (each read)
};

// The state folder `serve --studies` uses when --state-dir is not given:
// $XDG_CACHE_HOME/medicosam/serve (else ~/.cache/medicosam/serve).
std::string default_studies_state_dir();
// The default cache folder of a PACS URL: STATE/dicomweb/<16 hex digits of
// a hash of the URL>.
std::string default_studies_cache_dir(const std::string& state_dir, const std::string& url);

// HTTP to the PACS: QIDO-RS, WADO-RS and STOW-RS with bounded timeouts.
// Thread-safe (a client per call).
class DicomWebClient {
 public:
  explicit DicomWebClient(DicomWebOptions options);
  const std::string& url() const { return url_; }

  // GET {url}/series?{query} (application/dicom+json).
  std::vector<PacsSeries> search_series(const std::string& query) const;
  // GET {url}/studies/{st}/series/{se}/metadata of a SEG series: what it references.
  SegReferences seg_references(const std::string& study_uid, const std::string& series_uid) const;
  // GET {url}/studies/{st}/series/{se} (multipart/related application/dicom)
  // into `folder` (which must exist and be empty) as 00001.dcm, 00002.dcm, ...
  // Returns the number of instances. The reply is streamed to disk.
  int64_t retrieve_series(const std::string& study_uid, const std::string& series_uid,
                          const std::string& folder) const;
  // POST {url}/studies with one application/dicom part; throws unless the
  // PACS stored it (HTTP 200/202 and no FailedSOPSequence item).
  void store_instance(const std::string& dicom_bytes) const;

 private:
  [[noreturn]] void fail(const std::string& what, int http_status, const std::string& reason) const;
  DicomWebOptions opt_;
  std::string url_;     // as given, without a trailing '/'
  std::string origin_;  // scheme://host:port
  std::string prefix_;  // path prefix, e.g. /dicom-web
};

class DicomWebDatastore : public Datastore {
 public:
  // Creates the cache folder; removes downloads a crash left behind. Does not
  // contact the PACS yet (the first listing does).
  explicit DicomWebDatastore(DicomWebOptions options);

  std::string description() const override;
  std::vector<std::string> image_ids() const override;
  bool has_image(const std::string& id) const override;
  // The cached series folder; fetched from the PACS first if not cached.
  std::string image_path(const std::string& id) const override;
  void add_image(const std::string& id, const std::string& filename, const std::string& bytes) override;
  void delete_image(const std::string& id) override;
  std::vector<std::string> label_tags(const std::string& id) const override;
  bool has_label(const std::string& id, const std::string& tag) const override;
  nlohmann::json image_info(const std::string& id) const override;
  // A "final" label only on the PACS (a SEG saved elsewhere, or before the
  // cache was emptied) is fetched by WADO-RS, read onto the series' grid and
  // kept as the local copy.
  std::string label_file(const std::string& id, const std::string& tag) override;
  // "final": DICOM SEG (our DCMTK writer, referencing the cached series) sent
  // by STOW-RS, then the local copy; other tags: the local copy only.
  void save_label(const std::string& id, const std::string& tag, const io::LabelMap& labels,
                  const io::Volume& source, const nlohmann::json& info) override;
  nlohmann::json describe(const std::string& output) const override;

  const DicomWebClient& client() const { return client_; }

 private:
  struct Listing {
    std::map<std::string, PacsSeries> series;  // by SeriesInstanceUID
    std::set<std::string> labelled;            // series some SEG references
    std::map<std::string, std::vector<PacsSeries>> segs_of;  // series -> the SEGs referencing it
    std::chrono::steady_clock::time_point at;
  };
  // The PACS's series and SEG references, refreshed when older than a few
  // seconds (or `force`). HttpError 502/504 when the PACS does not answer.
  std::shared_ptr<const Listing> listing(bool force = false) const;
  bool cached(const std::string& id) const;
  std::shared_ptr<std::mutex> fetch_lock(const std::string& id) const;

  DicomWebClient client_;
  std::vector<std::string> filters_;
  mutable std::mutex listing_mutex_;
  mutable std::shared_ptr<const Listing> listing_;
  mutable std::map<std::string, SegReferences> seg_refs_;  // by SEG SeriesInstanceUID
  void remember_seg(const PacsSeries& seg, const std::string& referenced);  // after our STOW
  mutable std::mutex fetch_mutex_;
  mutable std::map<std::string, std::shared_ptr<std::mutex>> fetching_;
};

}  // namespace medicosam::server
