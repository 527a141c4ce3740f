#pragma once
// An interactive segmentation session on one image or volume (the CLI's
// `session` subcommand now, the server later): objects are built one at a
// time from point and box prompts on any slice, propagated through the
// volume, and committed into a label map.
//
//  - the current object has prompts per slice; every prompt change
//    re-segments that slice (micro_sam: one positive point -> best of 3 masks)
//  - a slice whose only prompt is one negative point is a stop annotation:
//    propagation does not go beyond it
//  - commit writes the object into the committed label map; by default it
//    does NOT overwrite voxels of objects committed before (overlap policy),
//    `overwrite` lets it
//  - every change is undoable (multi-level undo / redo)
//  - with autosave, the whole state (committed labels, names, the current
//    object's prompts and masks) is written atomically after every change,
//    so a crash loses no committed work; `restore` continues from it
//
// Slices and coordinates are those of the SliceSegmenter (for volumes: the
// model grid of VolumeSlices). Torch-free.
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/segment/propagation.hpp"

namespace medicosam::segment {

struct SlicePrompts {
  std::vector<predict::Point> points;
  std::optional<predict::Box> box;
  bool empty() const { return points.empty() && !box; }
  // One negative point and nothing else: "the object ends here".
  bool is_stop() const { return points.size() == 1 && points[0].label == 0 && !box; }
};

using SliceMask = std::shared_ptr<const BinaryMask>;
using SliceLabels = std::shared_ptr<const std::vector<uint16_t>>;

struct ObjectState {
  uint16_t label = 0;
  std::string name;
  std::map<int, SlicePrompts> prompts;  // slice -> prompts
  std::map<int, SliceMask> masks;       // slice -> current segmentation (absent = empty)
};

// Immutable per-slice data shared between undo snapshots (copying a state is cheap).
struct SessionState {
  std::map<int, SliceLabels> committed;   // slice -> labels (absent = all background)
  std::map<uint16_t, std::string> names;  // committed objects
  std::optional<ObjectState> current;
  uint16_t next_label = 1;
};

class Session {
 public:
  explicit Session(SliceSegmenter& segmenter);

  int num_slices() const { return segmenter_.num_slices(); }
  predict::Size2 slice_size() const { return segmenter_.slice_size(); }
  const SessionState& state() const { return state_; }

  // --- actions (each is undoable and autosaved)
  // Starts a new object (label 0 = the next free one); an uncommitted current
  // object is an error unless `discard_current`.
  uint16_t new_object(const std::string& name = "", uint16_t label = 0,
                      bool discard_current = false);
  void add_point(int slice, const predict::Point& p);
  // Removes point `index` of `slice` (in the order they were added).
  void remove_point(int slice, size_t index);
  void set_box(int slice, const predict::Box& box);
  void clear_box(int slice);
  void clear_slice(int slice);
  // Propagates the current object from its annotated slices (prompted slices
  // with a non-empty mask, else every slice with a mask; plus stop annotations
  // beyond them). Slices the propagation visits are overwritten, so after a
  // correction on a drifting slice, propagate again.
  PropagationResult propagate(const PropagationOptions& options = {});
  // Commits the current object; returns its label. With `overwrite` it
  // replaces voxels of earlier objects, otherwise those stay theirs.
  uint16_t commit(bool overwrite = false);
  // Takes a committed object out of the label map and makes it the current one
  // (its masks kept, no prompts), to correct it and commit it again.
  uint16_t edit_object(uint16_t label);
  // Drops the current (uncommitted) object.
  void discard();
  // Removes a committed object.
  void delete_object(uint16_t label);
  bool undo();
  bool redo();
  size_t undo_depth() const { return undo_.size(); }
  size_t redo_depth() const { return redo_.size(); }

  // --- queries
  // Committed labels of slice z (H*W, row-major).
  std::vector<uint16_t> labels(int z) const;
  // The current object's mask on slice z (empty if none).
  BinaryMask current_mask(int z) const;
  // Voxels per committed label.
  std::map<uint16_t, int64_t> label_counts() const;

  // --- persistence
  nlohmann::json to_json() const;
  // Replaces the state (InputError if it does not fit this image).
  void from_json(const nlohmann::json& j);
  // Writes the state to `path` after every change (atomically); "" = off.
  void set_autosave(const std::string& path);
  // Loads an autosaved state.
  void restore(const std::string& path);

  // --- scripted actions: {"action": "add_point", "slice": 3, "x": 10, "y": 20, "label": 1}, ...
  // (see docs/volumes.md). Returns a small JSON result. InputError for bad
  // actions; the state is then unchanged.
  nlohmann::json apply(const nlohmann::json& action);

 private:
  void check_slice(int slice) const;
  ObjectState& current(const char* action);
  void resegment(int slice);
  void push_undo();
  void changed();
  SliceSegmenter& segmenter_;
  SessionState state_;
  std::vector<SessionState> undo_, redo_;
  std::string autosave_;
};

}  // namespace medicosam::segment
