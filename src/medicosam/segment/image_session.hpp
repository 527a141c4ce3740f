#pragma once
// An interactive session on one image or volume as a person sees it: the
// actions of segment::Session (docs/volumes.md) with coordinates in slice
// pixels (each slice's own grid, see VolumeSlices), mapped to the model grid
// through VolumeSlices, and the result exported as a label map on the
// volume's own geometry. The CLI's `session` command and the server's
// sessions are both this class.
//
// Torch-free.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "medicosam/io/volume.hpp"
#include "medicosam/segment/session.hpp"
#include "medicosam/segment/volume_slices.hpp"

namespace medicosam::segment {

class ImageSession {
 public:
  // `segmenter` decodes on the model grid of `slices` (its slice_size() must
  // be slices->model_size(); InputError otherwise). `source_path` is where the
  // volume was read from (a DICOM SEG export references that series).
  ImageSession(std::shared_ptr<const VolumeSlices> slices, std::shared_ptr<SliceSegmenter> segmenter,
               std::string source_path);

  const VolumeSlices& slices() const { return *slices_; }
  Session& session() { return session_; }
  const Session& session() const { return session_; }

  // One action as in `medicosam session --script` ("x", "y", "box" in slice
  // pixels), plus {"action":"export","path":P} (committed labels, any
  // segmentation format) and {"action":"save","path":P} (the session state).
  // Returns the action's JSON result; InputError leaves the state unchanged.
  nlohmann::json apply(const nlohmann::json& action);

  // The committed objects as a label map on the volume's geometry, with their names.
  io::LabelMap committed_labels() const;
  // The committed objects plus the current object (drawn with its label,
  // over earlier objects only where the overlap policy would let it) — what
  // a viewer shows.
  io::LabelMap display_labels() const;
  // Writes the committed labels to `path` (format from its extension).
  void export_labels(const std::string& path) const;

 private:
  nlohmann::json to_model(const nlohmann::json& action) const;
  std::shared_ptr<const VolumeSlices> slices_;
  std::shared_ptr<SliceSegmenter> segmenter_;
  std::string source_path_;
  Session session_;
};

}  // namespace medicosam::segment
