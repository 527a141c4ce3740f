#pragma once
// Volume: scalar (or RGB) voxels on a Geometry. LabelMap: uint16 labels on a
// Geometry plus the segment descriptions a DICOM SEG needs. 2D images are
// one-slice volumes (size z == 1).
//
// Memory layout (like ITK): x fastest, then y, then z; the components of a
// voxel are interleaved: offset = ((z * ny + y) * nx + x) * components + c.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/geometry.hpp"
#include "medicosam/io/pixel_type.hpp"

namespace medicosam::io {

class Volume {
 public:
  Volume() = default;
  // Zero-filled. components: 1 (scalar) or 3 (RGB). Throws InputError on an
  // empty size or unsupported component count.
  Volume(PixelType type, const Geometry& geometry, int components = 1);

  PixelType pixel_type() const { return type_; }
  int components() const { return components_; }
  const Geometry& geometry() const { return geometry_; }
  // Replaces spacing/origin/direction; the size must stay the same.
  void set_geometry(const Geometry& g);
  const std::array<int64_t, 3>& size() const { return geometry_.size; }
  int64_t width() const { return geometry_.size[0]; }
  int64_t height() const { return geometry_.size[1]; }
  int64_t depth() const { return geometry_.size[2]; }
  bool is_2d() const { return geometry_.size[2] == 1; }
  bool empty() const { return buffer_.empty(); }
  int64_t num_voxels() const { return geometry_.num_voxels(); }
  size_t num_bytes() const { return buffer_.size(); }

  void* data() { return buffer_.data(); }
  const void* data() const { return buffer_.data(); }
  // Typed access; throws InputError if T does not match pixel_type().
  template <typename T>
  T* data_as();
  template <typename T>
  const T* data_as() const;

  // Element offset of component c of voxel (x, y, z).
  int64_t offset(int64_t x, int64_t y, int64_t z, int c = 0) const {
    return ((z * geometry_.size[1] + y) * geometry_.size[0] + x) * components_ + c;
  }
  // Value of one component as double (no bounds check beyond debug asserts).
  double value(int64_t x, int64_t y, int64_t z, int c = 0) const;
  // Stores v converted to the pixel type (rounded and clamped for integers).
  void set_value(int64_t x, int64_t y, int64_t z, int c, double v);

  // All components of all voxels as float, in memory order.
  std::vector<float> to_float() const;
  // Smallest and largest component value (0, 0 for an empty volume).
  std::array<double, 2> min_max() const;
  // Copy converted to another pixel type (rounded and clamped for integers).
  Volume cast(PixelType type) const;

  // Where the voxels came from, for `medicosam info` and DICOM SEG checks.
  std::string format;      // "NIfTI", "NRRD", "MetaImage", "DICOM", "PNG", ...
  std::string modality;    // DICOM Modality (CT, MR, ...) when known
  std::string series_uid;  // DICOM SeriesInstanceUID when read from DICOM

 private:
  PixelType type_ = PixelType::kUInt8;
  int components_ = 1;
  Geometry geometry_;
  std::vector<uint8_t> buffer_;
};

// A coded concept (DICOM Code Sequence Macro): value, scheme, meaning.
struct Code {
  std::string value;
  std::string scheme;
  std::string meaning;
};

// One segment of a label map: voxels equal to `label`.
struct SegmentInfo {
  uint16_t label = 1;
  std::string name;                              // DICOM SegmentLabel
  std::array<uint8_t, 3> color{0, 0, 0};         // display RGB; all 0 = pick a default
  Code category{"85756007", "SCT", "Tissue"};    // SegmentedPropertyCategoryCode
  Code type{"85756007", "SCT", "Tissue"};        // SegmentedPropertyTypeCode
  std::string algorithm_type = "SEMIAUTOMATIC";  // AUTOMATIC, SEMIAUTOMATIC, MANUAL
  std::string algorithm_name = "medicosam";
};

class LabelMap {
 public:
  LabelMap() = default;
  // All-background label map on `geometry`.
  explicit LabelMap(const Geometry& geometry);

  const Geometry& geometry() const { return geometry_; }
  void set_geometry(const Geometry& g);  // size must stay the same
  const std::array<int64_t, 3>& size() const { return geometry_.size; }
  int64_t num_voxels() const { return geometry_.num_voxels(); }
  bool empty() const { return labels_.empty(); }

  uint16_t* data() { return labels_.data(); }
  const uint16_t* data() const { return labels_.data(); }
  int64_t offset(int64_t x, int64_t y, int64_t z) const {
    return (z * geometry_.size[1] + y) * geometry_.size[0] + x;
  }
  uint16_t at(int64_t x, int64_t y, int64_t z) const { return labels_[offset(x, y, z)]; }
  void set(int64_t x, int64_t y, int64_t z, uint16_t v) { labels_[offset(x, y, z)] = v; }

  int64_t count(uint16_t label) const;
  uint16_t max_label() const;
  // Labels > 0 that occur, ascending.
  std::vector<uint16_t> labels_present() const;

  // Segment descriptions (names, colours, codes), used for DICOM SEG.
  std::vector<SegmentInfo> segments;
  // The description of `label`, or nullptr.
  const SegmentInfo* find_segment(uint16_t label) const;
  // Descriptions for every label present: the stored one or a generated
  // default ("Segment N", a distinct colour).
  std::vector<SegmentInfo> effective_segments() const;

  // From an integer volume with values in [0, 65535] (scalar only); throws
  // InputError naming `what` otherwise.
  static LabelMap from_volume(const Volume& v, const std::string& what = "label volume");
  // As a Volume of `type` (kUInt8 or kUInt16; throws if labels do not fit).
  Volume to_volume(PixelType type = PixelType::kUInt16) const;

 private:
  Geometry geometry_;
  std::vector<uint16_t> labels_;
};

// A default colour for label n (a fixed, distinct palette).
std::array<uint8_t, 3> default_label_color(uint16_t label);

}  // namespace medicosam::io
