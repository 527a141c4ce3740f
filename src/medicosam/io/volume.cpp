#include "medicosam/io/volume.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>

#include "medicosam/core/error.hpp"
#include "medicosam/io/saturate.hpp"

namespace medicosam::io {
namespace {

void check_geometry(const Geometry& g, const char* what) {
  for (int i = 0; i < 3; ++i) {
    if (g.size[i] <= 0) {
      throw InputError(std::string(what) + ": every size must be positive, got " +
                       std::to_string(g.size[0]) + "x" + std::to_string(g.size[1]) + "x" +
                       std::to_string(g.size[2]));
    }
  }
}

}  // namespace

Volume::Volume(PixelType type, const Geometry& geometry, int components)
    : type_(type), components_(components), geometry_(geometry) {
  check_geometry(geometry, "Volume");
  if (components != 1 && components != 3) {
    throw InputError("Volume: components must be 1 (scalar) or 3 (RGB), got " +
                     std::to_string(components));
  }
  buffer_.assign(static_cast<size_t>(geometry.num_voxels()) * components * pixel_type_size(type),
                 0);
}

void Volume::set_geometry(const Geometry& g) {
  if (g.size != geometry_.size) throw InputError("Volume::set_geometry: size must not change");
  geometry_ = g;
}

template <typename T>
T* Volume::data_as() {
  if (PixelTypeOf<T>::value != type_) {
    throw InputError(std::string("Volume holds ") + pixel_type_name(type_) + ", not " +
                     pixel_type_name(PixelTypeOf<T>::value));
  }
  return reinterpret_cast<T*>(buffer_.data());
}

template <typename T>
const T* Volume::data_as() const {
  return const_cast<Volume*>(this)->data_as<T>();
}

#define MEDICOSAM_INSTANTIATE(T)    \
  template T* Volume::data_as<T>(); \
  template const T* Volume::data_as<T>() const;
MEDICOSAM_INSTANTIATE(uint8_t)
MEDICOSAM_INSTANTIATE(int8_t)
MEDICOSAM_INSTANTIATE(uint16_t)
MEDICOSAM_INSTANTIATE(int16_t)
MEDICOSAM_INSTANTIATE(uint32_t)
MEDICOSAM_INSTANTIATE(int32_t)
MEDICOSAM_INSTANTIATE(float)
MEDICOSAM_INSTANTIATE(double)
#undef MEDICOSAM_INSTANTIATE

double Volume::value(int64_t x, int64_t y, int64_t z, int c) const {
  assert(x >= 0 && y >= 0 && z >= 0 && x < width() && y < height() && z < depth());
  const int64_t o = offset(x, y, z, c);
  return visit_pixel_type(type_, [&](auto t) {
    using T = decltype(t);
    T v;
    std::memcpy(&v, buffer_.data() + o * sizeof(T), sizeof(T));
    return static_cast<double>(v);
  });
}

void Volume::set_value(int64_t x, int64_t y, int64_t z, int c, double v) {
  const int64_t o = offset(x, y, z, c);
  visit_pixel_type(type_, [&](auto t) {
    using T = decltype(t);
    const T tv = detail::saturate_cast<T>(v);
    std::memcpy(buffer_.data() + o * sizeof(T), &tv, sizeof(T));
  });
}

std::vector<float> Volume::to_float() const {
  const size_t n = static_cast<size_t>(num_voxels()) * components_;
  std::vector<float> out(n);
  if (buffer_.empty()) return out;
  visit_pixel_type(type_, [&](auto t) {
    using T = decltype(t);
    const T* p = reinterpret_cast<const T*>(buffer_.data());
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
  });
  return out;
}

std::array<double, 2> Volume::min_max() const {
  if (buffer_.empty()) return {0.0, 0.0};
  return visit_pixel_type(type_, [&](auto t) {
    using T = decltype(t);
    const T* p = reinterpret_cast<const T*>(buffer_.data());
    const size_t n = static_cast<size_t>(num_voxels()) * components_;
    auto [lo, hi] = std::minmax_element(p, p + n);
    return std::array<double, 2>{static_cast<double>(*lo), static_cast<double>(*hi)};
  });
}

Volume Volume::cast(PixelType type) const {
  Volume out(type, geometry_, components_);
  out.format = format;
  out.modality = modality;
  out.series_uid = series_uid;
  const size_t n = static_cast<size_t>(num_voxels()) * components_;
  visit_pixel_type(type_, [&](auto s) {
    using S = decltype(s);
    const S* src = reinterpret_cast<const S*>(buffer_.data());
    visit_pixel_type(type, [&](auto d) {
      using D = decltype(d);
      D* dst = reinterpret_cast<D*>(out.buffer_.data());
      for (size_t i = 0; i < n; ++i) dst[i] = detail::saturate_cast<D>(static_cast<double>(src[i]));
    });
  });
  return out;
}

// ---------------------------------------------------------------- LabelMap

LabelMap::LabelMap(const Geometry& geometry) : geometry_(geometry) {
  check_geometry(geometry, "LabelMap");
  labels_.assign(static_cast<size_t>(geometry.num_voxels()), 0);
}

void LabelMap::set_geometry(const Geometry& g) {
  if (g.size != geometry_.size) throw InputError("LabelMap::set_geometry: size must not change");
  geometry_ = g;
}

int64_t LabelMap::count(uint16_t label) const {
  return std::count(labels_.begin(), labels_.end(), label);
}

uint16_t LabelMap::max_label() const {
  return labels_.empty() ? 0 : *std::max_element(labels_.begin(), labels_.end());
}

std::vector<uint16_t> LabelMap::labels_present() const {
  std::vector<bool> seen(65536, false);
  for (uint16_t v : labels_) seen[v] = true;
  std::vector<uint16_t> out;
  for (int v = 1; v < 65536; ++v) {
    if (seen[v]) out.push_back(static_cast<uint16_t>(v));
  }
  return out;
}

const SegmentInfo* LabelMap::find_segment(uint16_t label) const {
  for (const auto& s : segments) {
    if (s.label == label) return &s;
  }
  return nullptr;
}

std::vector<SegmentInfo> LabelMap::effective_segments() const {
  std::vector<SegmentInfo> out;
  for (uint16_t label : labels_present()) {
    SegmentInfo s;
    if (const SegmentInfo* known = find_segment(label)) s = *known;
    s.label = label;
    if (s.name.empty()) s.name = "Segment " + std::to_string(label);
    if (s.color == std::array<uint8_t, 3>{0, 0, 0}) s.color = default_label_color(label);
    out.push_back(std::move(s));
  }
  return out;
}

LabelMap LabelMap::from_volume(const Volume& v, const std::string& what) {
  if (v.components() != 1) {
    throw InputError(what + ": a label map must have one component per voxel, got " +
                     std::to_string(v.components()));
  }
  LabelMap out(v.geometry());
  const size_t n = static_cast<size_t>(v.num_voxels());
  visit_pixel_type(v.pixel_type(), [&](auto t) {
    using T = decltype(t);
    const T* p = v.data_as<T>();
    for (size_t i = 0; i < n; ++i) {
      const T x = p[i];
      if (!(x >= T{0} && static_cast<double>(x) <= 65535.0) ||
          static_cast<double>(x) != static_cast<double>(static_cast<uint16_t>(x))) {
        throw InputError(what + ": label values must be whole numbers in 0..65535, found " +
                         std::to_string(static_cast<double>(x)));
      }
      out.labels_[i] = static_cast<uint16_t>(x);
    }
  });
  return out;
}

Volume LabelMap::to_volume(PixelType type) const {
  if (type != PixelType::kUInt8 && type != PixelType::kUInt16) {
    throw InputError(std::string("label maps are stored as uint8 or uint16, not ") +
                     pixel_type_name(type));
  }
  Volume out(type, geometry_, 1);
  if (type == PixelType::kUInt8) {
    if (max_label() > 255) {
      throw InputError("label map has label " + std::to_string(max_label()) +
                       " which does not fit in uint8");
    }
    uint8_t* d = out.data_as<uint8_t>();
    for (size_t i = 0; i < labels_.size(); ++i) d[i] = static_cast<uint8_t>(labels_[i]);
  } else {
    std::memcpy(out.data(), labels_.data(), labels_.size() * sizeof(uint16_t));
  }
  return out;
}

std::array<uint8_t, 3> default_label_color(uint16_t label) {
  // 3D Slicer's GenericAnatomyColors-like distinct hues for the first labels.
  static const std::array<uint8_t, 3> kPalette[] = {
      {128, 174, 128}, {241, 214, 145}, {177, 122, 101}, {111, 184, 210},
      {216, 101, 79},  {221, 130, 101}, {144, 238, 144}, {192, 104, 88},
      {220, 245, 20},  {78, 63, 0},     {255, 250, 220}, {230, 220, 70},
      {200, 200, 235}, {250, 250, 210}, {244, 214, 49},  {0, 151, 206}};
  constexpr size_t n = sizeof(kPalette) / sizeof(kPalette[0]);
  if (label == 0) return {0, 0, 0};
  return kPalette[(label - 1) % n];
}

}  // namespace medicosam::io
