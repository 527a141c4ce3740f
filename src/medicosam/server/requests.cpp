#include "medicosam/server/requests.hpp"

#include <filesystem>
#include <random>

#include <cctype>
#include <cmath>

namespace medicosam::server {
using nlohmann::json;

bool is_valid_id(const std::string& id) {
  if (id.empty() || id.size() > 200 || id[0] == '.' || id.find("..") != std::string::npos) return false;
  for (unsigned char c : id) {
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

void check_id(const std::string& id, const std::string& what) {
  if (!is_valid_id(id)) {
    std::string shown;
    for (unsigned char c : id.substr(0, 60)) shown += std::isprint(c) ? static_cast<char>(c) : '?';
    throw HttpError(400, what + " '" + shown +
                             "' is not valid: use 1-200 letters, digits, '.', '_' or '-' (no "
                             "leading '.', no '..', no slashes)");
  }
}

json parse_json_object(const std::string& text, const std::string& what) {
  json j;
  try {
    j = json::parse(text.empty() ? std::string("{}") : text);
  } catch (const json::exception& e) {
    throw HttpError(400, what + " is not valid JSON: " + std::string(e.what()).substr(0, 200));
  }
  if (!j.is_object()) throw HttpError(400, what + " must be a JSON object");
  return j;
}

namespace {

int64_t as_int(const json& v, const std::string& what) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && std::abs(d) < 1e15) return static_cast<int64_t>(std::llround(d));
  }
  if (v.is_string()) {  // some clients send numbers as strings
    try {
      size_t used = 0;
      const auto s = v.get<std::string>();
      const long long x = std::stoll(s, &used);
      if (used == s.size()) return x;
    } catch (const std::exception&) {
    }
  }
  throw HttpError(400, what + " must be an integer");
}

double as_number(const json& v, const std::string& what) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (std::isfinite(d)) return d;
  }
  throw HttpError(400, what + " must be a finite number");
}

Voxel as_voxel(const json& v, const std::string& what) {
  if (!v.is_array() || v.size() != 3) throw HttpError(400, what + " must be [i, j, k]");
  return {as_int(v[0], what), as_int(v[1], what), as_int(v[2], what)};
}

std::vector<Voxel> voxel_list(const json& p, const char* key) {
  std::vector<Voxel> out;
  if (!p.contains(key) || p[key].is_null()) return out;
  const auto& v = p[key];
  if (!v.is_array()) throw HttpError(400, std::string("\"") + key + "\" must be a list of [i, j, k]");
  if (v.size() > 10000) throw HttpError(400, std::string("\"") + key + "\" has too many points");
  for (size_t n = 0; n < v.size(); ++n)
    out.push_back(as_voxel(v[n], std::string("\"") + key + "\"[" + std::to_string(n) + "]"));
  return out;
}

bool as_bool(const json& v, const std::string& what) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "true" || s == "1") return true;
    if (s == "false" || s == "0") return false;
  }
  throw HttpError(400, what + " must be true or false");
}

}  // namespace

InferParams parse_infer_params(const json& p) {
  if (!p.is_object()) throw HttpError(400, "params must be a JSON object");
  InferParams r;
  r.raw = p;
  r.foreground = voxel_list(p, "foreground");
  r.background = voxel_list(p, "background");
  if (p.contains("roi") && !p["roi"].is_null() && !(p["roi"].is_array() && p["roi"].empty())) {
    const auto& v = p["roi"];
    if (!v.is_array() || v.size() != 6) throw HttpError(400, "\"roi\" must be [i0, i1, j0, j1, k0, k1]");
    std::array<int64_t, 6> roi{};
    for (int n = 0; n < 6; ++n) roi[n] = as_int(v[n], "\"roi\"");
    for (int d = 0; d < 3; ++d)  // Slicer's RAS->IJK can invert a pair
      if (roi[2 * d] > roi[2 * d + 1]) std::swap(roi[2 * d], roi[2 * d + 1]);
    r.roi = roi;
  }
  if (p.contains("slice") && !p["slice"].is_null()) r.slice = as_int(p["slice"], "\"slice\"");
  if (p.contains("label") && p["label"].is_string()) r.label = p["label"].get<std::string>().substr(0, 200);
  if (p.contains("result_extension") && p["result_extension"].is_string()) {
    const auto e = p["result_extension"].get<std::string>();
    if (e != ".nii.gz" && e != ".nii" && e != ".nrrd" && e != ".seg.nrrd")
      throw HttpError(400, "\"result_extension\" must be .nii.gz, .nii, .nrrd or .seg.nrrd");
    r.result_extension = e;
  }
  if (p.contains("result_dtype") && p["result_dtype"].is_string()) {
    const auto d = p["result_dtype"].get<std::string>();
    if (d != "uint8" && d != "uint16") throw HttpError(400, "\"result_dtype\" must be uint8 or uint16");
    r.result_dtype = d;
  }
  return r;
}

uint64_t parse_size(const std::string& text, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = used ? text.substr(used) : "";
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'B' && unit.size() > 1) unit.pop_back();
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  if (unit == "K") mult = 1024.0;
  if (unit == "M") mult = 1024.0 * 1024;
  if (unit == "G") mult = 1024.0 * 1024 * 1024;
  if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  if (!used || mult == 0 || !std::isfinite(v) || v < 0 || v * mult > 1.8e19)
    throw HttpError(400, what + " '" + text + "': expected a size such as 512M or 2G");
  return static_cast<uint64_t>(v * mult);
}

std::vector<uint16_t> decode_bin_label(const std::string& bytes, const std::array<int64_t, 3>& size) {
  const uint64_t n = static_cast<uint64_t>(size[0]) * size[1] * size[2];
  if (bytes.size() != n) {
    throw HttpError(400, "the .bin label has " + std::to_string(bytes.size()) + " bytes, the image has " +
                             std::to_string(n) + " voxels (" + std::to_string(size[0]) + "x" +
                             std::to_string(size[1]) + "x" + std::to_string(size[2]) + ")");
  }
  std::vector<uint16_t> out(n);
  for (uint64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(bytes[i]);
  return out;
}

PointRequest parse_point_request(const json& b) {
  PointRequest r;
  if (b.contains("voxel")) {
    r.voxel = as_voxel(b["voxel"], "\"voxel\"");
  } else {
    if (!b.contains("slice") || !b.contains("x") || !b.contains("y"))
      throw HttpError(400, "a point needs \"voxel\": [i, j, k] or \"slice\", \"x\" and \"y\"");
    r.slice = static_cast<int>(as_int(b["slice"], "\"slice\""));
    r.x = as_number(b["x"], "\"x\"");
    r.y = as_number(b["y"], "\"y\"");
  }
  if (b.contains("positive")) r.positive = as_bool(b["positive"], "\"positive\"");
  if (b.contains("include_interaction")) r.positive = as_bool(b["include_interaction"], "\"include_interaction\"");
  return r;
}

BoxRequest parse_box_request(const json& b) {
  BoxRequest r;
  if (b.contains("voxels")) {
    const auto& v = b["voxels"];
    if (!v.is_array() || v.size() != 2) throw HttpError(400, "\"voxels\" must be [[i0, j0, k0], [i1, j1, k1]]");
    r.voxels = std::array<Voxel, 2>{as_voxel(v[0], "\"voxels\"[0]"), as_voxel(v[1], "\"voxels\"[1]")};
  } else {
    if (!b.contains("slice") || !b.contains("box"))
      throw HttpError(400, "a box needs \"voxels\" (two corners) or \"slice\" and \"box\": [x0, y0, x1, y1]");
    r.slice = static_cast<int>(as_int(b["slice"], "\"slice\""));
    const auto& v = b["box"];
    if (!v.is_array() || v.size() != 4) throw HttpError(400, "\"box\" must be [x0, y0, x1, y1]");
    for (int n = 0; n < 4; ++n) r.box[n] = as_number(v[n], "\"box\"");
  }
  return r;
}

std::string base64_encode(const uint8_t* d, size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    const uint32_t v = (uint32_t(d[i]) << 16) | (uint32_t(d[i + 1]) << 8) | d[i + 2];
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i < n) {
    uint32_t v = uint32_t(d[i]) << 16;
    if (i + 1 < n) v |= uint32_t(d[i + 1]) << 8;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += i + 1 < n ? t[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string random_hex(int n) {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string t;
  for (int i = 0; i < n; ++i) t += hex[rd() % 16];
  return t;
}

ScratchPath::~ScratchPath() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace medicosam::server
