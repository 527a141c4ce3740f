#include "medicosam/eval/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "medicosam/core/error.hpp"

namespace medicosam::eval {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_same_grid(const MaskView& a, const MaskView& b, const char* what) {
  if (a.size != b.size) {
    throw InputError(std::string(what) + ": masks of different size (" + std::to_string(a.size[0]) +
                     "x" + std::to_string(a.size[1]) + "x" + std::to_string(a.size[2]) + " vs " +
                     std::to_string(b.size[0]) + "x" + std::to_string(b.size[1]) + "x" +
                     std::to_string(b.size[2]) + ")");
  }
  if (a.num_voxels() > 0 && (!a.data || !b.data))
    throw InputError(std::string(what) + ": mask without data");
}

// One line of the separable squared distance transform (Felzenszwalb &
// Huttenlocher): d[q] = min_p ((q - p) * w)^2 + f[p], over finite f[p].
// v, z: scratch of n and n + 1 entries.
void edt_line(const double* f, int64_t n, double w, double* d, int64_t* v, double* z) {
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (!std::isfinite(f[q])) continue;
    const double pq = q * w;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
      continue;
    }
    // z[0] = -inf, so the loop stops at k = 0 at the latest.
    double s;
    for (;;) {
      const double pr = v[k] * w;
      s = ((f[q] + pq * pq) - (f[v[k]] + pr * pr)) / (2 * (pq - pr));
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (k < 0) {
    std::fill(d, d + n, kInf);
    return;
  }
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    const double pq = q * w;
    while (z[j + 1] < pq) ++j;
    const double dp = pq - v[j] * w;
    d[q] = dp * dp + f[v[j]];
  }
}

}  // namespace

MaskView view_of(const segment::BinaryMask& m, std::array<double, 2> spacing_xy) {
  MaskView v;
  v.data = m.data.data();
  v.size = {m.width, m.height, 1};
  v.spacing = {spacing_xy[0], spacing_xy[1], 1.0};
  return v;
}

double dice(const MaskView& pred, const MaskView& gt) {
  check_same_grid(pred, gt, "dice");
  int64_t inter = 0, sp = 0, sg = 0;
  const int64_t n = pred.num_voxels();
  for (int64_t i = 0; i < n; ++i) {
    const bool a = pred.data[i] != 0, b = gt.data[i] != 0;
    inter += a && b;
    sp += a;
    sg += b;
  }
  if (sp + sg == 0) return 1.0;
  // medico_sam.evaluation.calculate_dice_score: 2 * (num / denom.clip(min=eps)).
  return 2.0 * (double(inter) / std::max(double(sp + sg), 1e-7));
}

double iou(const MaskView& pred, const MaskView& gt) {
  check_same_grid(pred, gt, "iou");
  int64_t inter = 0, uni = 0;
  const int64_t n = pred.num_voxels();
  for (int64_t i = 0; i < n; ++i) {
    const bool a = pred.data[i] != 0, b = gt.data[i] != 0;
    inter += a && b;
    uni += a || b;
  }
  return uni == 0 ? 1.0 : double(inter) / double(uni);
}

std::vector<uint8_t> surface_of(const MaskView& m) {
  const int64_t nx = m.size[0], ny = m.size[1], nz = m.size[2];
  std::vector<uint8_t> s(static_cast<size_t>(m.num_voxels()), 0);
  const int64_t stride[3] = {1, nx, nx * ny};
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const int64_t i = (z * ny + y) * nx + x;
        if (!m.data[i]) continue;
        const int64_t c[3] = {x, y, z};
        bool edge = false;
        for (int a = 0; a < 3 && !edge; ++a) {
          if (m.size[a] == 1) continue;
          if (c[a] == 0 || c[a] == m.size[a] - 1) {
            edge = true;
          } else if (!m.data[i - stride[a]] || !m.data[i + stride[a]]) {
            edge = true;
          }
        }
        s[i] = edge;
      }
  return s;
}

std::vector<double> squared_distance_transform(const uint8_t* feature, std::array<int64_t, 3> size,
                                               std::array<double, 3> spacing) {
  const int64_t nx = size[0], ny = size[1], nz = size[2];
  const int64_t n = nx * ny * nz;
  std::vector<double> d(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) d[i] = feature[i] ? 0.0 : kInf;
  const int64_t longest = std::max({nx, ny, nz});
  std::vector<double> f(longest), out(longest), z(longest + 1);
  std::vector<int64_t> v(longest);
  const int64_t stride[3] = {1, nx, nx * ny};
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t len = size[axis];
    if (len == 1) continue;
    const int64_t st = stride[axis];
    // Every line along `axis`: iterate over the other two coordinates.
    for (int64_t zz = 0; zz < (axis == 2 ? 1 : nz); ++zz)
      for (int64_t yy = 0; yy < (axis == 1 ? 1 : ny); ++yy)
        for (int64_t xx = 0; xx < (axis == 0 ? 1 : nx); ++xx) {
          const int64_t base = (zz * ny + yy) * nx + xx;
          for (int64_t q = 0; q < len; ++q) f[q] = d[base + q * st];
          edt_line(f.data(), len, spacing[axis], out.data(), v.data(), z.data());
          for (int64_t q = 0; q < len; ++q) d[base + q * st] = out[q];
        }
  }
  return d;
}

std::vector<double> surface_distances(const MaskView& from, const MaskView& to) {
  check_same_grid(from, to, "surface_distances");
  const auto s_from = surface_of(from);
  const auto s_to = surface_of(to);
  const auto d2 = squared_distance_transform(s_to.data(), to.size, to.spacing);
  std::vector<double> out;
  for (size_t i = 0; i < s_from.size(); ++i)
    if (s_from[i]) out.push_back(std::sqrt(d2[i]));
  return out;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 100.0) / 100.0 * double(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(values.size() - 1, lo + 1);
  const double t = pos - double(lo);
  if (t == 0.0 || values[lo] == values[hi]) return values[lo];
  return values[lo] + t * (values[hi] - values[lo]);
}

namespace {

struct SurfaceStats {
  double nsd = 0.0;
  double hd95 = 0.0;
};

SurfaceStats surface_stats(const MaskView& pred, const MaskView& gt, double tolerance_mm) {
  const auto dp = surface_distances(pred, gt);
  const auto dg = surface_distances(gt, pred);
  SurfaceStats s;
  if (dp.empty() && dg.empty()) {
    s.nsd = 1.0;
    s.hd95 = 0.0;
    return s;
  }
  if (dp.empty() || dg.empty()) {
    s.nsd = 0.0;
    s.hd95 = kInf;
    return s;
  }
  size_t ok = 0;
  for (double d : dp) ok += d <= tolerance_mm;
  for (double d : dg) ok += d <= tolerance_mm;
  s.nsd = double(ok) / double(dp.size() + dg.size());
  s.hd95 = std::max(percentile(dp, 95.0), percentile(dg, 95.0));
  return s;
}

}  // namespace

double normalized_surface_dice(const MaskView& pred, const MaskView& gt, double tolerance_mm) {
  return surface_stats(pred, gt, tolerance_mm).nsd;
}

double hd95(const MaskView& pred, const MaskView& gt) {
  return surface_stats(pred, gt, 0.0).hd95;
}

Metrics compute_metrics(const MaskView& pred, const MaskView& gt, double nsd_tolerance_mm,
                        bool with_surface) {
  Metrics m;
  m.dice = dice(pred, gt);
  m.iou = iou(pred, gt);
  if (with_surface) {
    const auto s = surface_stats(pred, gt, nsd_tolerance_mm);
    m.nsd = s.nsd;
    m.hd95 = s.hd95;
  } else {
    m.nsd = m.hd95 = std::numeric_limits<double>::quiet_NaN();
  }
  return m;
}

Metrics compute_metrics(const segment::BinaryMask& pred, const segment::BinaryMask& gt,
                        std::array<double, 2> spacing_xy, double nsd_tolerance_mm,
                        bool with_surface) {
  if (pred.height != gt.height || pred.width != gt.width) {
    throw InputError("compute_metrics: prediction " + std::to_string(pred.width) + "x" +
                     std::to_string(pred.height) + " vs ground truth " + std::to_string(gt.width) +
                     "x" + std::to_string(gt.height));
  }
  return compute_metrics(view_of(pred, spacing_xy), view_of(gt, spacing_xy), nsd_tolerance_mm,
                         with_surface);
}

}  // namespace medicosam::eval
