#pragma once
// Slices in patient orientation, and masks written back into a 3D label map.
//
// extract_slice(volume, axis, k) cuts the plane perpendicular to the patient
// axis (axial: I-S, coronal: P-A, sagittal: L-R) through array index k of the
// array axis closest to it, and lays it out as radiologists view it,
// whatever the array order or direction cosines of the file:
//   axial:    image left = patient right, image top = anterior
//   coronal:  image left = patient right, image top = superior
//   sagittal: image left = anterior,      image top = superior
// The result is a one-slice Volume with its true physical geometry (its own
// spacing, origin, direction), plus a SlicePlacement that maps its pixels back
// to voxels, which paste_slice uses to put a 2D mask at the right place.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/io/volume.hpp"

namespace medicosam::io {

enum class Axis { kAxial, kCoronal, kSagittal };
// "axial" | "coronal" | "sagittal"; throws InputError otherwise.
Axis parse_axis(const std::string& s);
const char* axis_name(Axis a);

// How the pixels of a 2D slice map to voxels of the volume it came from.
struct SlicePlacement {
  Axis axis = Axis::kAxial;
  int64_t index = 0;      // k: array index along through_dim
  int through_dim = 2;    // array axis perpendicular to the slice
  int col_dim = 0;        // array axis that image columns (x) walk along
  int row_dim = 1;        // array axis that image rows (y) walk along
  bool col_flip = false;  // column c -> index (size - 1 - c) along col_dim
  bool row_flip = false;
  std::array<int64_t, 3> volume_size{0, 0, 0};
  int64_t width = 0;   // slice columns = volume_size[col_dim]
  int64_t height = 0;  // slice rows = volume_size[row_dim]

  // Volume index (x, y, z) of slice pixel (row, col).
  std::array<int64_t, 3> voxel(int64_t row, int64_t col) const;
};

// The array axis and index range for `axis` in a volume of geometry `g`:
// number of slices along that axis.
int64_t num_slices(const Geometry& g, Axis axis);
SlicePlacement slice_placement(const Geometry& g, Axis axis, int64_t k);

struct Slice {
  Volume image;  // one-slice volume (width x height x 1), same pixel type and components
  SlicePlacement placement;
};
// Throws InputError if k is out of range (names the valid range).
Slice extract_slice(const Volume& volume, Axis axis, int64_t k);

// A binary (or label) 2D mask, row-major, height x width.
struct Mask2D {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> data;
};

// Writes `mask` (non-zero = inside) into `labels` as `label` at the slice
// `placement` describes. With `replace`, voxels of `label` in that slice
// outside the mask are cleared first (re-segmenting an object), else they stay.
// Throws InputError if the mask or label map does not fit the placement.
void paste_slice(LabelMap& labels, const SlicePlacement& placement, const Mask2D& mask,
                 uint16_t label, bool replace = true);
// The slice of `labels` at `placement` as a mask of `label` (0/1), or of any
// label > 0 when label == 0.
Mask2D label_slice(const LabelMap& labels, const SlicePlacement& placement, uint16_t label = 0);

// Anisotropic pixels: the grid on which a slice looks right (square pixels).
// The finer pixel size is kept and the coarser axis upsampled, capped so the
// longer side stays <= max_side.
struct SquarePixelGrid {
  int64_t height = 0;
  int64_t width = 0;
  double pixel_size = 1.0;  // mm
};
SquarePixelGrid square_pixel_grid(const Geometry& slice_geometry, int64_t max_side = 4096);
// Bilinear resampling of an RGB8 image (pixel centres aligned, as
// cv::resize INTER_LINEAR); for display / model input on a SquarePixelGrid.
RGB8Image resample_rgb8(const RGB8Image& image, int64_t height, int64_t width);
// Nearest-neighbour resampling of a mask, e.g. a prediction on the square
// grid back to the slice grid before paste_slice.
Mask2D resample_mask(const Mask2D& mask, int64_t height, int64_t width);

}  // namespace medicosam::io
