#pragma once
// The 2D images a model sees for a volume (or a 2D image): slices along one
// patient axis (io::extract_slice), normalised to 8-bit RGB, and resampled to
// square pixels when the slice's pixels are not square (a coronal cut through
// thick slices), with the mappings of prompts and masks between the slice grid
// and the model grid. Also the data signature of the slice stack: the SHA-1 of
// its raw voxel bytes, slice after slice, which is micro_sam's
// `sha1(array.tobytes())` for the array whose [k] is slice k (for the usual
// axial cut of an LPS-ordered volume that is the volume's own buffer).
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/io/normalize.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/io/volume.hpp"
#include "medicosam/predict/predictor.hpp"
#include "medicosam/segment/prompt_sampling.hpp"

namespace medicosam::segment {

class VolumeSlices {
 public:
  // `volume` must outlive this object. 2D images have one slice (axis ignored).
  // square_pixels: resample anisotropic slices for the model (as `segment` does).
  VolumeSlices(const io::Volume& volume, io::Axis axis, const io::Normalization& normalization,
               bool square_pixels = true);
  // Same, sharing ownership of the volume.
  VolumeSlices(std::shared_ptr<const io::Volume> volume, io::Axis axis,
               const io::Normalization& normalization, bool square_pixels = true);

  int count() const { return count_; }
  io::Axis axis() const { return axis_; }
  const io::Volume& volume() const { return *volume_; }
  const io::Normalization& normalization() const { return normalizer_.normalization(); }
  predict::Size2 slice_size() const { return slice_size_; }  // the slice's own pixel grid
  predict::Size2 model_size() const { return model_size_; }  // what the model sees
  bool resampled() const { return !(slice_size_ == model_size_); }
  // Uses the slice grid for the model even if its pixels are not square
  // (e.g. to read a cache that was computed that way).
  void use_slice_grid() { model_size_ = slice_size_; }

  io::Slice slice(int k) const;
  // Slice k in 8-bit RGB on its own pixel grid (what a person sees; overlays).
  io::RGB8Image slice_image(int k) const;
  // Slice k as the model sees it (slice_image, resampled to model_size()).
  io::RGB8Image model_image(int k) const;
  io::SlicePlacement placement(int k) const;
  // Throws InputError naming the valid range if k is not a slice.
  void check_slice(int k) const;

  predict::Prompt prompt_to_model(const predict::Prompt& p) const;
  BinaryMask mask_to_slice(const BinaryMask& model_mask) const;
  BinaryMask mask_to_model(const BinaryMask& slice_mask) const;

  // --- voxels of the volume <-> slice pixels
  struct SlicePoint {
    int slice = 0;
    double x = 0, y = 0;  // slice pixel (column, row)
  };
  // Where voxel index (i, j, k) of the volume (its own array order) lies on
  // this stack of slices. InputError if it is outside the volume.
  SlicePoint from_voxel(const std::array<int64_t, 3>& ijk) const;
  // Slice pixel (column x, row y) of slice k -> voxel index (i, j, k).
  std::array<int64_t, 3> to_voxel(int slice, int64_t x, int64_t y) const;

  // --- masks on the model grid -> a label map on the volume's own geometry
  // Pastes a model-grid mask of slice k into `labels` as `label` (voxels of
  // other labels outside the mask stay; with `replace`, voxels of `label` in
  // that slice outside the mask are cleared).
  void paste(io::LabelMap& labels, int k, const BinaryMask& model_mask, uint16_t label,
             bool replace = false) const;
  // Label map of per-slice model-grid labels (slice -> H*W values, 0 = background),
  // on the volume's geometry.
  io::LabelMap label_map(const std::map<int, std::vector<uint16_t>>& model_labels) const;
  // Slice k of a label map on the volume's geometry, as a 2D label map on the
  // slice's own grid and geometry (e.g. a PNG of one slice of a volume).
  io::LabelMap slice_labels(const io::LabelMap& labels, int k) const;

  std::string data_signature() const;

 private:
  std::shared_ptr<const io::Volume> volume_;
  io::Axis axis_;
  io::Normalizer normalizer_;
  int count_ = 0;
  predict::Size2 slice_size_, model_size_;
};

}  // namespace medicosam::segment
