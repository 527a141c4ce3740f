#pragma once
// Parsing what a PACS answers over DICOMweb (PROTOCOLS.md §E): multipart/
// related bodies (WADO-RS), QIDO-RS series lists and series metadata (DICOM
// JSON), STOW-RS replies. A PACS is input we do not control, so these are
// kept free of HTTP, files and DCMTK: the fuzz target builds them alone
// (fuzz/server_dicomweb_fuzzer.cpp). Every failure is a std::runtime_error
// with a short reason (the caller adds the PACS URL and the step).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace medicosam::server {

// One series as QIDO-RS lists it.
struct PacsSeries {
  std::string study_uid, series_uid, modality, description;
  int64_t instances = -1;  // NumberOfSeriesRelatedInstances, -1 if not given
  int series_number = 0;
  std::string date_time;  // SeriesDate + SeriesTime ("" if not given); SEGs: ContentDate + ContentTime
};

// The parts of a multipart/related body (RFC 2387) as views into `body`,
// given the reply's Content-Type (which names the boundary). Throws
// std::runtime_error with a short reason (no boundary, a part without
// headers, no closing delimiter: a truncated reply, a Content-Length of a
// part that disagrees with its delimiter).
std::vector<std::string_view> parse_multipart_related(std::string_view body, const std::string& content_type);

// A QIDO-RS series search reply (a DICOM JSON array; empty body = none).
// Entries without a study or series UID are left out.
std::vector<PacsSeries> parse_series_search(std::string_view body);

// What the instances of a SEG series reference (ReferencedSeriesSequence
// 0008,1115 -> SeriesInstanceUID) and their newest ContentDate + ContentTime,
// from its WADO-RS metadata (a DICOM JSON array).
struct SegReferences {
  std::set<std::string> series;
  std::string date_time;
};
SegReferences parse_seg_references(std::string_view metadata_body);

// "" if a STOW-RS reply says the instance was stored (a ReferencedSOPSequence
// item and no FailedSOPSequence item), else why not.
std::string stow_failure(std::string_view reply_body);

// The first value of a DICOM JSON attribute as a string ("" if absent).
std::string dicom_json_string(const nlohmann::json& item, const char* tag);

// Printable, single-line, at most 300 characters: what a PACS said, for a message.
std::string excerpt(std::string_view text);

}  // namespace medicosam::server
