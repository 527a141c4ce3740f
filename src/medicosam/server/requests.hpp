#pragma once
// Parsing what clients send the annotation server, independent of the HTTP
// library (so the fuzz target and the unit tests call these directly):
// identifiers, MONAI Label's infer parameters, the native session API's JSON
// bodies, raw `.bin` label uploads, sizes such as "2G". Every failure is an
// HttpError carrying the status the client gets and a message naming the
// field and the problem (never a path or a stack trace).
//
// Torch-free, ITK-free.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace medicosam::server {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Image ids, label tags, model names: 1..200 of [A-Za-z0-9._-], not starting
// with '.', no "..". Anything else (slashes, NUL, absolute paths) -> 400.
void check_id(const std::string& id, const std::string& what);
bool is_valid_id(const std::string& id);

// A JSON object from a request body or form field; 400 naming `what`.
nlohmann::json parse_json_object(const std::string& text, const std::string& what);

using Voxel = std::array<int64_t, 3>;

// MONAI Label's infer parameters (PROTOCOLS.md §A): clicks as voxel indices
// [i, j, k] in the image's own index order, an optional ROI
// [i0, i1, j0, j1, k0, k1] (each pair sorted here), the slice of 2D models.
struct InferParams {
  std::vector<Voxel> foreground, background;
  std::optional<std::array<int64_t, 6>> roi;
  std::optional<int64_t> slice;
  std::string label;                       // segment name ("" = none)
  std::string result_extension = ".nii.gz";  // .nii.gz | .nii | .nrrd | .seg.nrrd
  std::string result_dtype;                  // "", uint8, uint16
  nlohmann::json raw = nlohmann::json::object();
};
InferParams parse_infer_params(const nlohmann::json& params);

// "2G", "512M", "1000000" (bytes), "700MB" -> bytes; HttpError(400) otherwise.
uint64_t parse_size(const std::string& text, const std::string& what);

// A raw `.bin` label (uint8, Fortran order on the reference image's grid,
// MONAI's binary_to_image): checks the size; returns the values in
// x-fastest order (which Fortran order of (i, j, k) already is).
std::vector<uint16_t> decode_bin_label(const std::string& bytes, const std::array<int64_t, 3>& size);

// --- native session API bodies (docs/server.md)
struct PointRequest {
  std::optional<Voxel> voxel;  // or slice + x + y (slice pixels)
  int slice = 0;
  double x = 0, y = 0;
  bool positive = true;
};
PointRequest parse_point_request(const nlohmann::json& body);

struct BoxRequest {
  std::optional<std::array<Voxel, 2>> voxels;  // two opposite corners (inclusive)
  int slice = 0;
  std::array<double, 4> box{};  // x0, y0, x1, y1 in slice pixels
};
BoxRequest parse_box_request(const nlohmann::json& body);

// n random hexadecimal digits (names of scratch files, lease tokens' parts).
std::string random_hex(int n);

// A scratch file or folder that is removed (errors ignored) when the guard goes
// out of scope, on success and on exceptions alike: temporary results never
// outlive the request that made them.
class ScratchPath {
 public:
  explicit ScratchPath(std::string path) : path_(std::move(path)) {}
  ~ScratchPath();
  ScratchPath(const ScratchPath&) = delete;
  ScratchPath& operator=(const ScratchPath&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Base64 (RFC 4648, with padding) for region updates.
std::string base64_encode(const uint8_t* data, size_t n);

}  // namespace medicosam::server
