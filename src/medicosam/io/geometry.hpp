#pragma once
// Image geometry in physical (patient) space, LPS like ITK and DICOM:
// physical = origin + direction * diag(spacing) * index.
#include <array>
#include <cstdint>
#include <string>

namespace medicosam::io {

struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // mm per voxel along each array axis
  std::array<double, 3> origin{0.0, 0.0, 0.0};   // LPS position of voxel (0,0,0) centre, mm
  // Row-major 3x3; column j is the unit LPS direction in which array axis j grows.
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
  std::array<int64_t, 3> size{0, 0, 0};  // voxels along x, y, z; a 2D image has size[2] == 1

  int64_t num_voxels() const { return size[0] * size[1] * size[2]; }
  // Unit LPS direction of array axis `axis` (a column of `direction`).
  std::array<double, 3> axis_direction(int axis) const;
  // Continuous index (x, y, z) -> LPS position.
  std::array<double, 3> index_to_physical(const std::array<double, 3>& index) const;
  // LPS position -> continuous index (inverse of index_to_physical).
  std::array<double, 3> physical_to_index(const std::array<double, 3>& point) const;
};

// Same grid within `tolerance` (absolute, mm for origin/spacing, unitless for
// direction) and exactly the same size.
bool same_grid(const Geometry& a, const Geometry& b, double tolerance = 1e-6);
// Largest absolute difference of spacing, origin and direction (inf if sizes differ).
double grid_difference(const Geometry& a, const Geometry& b);

// Orientation code in the convention of nibabel and 3D Slicer: for each array
// axis the patient direction towards which the index grows (L/R, P/A, S/I),
// e.g. "LPS" for an identity direction, "RAS" for a NIfTI with an identity
// RAS affine. Oblique axes take their closest patient axis.
std::string orientation_code(const Geometry& g);

// For each array axis: which patient axis (0 = L-R, 1 = P-A, 2 = I-S) it is
// closest to, and +1/-1 for growing towards L/P/S or R/A/I. Always a
// permutation, also for oblique volumes.
struct AxisMapping {
  std::array<int, 3> patient_axis;  // indexed by array axis
  std::array<int, 3> sign;          // indexed by array axis
  std::array<int, 3> array_axis;    // inverse: indexed by patient axis
};
AxisMapping axis_mapping(const Geometry& g);

// Human-readable one-liner: "512x512x3 spacing 0.81x0.81x1 mm, LPS, origin (...)".
std::string to_string(const Geometry& g);

}  // namespace medicosam::io
