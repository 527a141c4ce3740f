#include "medicosam/io/geometry.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace medicosam::io {

std::array<double, 3> Geometry::axis_direction(int axis) const {
  return {direction[0 * 3 + axis], direction[1 * 3 + axis], direction[2 * 3 + axis]};
}

std::array<double, 3> Geometry::index_to_physical(const std::array<double, 3>& index) const {
  std::array<double, 3> p = origin;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) p[r] += direction[r * 3 + c] * spacing[c] * index[c];
  }
  return p;
}

std::array<double, 3> Geometry::physical_to_index(const std::array<double, 3>& point) const {
  // index = diag(1/spacing) * inverse(direction) * (point - origin); the
  // inverse is computed in general (direction need not be orthonormal).
  const auto& m = direction;
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  std::array<double, 9> inv{};
  inv[0] = (m[4] * m[8] - m[5] * m[7]) / det;
  inv[1] = (m[2] * m[7] - m[1] * m[8]) / det;
  inv[2] = (m[1] * m[5] - m[2] * m[4]) / det;
  inv[3] = (m[5] * m[6] - m[3] * m[8]) / det;
  inv[4] = (m[0] * m[8] - m[2] * m[6]) / det;
  inv[5] = (m[2] * m[3] - m[0] * m[5]) / det;
  inv[6] = (m[3] * m[7] - m[4] * m[6]) / det;
  inv[7] = (m[1] * m[6] - m[0] * m[7]) / det;
  inv[8] = (m[0] * m[4] - m[1] * m[3]) / det;
  std::array<double, 3> d{point[0] - origin[0], point[1] - origin[1], point[2] - origin[2]};
  std::array<double, 3> idx{};
  for (int r = 0; r < 3; ++r) {
    idx[r] = (inv[r * 3 + 0] * d[0] + inv[r * 3 + 1] * d[1] + inv[r * 3 + 2] * d[2]) / spacing[r];
  }
  return idx;
}

double grid_difference(const Geometry& a, const Geometry& b) {
  if (a.size != b.size) return std::numeric_limits<double>::infinity();
  double d = 0.0;
  for (int i = 0; i < 3; ++i) {
    d = std::max(d, std::abs(a.spacing[i] - b.spacing[i]));
    d = std::max(d, std::abs(a.origin[i] - b.origin[i]));
  }
  for (int i = 0; i < 9; ++i) d = std::max(d, std::abs(a.direction[i] - b.direction[i]));
  return d;
}

bool same_grid(const Geometry& a, const Geometry& b, double tolerance) {
  return grid_difference(a, b) <= tolerance;
}

AxisMapping axis_mapping(const Geometry& g) {
  // Greedy: the array axis with the most decisive patient direction chooses
  // first, so oblique volumes still get a permutation.
  AxisMapping m{};
  std::array<bool, 3> array_done{false, false, false};
  std::array<bool, 3> patient_done{false, false, false};
  for (int step = 0; step < 3; ++step) {
    int best_a = -1, best_p = -1;
    double best = -1.0;
    for (int a = 0; a < 3; ++a) {
      if (array_done[a]) continue;
      const auto d = g.axis_direction(a);
      for (int p = 0; p < 3; ++p) {
        if (patient_done[p]) continue;
        if (std::abs(d[p]) > best) {
          best = std::abs(d[p]);
          best_a = a;
          best_p = p;
        }
      }
    }
    array_done[best_a] = patient_done[best_p] = true;
    m.patient_axis[best_a] = best_p;
    m.sign[best_a] = g.axis_direction(best_a)[best_p] < 0 ? -1 : 1;
    m.array_axis[best_p] = best_a;
  }
  return m;
}

std::string orientation_code(const Geometry& g) {
  static const char kPositive[3] = {'L', 'P', 'S'};
  static const char kNegative[3] = {'R', 'A', 'I'};
  const AxisMapping m = axis_mapping(g);
  std::string code(3, '?');
  for (int a = 0; a < 3; ++a) {
    code[a] = m.sign[a] > 0 ? kPositive[m.patient_axis[a]] : kNegative[m.patient_axis[a]];
  }
  return code;
}

std::string to_string(const Geometry& g) {
  std::ostringstream s;
  s.precision(6);
  s << g.size[0] << "x" << g.size[1] << "x" << g.size[2] << " voxels, spacing " << g.spacing[0]
    << " x " << g.spacing[1] << " x " << g.spacing[2] << " mm, orientation " << orientation_code(g)
    << ", origin (" << g.origin[0] << ", " << g.origin[1] << ", " << g.origin[2] << ") mm LPS";
  return s.str();
}

}  // namespace medicosam::io
