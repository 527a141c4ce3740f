#pragma once
// Segmentation metrics between a prediction and the ground truth, in 2D and
// 3D: Dice and IoU (overlap), normalised surface distance (NSD, "surface
// Dice") at a tolerance in mm, and the 95th-percentile Hausdorff distance
// (HD95) in mm, both using the voxel spacing.
//
// Conventions (MONAI's `compute_surface_dice` / `compute_hausdorff_distance`):
//  - the surface of a mask is its foreground voxels that have a background
//    face-neighbour (4-neighbourhood in 2D, 6 in 3D); outside the image counts
//    as background, axes of size 1 are ignored (a 2D image has no z
//    neighbours);
//  - the distance of a surface voxel to the other mask is the Euclidean
//    distance (mm, voxel centres) to the nearest surface voxel of that mask;
//  - NSD = (#pred surface within tol of gt surface + #gt surface within tol of
//    pred surface) / (#pred surface + #gt surface);
//  - HD95 = max(95th percentile of pred->gt distances, 95th percentile of
//    gt->pred distances), percentiles with linear interpolation (numpy).
// Empty masks: both empty -> Dice 1, IoU 1, NSD 1, HD95 0; exactly one empty
// -> Dice 0, IoU 0, NSD 0, HD95 +infinity (reported as undefined).
#include <array>
#include <cstdint>
#include <vector>

#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::eval {

// A binary mask on a 3D grid (x fastest, then y, then z; 2D: size z = 1),
// borrowed, with the grid's spacing in mm (x, y, z).
struct MaskView {
  const uint8_t* data = nullptr;  // non-zero = inside
  std::array<int64_t, 3> size{0, 0, 1};
  std::array<double, 3> spacing{1.0, 1.0, 1.0};
  int64_t num_voxels() const { return size[0] * size[1] * size[2]; }
};
// A 2D BinaryMask (rows = y) as a MaskView with pixel spacing (x, y).
MaskView view_of(const segment::BinaryMask& m, std::array<double, 2> spacing_xy = {1.0, 1.0});

struct Metrics {
  double dice = 0.0;
  double iou = 0.0;
  double nsd = 0.0;   // at the tolerance given
  double hd95 = 0.0;  // mm; +infinity when exactly one mask is empty
};

// Dice as MedicoSAM's evaluation computes it, 2|P and G| / max(|P| + |G|,
// 1e-7) (a perfect match is exactly 1; both empty: 1), and IoU.
double dice(const MaskView& pred, const MaskView& gt);
double iou(const MaskView& pred, const MaskView& gt);

// Distances (mm) from every surface voxel of `from` to the surface of `to`
// (+infinity each when `to` is empty); empty when `from` is empty. The grids
// must match (InputError otherwise).
std::vector<double> surface_distances(const MaskView& from, const MaskView& to);
// Surface voxels of `m` (0/1, same layout).
std::vector<uint8_t> surface_of(const MaskView& m);

double normalized_surface_dice(const MaskView& pred, const MaskView& gt, double tolerance_mm);
double hd95(const MaskView& pred, const MaskView& gt);

// All four metrics; `with_surface` false skips NSD and HD95 (set to NaN).
Metrics compute_metrics(const MaskView& pred, const MaskView& gt, double nsd_tolerance_mm,
                        bool with_surface = true);
Metrics compute_metrics(const segment::BinaryMask& pred, const segment::BinaryMask& gt,
                        std::array<double, 2> spacing_xy, double nsd_tolerance_mm,
                        bool with_surface = true);

// numpy.percentile(values, q) with linear interpolation (q in 0..100); NaN
// for no values. Infinite values take part like numbers.
double percentile(std::vector<double> values, double q);

// Squared Euclidean distance (mm^2) from every voxel to the nearest voxel
// where `feature` is non-zero (exact, separable; +infinity without features).
std::vector<double> squared_distance_transform(const uint8_t* feature, std::array<int64_t, 3> size,
                                               std::array<double, 3> spacing);

}  // namespace medicosam::eval
