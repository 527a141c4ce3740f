#pragma once
// The folder datastore: a folder of images (NIfTI, NRRD, MetaImage, PNG/JPEG,
// or DICOM series in sub-folders), the labels kept beside them in
// DIR/labels/<tag>/<id>.nii.gz (MONAI Label's layout: "final" is the label a
// person saved), and small JSON infos in DIR/.medicosam/. An image's id is its
// file name without the extension (the folder name for DICOM).
//
// Ids are checked (requests.hpp) and every path is resolved inside the
// folder; symbolic links are not followed. Writes are atomic (temporary file
// renamed into place), so a crash never leaves a half-written image or label.
// Thread-safe.
//
// The DICOMweb datastore (dicomweb.hpp) derives from this class: its local
// cache has this layout (series folders, label copies, infos) and it overrides
// where images come from and where saved labels go.
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "medicosam/io/volume.hpp"

namespace medicosam::server {

class Datastore {
 public:
  // Creates DIR/labels and DIR/.medicosam if missing. InputError if DIR is
  // not a folder.
  explicit Datastore(std::string root);
  virtual ~Datastore() = default;
  Datastore(const Datastore&) = delete;
  Datastore& operator=(const Datastore&) = delete;
  const std::string& root() const { return root_; }
  // For the log: "folder DIR" or the PACS URL.
  virtual std::string description() const;

  virtual std::vector<std::string> image_ids() const;  // sorted
  virtual bool has_image(const std::string& id) const;
  // The image's file (or DICOM folder); HttpError 404 if there is none.
  virtual std::string image_path(const std::string& id) const;
  // Stores an uploaded image under `id`, keeping the extension of `filename`
  // (which must be a readable image format: HttpError 400 otherwise, and the
  // upload is removed). Replaces an image of the same id.
  virtual void add_image(const std::string& id, const std::string& filename, const std::string& bytes);
  // Removes the image, its labels and infos.
  virtual void delete_image(const std::string& id);

  virtual std::vector<std::string> label_tags(const std::string& id) const;
  virtual bool has_label(const std::string& id, const std::string& tag) const;
  // Where the label of `id` with `tag` is (or would be): DIR/labels/tag/id.nii.gz.
  std::string label_path(const std::string& id, const std::string& tag) const;
  // The label's file to serve: label_path, after fetching it where the
  // datastore keeps labels elsewhere (DICOMweb: a SEG on the PACS). 404 if none.
  virtual std::string label_file(const std::string& id, const std::string& tag);
  void delete_label(const std::string& id, const std::string& tag);

  virtual nlohmann::json image_info(const std::string& id) const;
  void set_image_info(const std::string& id, const nlohmann::json& info);
  nlohmann::json label_info(const std::string& id, const std::string& tag) const;
  void set_label_info(const std::string& id, const std::string& tag, const nlohmann::json& info);
  // Saves `labels` (drawn on the image `id`, which was read as `source`) as
  // its label `tag` (label_path, .nii.gz) and merges `info` into the label's
  // info. Atomic.
  virtual void save_label(const std::string& id, const std::string& tag, const io::LabelMap& labels,
                          const io::Volume& source, const nlohmann::json& info);

  // Images without a label of `tag`, sorted.
  std::vector<std::string> unlabeled(const std::string& tag = "final") const;
  // MONAI Label's GET /datastore/?output=all|stats|train.
  virtual nlohmann::json describe(const std::string& output) const;

 protected:
  // The image's file or folder in DIR, if there is one (no PACS lookup).
  std::optional<std::string> find_image(const std::string& id) const;
  std::string info_path(const std::string& name) const;
  nlohmann::json read_info(const std::string& name) const;
  // Labels of `id` kept in DIR/labels/<tag>/.
  std::vector<std::string> local_label_tags(const std::string& id) const;
  bool has_local_label(const std::string& id, const std::string& tag) const;

 private:
  std::string root_;
  mutable std::mutex mutex_;
};

// The extension of a supported image file name (".nii.gz", ".nrrd", ...;
// lower case), or "" if it is not one.
std::string image_extension(const std::string& filename);

}  // namespace medicosam::server
