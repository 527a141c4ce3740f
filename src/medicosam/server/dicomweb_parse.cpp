#include "medicosam/server/dicomweb_parse.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace medicosam::server {
using nlohmann::json;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// An IS/US attribute (DICOM JSON allows a number or a string); `fallback` if absent.
int64_t dicom_int(const json& item, const char* tag, int64_t fallback) {
  const auto s = dicom_json_string(item, tag);
  if (s.empty()) return fallback;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return fallback;
  }
}

// The items of a sequence attribute (an empty array if absent or malformed).
const json& sequence_items(const json& item, const char* tag) {
  static const json none = json::array();
  if (!item.is_object()) return none;
  const auto it = item.find(tag);
  if (it == item.end() || !it->is_object()) return none;
  const auto v = it->find("Value");
  if (v == it->end() || !v->is_array()) return none;
  return *v;
}

json parse_json(std::string_view body, const char* what) {
  try {
    return json::parse(body.begin(), body.end());
  } catch (const json::exception&) {
    throw std::runtime_error(std::string(what) + " is not JSON");
  }
}

}  // namespace

std::string dicom_json_string(const json& item, const char* tag) {
  if (!item.is_object()) return "";
  const auto it = item.find(tag);
  if (it == item.end() || !it->is_object()) return "";
  const auto v = it->find("Value");
  if (v == it->end() || !v->is_array() || v->empty()) return "";
  const auto& first = (*v)[0];
  if (first.is_string()) return first.get<std::string>();
  if (first.is_number_integer()) return std::to_string(first.get<int64_t>());
  if (first.is_number()) return std::to_string(first.get<double>());
  return "";
}

std::string excerpt(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 300))
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : (std::isprint(c) ? static_cast<char>(c) : '?');
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::vector<std::string_view> parse_multipart_related(std::string_view body, const std::string& content_type) {
  const auto ct = lower(content_type);
  if (ct.rfind("multipart/", 0) != 0) throw std::runtime_error("the reply is '" + excerpt(content_type) + "', not multipart");
  const auto b = ct.find("boundary=");
  if (b == std::string::npos) throw std::runtime_error("the multipart reply names no boundary");
  std::string boundary = content_type.substr(b + 9);  // original case
  if (!boundary.empty() && boundary[0] == '"') {
    const auto e = boundary.find('"', 1);
    if (e == std::string::npos) throw std::runtime_error("the multipart boundary is not closed");
    boundary = boundary.substr(1, e - 1);
  } else {
    const auto e = boundary.find_first_of("; \t");
    if (e != std::string::npos) boundary.resize(e);
  }
  if (boundary.empty() || boundary.size() > 200) throw std::runtime_error("the multipart boundary is empty or too long");
  const std::string delim = "--" + boundary;

  std::vector<std::string_view> parts;
  // The first delimiter: at the start, or after a preamble ending in CRLF.
  size_t pos = 0;
  if (body.substr(0, delim.size()) != delim) {
    pos = body.find("\r\n" + delim);
    if (pos == std::string_view::npos) throw std::runtime_error("the reply holds no multipart boundary");
    pos += 2;
  }
  while (true) {
    pos += delim.size();
    if (body.substr(pos, 2) == "--") return parts;  // closing delimiter
    // Transport padding, then CRLF.
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") throw std::runtime_error("the reply ends inside a multipart boundary (truncated)");
    pos += 2;
    const auto hdr_end = body.find("\r\n\r\n", pos);
    size_t content = 0;
    std::string headers;
    if (body.substr(pos, 2) == "\r\n") {  // a part without headers
      content = pos + 2;
    } else {
      if (hdr_end == std::string_view::npos) throw std::runtime_error("part " + std::to_string(parts.size() + 1) + " ends inside its headers (truncated)");
      headers = lower(std::string(body.substr(pos, hdr_end - pos)));
      content = hdr_end + 4;
    }
    size_t end = std::string_view::npos;
    const std::string next = "\r\n" + delim;
    const auto cl = headers.find("content-length:");
    if (cl != std::string::npos) {
      uint64_t n = 0;
      try {
        n = std::stoull(headers.substr(cl + 15));
      } catch (const std::exception&) {
        throw std::runtime_error("part " + std::to_string(parts.size() + 1) + " has an invalid Content-Length");
      }
      if (n > body.size() - content) throw std::runtime_error("part " + std::to_string(parts.size() + 1) + " is shorter than its Content-Length (truncated)");
      end = content + n;
      if (body.substr(end, next.size()) != next)
        throw std::runtime_error("part " + std::to_string(parts.size() + 1) + " is not followed by the boundary its Content-Length announces");
    } else {
      end = body.find(next, content);
      if (end == std::string_view::npos) throw std::runtime_error("part " + std::to_string(parts.size() + 1) + " has no closing boundary (truncated)");
    }
    parts.push_back(body.substr(content, end - content));
    pos = end + 2;
  }
}

std::vector<PacsSeries> parse_series_search(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  const auto j = parse_json(body, "the reply");
  if (!j.is_array()) throw std::runtime_error("the reply is not a JSON array");
  std::vector<PacsSeries> out;
  for (const auto& item : j) {
    PacsSeries s;
    s.study_uid = dicom_json_string(item, "0020000D");
    s.series_uid = dicom_json_string(item, "0020000E");
    s.modality = dicom_json_string(item, "00080060");
    s.description = dicom_json_string(item, "0008103E");
    s.instances = dicom_int(item, "00201209", -1);
    s.series_number = static_cast<int>(std::clamp<int64_t>(dicom_int(item, "00200011", 0), -1000000, 1000000));
    s.date_time = dicom_json_string(item, "00080021") + dicom_json_string(item, "00080031");
    if (s.study_uid.empty() || s.series_uid.empty()) continue;
    out.push_back(std::move(s));
  }
  return out;
}

SegReferences parse_seg_references(std::string_view metadata_body) {
  const auto j = parse_json(metadata_body, "the metadata");
  if (!j.is_array()) throw std::runtime_error("the metadata is not a JSON array");
  SegReferences refs;
  for (const auto& instance : j) {
    const auto content = dicom_json_string(instance, "00080023") + dicom_json_string(instance, "00080033");
    refs.date_time = std::max(refs.date_time, content);
    for (const auto& item : sequence_items(instance, "00081115")) {  // ReferencedSeriesSequence
      const auto uid = dicom_json_string(item, "0020000E");
      if (!uid.empty()) refs.series.insert(uid);
    }
  }
  return refs;
}

std::string stow_failure(std::string_view reply_body) {
  json j;
  try {
    j = json::parse(reply_body.begin(), reply_body.end());
  } catch (const json::exception&) {
    return "the reply is not DICOM JSON";
  }
  const auto& failed = sequence_items(j, "00081198");  // FailedSOPSequence
  if (!failed.empty()) {
    const auto reason = dicom_json_string(failed[0], "00081197");  // FailureReason
    return "the PACS refused the SEG (FailedSOPSequence" + (reason.empty() ? std::string() : ", FailureReason " + reason) + ")";
  }
  if (sequence_items(j, "00081199").empty())  // ReferencedSOPSequence
    return "the PACS did not confirm that it stored the SEG (no ReferencedSOPSequence)";
  return "";
}

}  // namespace medicosam::server
