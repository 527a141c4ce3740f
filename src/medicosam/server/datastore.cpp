#include "medicosam/server/datastore.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/server/requests.hpp"

namespace medicosam::server {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kExtensions[] = {".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"};

bool ends_with(const std::string& s, const std::string& e) {
  return s.size() > e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

// True if `p` exists and is not a symbolic link (lstat).
bool exists_no_link(const fs::path& p, bool* is_dir = nullptr) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return false;
  if (S_ISLNK(st.st_mode)) return false;
  if (is_dir) *is_dir = S_ISDIR(st.st_mode);
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
}

// Seconds since the Unix epoch (what MONAI Label reports as "ts").
double mtime(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9;
}

}  // namespace

std::string image_extension(const std::string& filename) {
  std::string l = filename;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* e : kExtensions)
    if (ends_with(l, e)) return e;
  return "";
}

Datastore::Datastore(std::string root) : root_(std::move(root)) {
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) throw InputError("--datastore '" + root_ + "' is not a folder");
  root_ = fs::canonical(root_).string();
  fs::create_directories(fs::path(root_) / "labels" / "final", ec);
  fs::create_directories(fs::path(root_) / ".medicosam" / "info", ec);
  if (ec) throw IoError("cannot create folders in the datastore '" + root_ + "': " + ec.message());
}

std::string Datastore::description() const { return "folder " + root_; }

std::optional<std::string> Datastore::find_image(const std::string& id) const {
  check_id(id, "image id");
  const fs::path root(root_);
  for (const char* e : kExtensions) {
    const auto p = root / (id + e);
    bool dir = false;
    if (exists_no_link(p, &dir) && !dir) return p.string();
  }
  bool dir = false;
  const auto d = root / id;
  if (id != "labels" && exists_no_link(d, &dir) && dir) return d.string();  // a DICOM series
  return std::nullopt;
}

std::vector<std::string> Datastore::image_ids() const {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || name == "labels" || e.is_symlink()) continue;
    if (e.is_directory()) {
      if (is_valid_id(name)) ids.push_back(name);
      continue;
    }
    const auto ext = image_extension(name);
    if (ext.empty()) continue;
    const auto id = name.substr(0, name.size() - ext.size());
    if (is_valid_id(id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

bool Datastore::has_image(const std::string& id) const { return find_image(id).has_value(); }

std::string Datastore::image_path(const std::string& id) const {
  auto p = find_image(id);
  if (!p) throw HttpError(404, "no image '" + id + "' in the datastore");
  return *p;
}

void Datastore::add_image(const std::string& id, const std::string& filename, const std::string& bytes) {
  check_id(id, "image id");
  const auto ext = image_extension(filename);
  if (ext.empty()) {
    throw HttpError(400, "'" + fs::path(filename).filename().string() +
                             "': unsupported image file (use .nii.gz, .nii, .nrrd, .mha, .png, .jpg, .tif or .bmp)");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  const fs::path root(root_);
  const auto tmp = root / (".upload-" + id + ext);
  write_file_atomic(tmp.string(), bytes);
  try {
    io::probe_image(tmp.string());  // header checks: a broken upload is refused before it is listed
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw HttpError(400, std::string("the uploaded image cannot be read: ") + e.what());
  }
  for (const char* e : kExtensions) {  // one file per id
    std::error_code ec;
    if (std::string(e) != ext) fs::remove(root / (id + e), ec);
  }
  fs::rename(tmp, root / (id + ext));
}

void Datastore::delete_image(const std::string& id) {
  const auto p = image_path(id);
  std::lock_guard<std::mutex> lock(mutex_);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    fs::remove_all(p, ec);
  } else {
    fs::remove(p, ec);
  }
  for (const auto& tag : local_label_tags(id)) fs::remove(label_path(id, tag), ec);
  fs::remove(info_path(id + ".json"), ec);
}

std::string Datastore::label_path(const std::string& id, const std::string& tag) const {
  check_id(id, "image id");
  check_id(tag, "label tag");
  return (fs::path(root_) / "labels" / tag / (id + ".nii.gz")).string();
}

std::vector<std::string> Datastore::label_tags(const std::string& id) const { return local_label_tags(id); }

std::vector<std::string> Datastore::local_label_tags(const std::string& id) const {
  check_id(id, "image id");
  std::vector<std::string> tags;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(root_) / "labels", ec)) {
    const auto tag = e.path().filename().string();
    if (!e.is_directory() || e.is_symlink() || !is_valid_id(tag)) continue;
    if (exists_no_link(e.path() / (id + ".nii.gz"))) tags.push_back(tag);
  }
  std::sort(tags.begin(), tags.end());
  return tags;
}

bool Datastore::has_label(const std::string& id, const std::string& tag) const { return has_local_label(id, tag); }

bool Datastore::has_local_label(const std::string& id, const std::string& tag) const {
  return exists_no_link(label_path(id, tag));
}

std::string Datastore::label_file(const std::string& id, const std::string& tag) {
  if (!has_local_label(id, tag)) throw HttpError(404, "image '" + id + "' has no label '" + tag + "'");
  return label_path(id, tag);
}

void Datastore::delete_label(const std::string& id, const std::string& tag) {
  if (!has_local_label(id, tag)) throw HttpError(404, "image '" + id + "' has no label '" + tag + "' here");
  std::error_code ec;
  fs::remove(label_path(id, tag), ec);
  fs::remove(info_path(id + "." + tag + ".label.json"), ec);
}

std::string Datastore::info_path(const std::string& name) const {
  return (fs::path(root_) / ".medicosam" / "info" / name).string();
}

json Datastore::read_info(const std::string& name) const {
  std::error_code ec;
  const auto p = info_path(name);
  if (!fs::exists(p, ec)) return json::object();
  try {
    auto j = json::parse(read_file(p));
    return j.is_object() ? j : json::object();
  } catch (const std::exception&) {
    return json::object();  // an unreadable info is not worth failing a request for
  }
}

json Datastore::image_info(const std::string& id) const {
  const auto p = image_path(id);
  json info = read_info(id + ".json");
  info["name"] = fs::path(p).filename().string();
  info["ext"] = fs::is_directory(p) ? "" : image_extension(p);
  info["ts"] = mtime(p);
  return info;
}

void Datastore::set_image_info(const std::string& id, const json& info) {
  if (!has_image(id)) throw HttpError(404, "no image '" + id + "' in the datastore");
  if (!info.is_object()) throw HttpError(400, "image info must be a JSON object");
  std::lock_guard<std::mutex> lock(mutex_);
  json merged = read_info(id + ".json");
  merged.update(info);
  write_file_atomic(info_path(id + ".json"), merged.dump(2));
}

json Datastore::label_info(const std::string& id, const std::string& tag) const {
  if (!has_label(id, tag)) throw HttpError(404, "image '" + id + "' has no label '" + tag + "'");
  json info = read_info(id + "." + tag + ".label.json");
  info["ext"] = ".nii.gz";
  info["ts"] = mtime(label_path(id, tag));
  return info;
}

void Datastore::set_label_info(const std::string& id, const std::string& tag, const json& info) {
  if (!info.is_object()) throw HttpError(400, "label info must be a JSON object");
  check_id(id, "image id");
  check_id(tag, "label tag");
  std::lock_guard<std::mutex> lock(mutex_);
  json merged = read_info(id + "." + tag + ".label.json");
  merged.update(info);
  write_file_atomic(info_path(id + "." + tag + ".label.json"), merged.dump(2));
}

void Datastore::save_label(const std::string& id, const std::string& tag, const io::LabelMap& labels,
                           const io::Volume& source, const json& info) {
  (void)source;
  const auto path = label_path(id, tag);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  io::write_label_map(path, labels);
  set_label_info(id, tag, info);
}

std::vector<std::string> Datastore::unlabeled(const std::string& tag) const {
  std::vector<std::string> out;
  for (const auto& id : image_ids())
    if (!has_label(id, tag)) out.push_back(id);
  return out;
}

json Datastore::describe(const std::string& output) const {
  const auto ids = image_ids();
  if (output == "stats") {
    json tags = json::object();
    int64_t completed = 0;
    for (const auto& id : ids) {
      const auto t = label_tags(id);
      for (const auto& tag : t) tags[tag] = tags.value(tag, 0) + 1;
      if (std::find(t.begin(), t.end(), "final") != t.end()) ++completed;
    }
    return {{"total", ids.size()}, {"completed", completed}, {"label_tags", tags}, {"train", completed}};
  }
  if (output == "train") {
    json list = json::array();
    for (const auto& id : ids)
      if (has_label(id, "final"))
        list.push_back({{"image", image_path(id)}, {"label", label_path(id, "final")}});
    return list;
  }
  json objects = json::object();
  for (const auto& id : ids) {
    json labels = json::object();
    for (const auto& tag : label_tags(id)) labels[tag] = {{"ext", ".nii.gz"}, {"info", label_info(id, tag)}};
    const auto info = image_info(id);
    objects[id] = {{"image", {{"ext", info["ext"]}, {"info", info}}}, {"labels", labels}};
  }
  return {{"name", fs::path(root_).filename().string()},
          {"description", "medicosam folder datastore"},
          {"images_dir", "."},
          {"labels_dir", "labels"},
          {"objects", objects}};
}

}  // namespace medicosam::server
