#include "medicosam/segment/image_session.hpp"

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/write.hpp"

namespace medicosam::segment {
using nlohmann::json;

namespace {
std::shared_ptr<SliceSegmenter> checked(std::shared_ptr<SliceSegmenter> seg, const VolumeSlices& s) {
  if (!seg) throw Error("ImageSession: no segmenter");
  if (!(seg->slice_size() == s.model_size()) || seg->num_slices() != s.count())
    throw InputError("the segmenter's slices do not match the image's");
  return seg;
}
}  // namespace

ImageSession::ImageSession(std::shared_ptr<const VolumeSlices> slices,
                           std::shared_ptr<SliceSegmenter> segmenter, std::string source_path)
    : slices_(std::move(slices)),
      segmenter_(checked(std::move(segmenter), *slices_)),
      source_path_(std::move(source_path)),
      session_(*segmenter_) {}

json ImageSession::to_model(const json& a) const {
  if (!slices_->resampled() || !a.is_object()) return a;
  json b = a;
  if (a.contains("x") && a.contains("y") && a["x"].is_number() && a["y"].is_number()) {
    predict::Prompt p;
    p.points = {{a["x"].get<double>(), a["y"].get<double>(), 1}};
    const auto q = slices_->prompt_to_model(p);
    b["x"] = q.points[0].x;
    b["y"] = q.points[0].y;
  }
  if (a.contains("box") && a["box"].is_array() && a["box"].size() == 4) {
    for (const auto& v : a["box"])
      if (!v.is_number()) return a;  // Session reports the bad box
    predict::Prompt p;
    p.box = predict::Box{a["box"][0].get<double>(), a["box"][1].get<double>(),
                         a["box"][2].get<double>(), a["box"][3].get<double>()};
    const auto q = slices_->prompt_to_model(p);
    b["box"] = {q.box->x0, q.box->y0, q.box->x1, q.box->y1};
  }
  return b;
}

json ImageSession::apply(const json& action) {
  const std::string what = action.is_object() && action.contains("action") && action["action"].is_string()
                               ? action["action"].get<std::string>()
                               : "";
  if (what == "export" || what == "save") {
    if (!action.contains("path") || !action["path"].is_string())
      throw InputError("action \"" + what + "\": missing \"path\"");
    const auto path = action["path"].get<std::string>();
    if (what == "export") {
      export_labels(path);
    } else {
      write_file_atomic(path, session_.to_json().dump());
    }
    return {{"action", what}, {"path", path}};
  }
  return session_.apply(to_model(action));
}

io::LabelMap ImageSession::committed_labels() const {
  std::map<int, std::vector<uint16_t>> per_slice;
  for (const auto& [z, lab] : session_.state().committed) per_slice[z] = *lab;
  auto labels = slices_->label_map(per_slice);
  for (const auto& [l, name] : session_.state().names) {
    io::SegmentInfo info;
    info.label = l;
    info.name = name;
    labels.segments.push_back(info);
  }
  return labels;
}

io::LabelMap ImageSession::display_labels() const {
  auto labels = committed_labels();
  const auto& cur = session_.state().current;
  if (!cur) return labels;
  for (const auto& [z, m] : cur->masks) {
    const auto sm = slices_->mask_to_slice(*m);
    const auto pl = slices_->placement(z);
    for (int64_t r = 0; r < sm.height; ++r) {
      for (int64_t c = 0; c < sm.width; ++c) {
        if (!sm.data[static_cast<size_t>(r * sm.width + c)]) continue;
        const auto v = pl.voxel(r, c);
        const int64_t o = labels.offset(v[0], v[1], v[2]);
        if (labels.data()[o] == 0) labels.data()[o] = cur->label;  // the commit's default policy
      }
    }
  }
  io::SegmentInfo info;
  info.label = cur->label;
  info.name = cur->name;
  labels.segments.push_back(info);
  return labels;
}

void ImageSession::export_labels(const std::string& path) const {
  io::write_segmentation(path, committed_labels(), slices_->volume(), source_path_);
}

}  // namespace medicosam::segment
