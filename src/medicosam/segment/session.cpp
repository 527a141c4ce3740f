#include "medicosam/segment/session.hpp"

#include <algorithm>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::segment {
using nlohmann::json;

Session::Session(SliceSegmenter& segmenter) : segmenter_(segmenter) {}

void Session::check_slice(int slice) const {
  if (slice < 0 || slice >= num_slices()) {
    throw InputError("slice " + std::to_string(slice) + " is outside 0.." +
                     std::to_string(num_slices() - 1));
  }
}

ObjectState& Session::current(const char* action) {
  if (!state_.current)
    throw InputError(std::string(action) + ": no current object (start one with new_object)");
  return *state_.current;
}

void Session::push_undo() {
  undo_.push_back(state_);
  redo_.clear();
}

void Session::changed() {
  if (!autosave_.empty()) write_file_atomic(autosave_, to_json().dump());
}

void Session::resegment(int slice) {
  auto& obj = *state_.current;
  const auto it = obj.prompts.find(slice);
  if (it == obj.prompts.end() || it->second.empty() || it->second.is_stop()) {
    obj.masks.erase(slice);
    if (it != obj.prompts.end() && it->second.empty()) obj.prompts.erase(it);
    return;
  }
  predict::Prompt p;
  p.points = it->second.points;
  p.box = it->second.box;
  auto m = segment_from_prompt(segmenter_, slice, p);
  if (m.empty()) {
    obj.masks.erase(slice);
  } else {
    obj.masks[slice] = std::make_shared<const BinaryMask>(std::move(m));
  }
}

uint16_t Session::new_object(const std::string& name, uint16_t label, bool discard_current) {
  if (state_.current && !discard_current) {
    throw InputError("new_object: object " + std::to_string(state_.current->label) +
                     " is not committed (commit or discard it first)");
  }
  if (label != 0 && state_.names.count(label)) {
    throw InputError("new_object: label " + std::to_string(label) + " is already committed");
  }
  push_undo();
  ObjectState o;
  o.label = label ? label : state_.next_label;
  while (!label && state_.names.count(o.label)) ++o.label;
  o.name = name.empty() ? "object " + std::to_string(o.label) : name;
  state_.current = o;
  changed();
  return o.label;
}

void Session::add_point(int slice, const predict::Point& p) {
  check_slice(slice);
  current("add_point");
  predict::Prompt probe;
  probe.points = {p};
  predict::validate_prompt(probe, slice_size());
  const SessionState before = state_;
  push_undo();
  try {
    state_.current->prompts[slice].points.push_back(p);
    resegment(slice);
  } catch (...) {
    state_ = before;
    undo_.pop_back();
    throw;
  }
  changed();
}

void Session::remove_point(int slice, size_t index) {
  check_slice(slice);
  auto& obj = current("remove_point");
  const auto it = obj.prompts.find(slice);
  if (it == obj.prompts.end() || index >= it->second.points.size()) {
    throw InputError("remove_point: slice " + std::to_string(slice) + " has no point " +
                     std::to_string(index));
  }
  push_undo();
  auto& pts = state_.current->prompts[slice].points;
  pts.erase(pts.begin() + static_cast<std::ptrdiff_t>(index));
  resegment(slice);
  changed();
}

void Session::set_box(int slice, const predict::Box& box) {
  check_slice(slice);
  current("set_box");
  predict::Prompt probe;
  probe.box = box;
  predict::validate_prompt(probe, slice_size());
  push_undo();
  state_.current->prompts[slice].box = box;
  resegment(slice);
  changed();
}

void Session::clear_box(int slice) {
  check_slice(slice);
  current("clear_box");
  push_undo();
  state_.current->prompts[slice].box.reset();
  resegment(slice);
  changed();
}

void Session::clear_slice(int slice) {
  check_slice(slice);
  current("clear_slice");
  push_undo();
  state_.current->prompts.erase(slice);
  state_.current->masks.erase(slice);
  changed();
}

PropagationResult Session::propagate(const PropagationOptions& options) {
  auto& obj = current("propagate");
  std::vector<int> annotated;
  int lowest_stop = -1, highest_stop = -1;
  // Annotated = the slices the user prompted (with a mask): re-propagating after a
  // correction starts from the corrected slice and overwrites what the previous
  // propagation made between and beyond the prompted slices (micro_sam's
  // annotator). An object without prompts (an edited committed one) starts from
  // all its masks.
  for (const auto& [z, p] : obj.prompts)
    if (!p.is_stop() && obj.masks.count(z)) annotated.push_back(z);
  if (annotated.empty())
    for (const auto& [z, m] : obj.masks) annotated.push_back(z);
  if (annotated.empty())
    throw InputError("propagate: the current object has no segmented slice yet");
  const int lo = *std::min_element(annotated.begin(), annotated.end());
  const int hi = *std::max_element(annotated.begin(), annotated.end());
  for (const auto& [z, p] : obj.prompts) {
    if (!p.is_stop()) continue;
    if (z < lo && (lowest_stop < 0 || z > lowest_stop)) lowest_stop = z;  // the nearest stop below
    if (z > hi && (highest_stop < 0 || z < highest_stop)) highest_stop = z;
  }
  PropagationOptions opt = options;
  opt.stop_lower = lowest_stop >= 0;
  opt.stop_upper = highest_stop >= 0;
  if (opt.stop_lower) annotated.push_back(lowest_stop);
  if (opt.stop_upper) annotated.push_back(highest_stop);
  const auto size = slice_size();
  std::vector<BinaryMask> seg(num_slices(), BinaryMask(size.height, size.width));
  for (const auto& [z, m] : obj.masks) seg[z] = *m;
  const auto r =
      segment_mask_in_volume(segmenter_, seg, annotated, opt);  // may throw: state untouched
  push_undo();
  auto& cur = *state_.current;
  // Slices outside the stops are left alone (their masks cannot come from this propagation).
  for (int z = 0; z < num_slices(); ++z) {
    if (cur.masks.count(z) && cur.masks[z]->data == seg[z].data) continue;
    if (seg[z].empty()) {
      if (z >= r.z_min && z <= r.z_max) cur.masks.erase(z);
    } else {
      cur.masks[z] = std::make_shared<const BinaryMask>(std::move(seg[z]));
    }
  }
  changed();
  return r;
}

uint16_t Session::commit(bool overwrite) {
  auto& obj = current("commit");
  push_undo();
  const auto size = slice_size();
  const size_t n = static_cast<size_t>(size.height) * size.width;
  for (const auto& [z, m] : obj.masks) {
    std::vector<uint16_t> lab =
        state_.committed.count(z) ? *state_.committed[z] : std::vector<uint16_t>(n, 0);
    for (size_t i = 0; i < n; ++i) {
      if (m->data[i] && (lab[i] == 0 || overwrite)) lab[i] = obj.label;
    }
    state_.committed[z] = std::make_shared<const std::vector<uint16_t>>(std::move(lab));
  }
  state_.names[obj.label] = obj.name;
  const uint16_t label = obj.label;
  state_.next_label = std::max<uint16_t>(state_.next_label, static_cast<uint16_t>(label + 1));
  state_.current.reset();
  changed();
  return label;
}

uint16_t Session::edit_object(uint16_t label) {
  if (state_.current) {
    throw InputError("edit_object: object " + std::to_string(state_.current->label) +
                     " is not committed (commit or discard it first)");
  }
  if (!state_.names.count(label))
    throw InputError("edit_object: no committed object " + std::to_string(label));
  push_undo();
  const auto size = slice_size();
  ObjectState o;
  o.label = label;
  o.name = state_.names[label];
  for (auto& [z, lab] : state_.committed) {
    BinaryMask m(size.height, size.width);
    auto copy = *lab;
    bool any = false;
    for (size_t i = 0; i < copy.size(); ++i) {
      if (copy[i] == label) m.data[i] = 1, copy[i] = 0, any = true;
    }
    if (!any) continue;
    o.masks[z] = std::make_shared<const BinaryMask>(std::move(m));
    lab = std::make_shared<const std::vector<uint16_t>>(std::move(copy));
  }
  state_.names.erase(label);
  state_.current = std::move(o);
  changed();
  return label;
}

void Session::discard() {
  current("discard");
  push_undo();
  state_.current.reset();
  changed();
}

void Session::delete_object(uint16_t label) {
  if (!state_.names.count(label))
    throw InputError("delete_object: no committed object " + std::to_string(label));
  push_undo();
  for (auto& [z, lab] : state_.committed) {
    auto copy = *lab;
    std::replace(copy.begin(), copy.end(), label, uint16_t{0});
    lab = std::make_shared<const std::vector<uint16_t>>(std::move(copy));
  }
  state_.names.erase(label);
  changed();
}

bool Session::undo() {
  if (undo_.empty()) return false;
  redo_.push_back(state_);
  state_ = undo_.back();
  undo_.pop_back();
  changed();
  return true;
}

bool Session::redo() {
  if (redo_.empty()) return false;
  undo_.push_back(state_);
  state_ = redo_.back();
  redo_.pop_back();
  changed();
  return true;
}

std::vector<uint16_t> Session::labels(int z) const {
  check_slice(z);
  const auto size = slice_size();
  const auto it = state_.committed.find(z);
  if (it == state_.committed.end())
    return std::vector<uint16_t>(static_cast<size_t>(size.height) * size.width, 0);
  return *it->second;
}

BinaryMask Session::current_mask(int z) const {
  check_slice(z);
  const auto size = slice_size();
  if (state_.current) {
    const auto it = state_.current->masks.find(z);
    if (it != state_.current->masks.end()) return *it->second;
  }
  return BinaryMask(size.height, size.width);
}

std::map<uint16_t, int64_t> Session::label_counts() const {
  std::map<uint16_t, int64_t> c;
  for (const auto& [z, lab] : state_.committed)
    for (auto v : *lab)
      if (v) ++c[v];
  return c;
}

// ------------------------------------------------------------------ persistence

namespace {

// Run-length encoding of a row-major slice: [[value, count], ...].
template <typename T>
json rle(const std::vector<T>& v) {
  json runs = json::array();
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j < v.size() && v[j] == v[i]) ++j;
    runs.push_back({v[i], j - i});
    i = j;
  }
  return runs;
}

template <typename T>
std::vector<T> unrle(const json& runs, size_t n, const std::string& what) {
  std::vector<T> v;
  v.reserve(n);
  for (const auto& r : runs) {
    const auto count = r.at(1).get<size_t>();
    if (v.size() + count > n) throw InputError(what + ": more pixels than the image has");
    v.insert(v.end(), count, r.at(0).get<T>());
  }
  if (v.size() != n) throw InputError(what + ": fewer pixels than the image has");
  return v;
}

json point_json(const predict::Point& p) {
  return {{"x", p.x}, {"y", p.y}, {"label", p.label}};
}

}  // namespace

json Session::to_json() const {
  const auto size = slice_size();
  json j;
  j["format"] = "medicosam-session-1";
  j["slices"] = num_slices();
  j["height"] = size.height;
  j["width"] = size.width;
  j["next_label"] = state_.next_label;
  json objects = json::array();
  for (const auto& [label, name] : state_.names)
    objects.push_back({{"label", label}, {"name", name}});
  j["objects"] = objects;
  json committed = json::object();
  for (const auto& [z, lab] : state_.committed) committed[std::to_string(z)] = rle(*lab);
  j["committed"] = committed;
  if (state_.current) {
    const auto& o = *state_.current;
    json cur{{"label", o.label}, {"name", o.name}};
    json prompts = json::object();
    for (const auto& [z, p] : o.prompts) {
      json pj{{"points", json::array()}};
      for (const auto& pt : p.points) pj["points"].push_back(point_json(pt));
      if (p.box) pj["box"] = {p.box->x0, p.box->y0, p.box->x1, p.box->y1};
      prompts[std::to_string(z)] = pj;
    }
    cur["prompts"] = prompts;
    json masks = json::object();
    for (const auto& [z, m] : o.masks) masks[std::to_string(z)] = rle(m->data);
    cur["masks"] = masks;
    j["current"] = cur;
  } else {
    j["current"] = nullptr;
  }
  return j;
}

void Session::from_json(const json& j) {
  const auto size = slice_size();
  const size_t n = static_cast<size_t>(size.height) * size.width;
  SessionState s;
  try {
    if (j.value("format", "") != "medicosam-session-1")
      throw InputError("not a medicosam session state");
    if (j.at("slices").get<int>() != num_slices() || j.at("height").get<int>() != size.height ||
        j.at("width").get<int>() != size.width) {
      throw InputError("the session state is for " + std::to_string(j.at("slices").get<int>()) +
                       " slices of " + std::to_string(j.at("width").get<int>()) + "x" +
                       std::to_string(j.at("height").get<int>()) + ", this image has " +
                       std::to_string(num_slices()) + " of " + std::to_string(size.width) + "x" +
                       std::to_string(size.height));
    }
    s.next_label = j.at("next_label").get<uint16_t>();
    for (const auto& o : j.at("objects"))
      s.names[o.at("label").get<uint16_t>()] = o.at("name").get<std::string>();
    for (const auto& [k, runs] : j.at("committed").items()) {
      const int z = std::stoi(k);
      check_slice(z);
      s.committed[z] =
          std::make_shared<const std::vector<uint16_t>>(unrle<uint16_t>(runs, n, "slice " + k));
    }
    if (!j.at("current").is_null()) {
      const auto& c = j["current"];
      ObjectState o;
      o.label = c.at("label").get<uint16_t>();
      o.name = c.at("name").get<std::string>();
      for (const auto& [k, pj] : c.at("prompts").items()) {
        SlicePrompts p;
        for (const auto& pt : pj.at("points"))
          p.points.push_back(
              {pt.at("x").get<double>(), pt.at("y").get<double>(), pt.at("label").get<int>()});
        if (pj.contains("box")) {
          const auto& b = pj["box"];
          p.box = predict::Box{b.at(0).get<double>(), b.at(1).get<double>(), b.at(2).get<double>(),
                               b.at(3).get<double>()};
        }
        o.prompts[std::stoi(k)] = p;
      }
      for (const auto& [k, runs] : c.at("masks").items()) {
        o.masks[std::stoi(k)] = std::make_shared<const BinaryMask>(
            size.height, size.width, unrle<uint8_t>(runs, n, "mask of slice " + k));
      }
      s.current = o;
    }
  } catch (const json::exception& e) {
    throw InputError(std::string("malformed session state: ") + e.what());
  } catch (const std::invalid_argument&) {
    throw InputError("malformed session state: bad slice key");
  }
  state_ = std::move(s);
  undo_.clear();
  redo_.clear();
}

void Session::set_autosave(const std::string& path) {
  autosave_ = path;
  changed();
}

void Session::restore(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError("'" + path + "' is not a session state (" + e.what() + ")");
  }
  try {
    from_json(j);
  } catch (const InputError& e) {
    throw InputError("'" + path + "': " + e.what());
  }
  changed();
}

// ---------------------------------------------------------------- script actions

namespace {

template <typename T>
T get(const json& a, const char* key) {
  if (!a.contains(key)) throw InputError(std::string("missing \"") + key + "\"");
  try {
    return a[key].get<T>();
  } catch (const json::exception&) {
    throw InputError(std::string("\"") + key + "\" has the wrong type");
  }
}

template <typename T>
T get_or(const json& a, const char* key, T fallback) {
  return a.contains(key) ? get<T>(a, key) : fallback;
}

}  // namespace

json Session::apply(const json& a) {
  if (!a.is_object()) throw InputError("an action must be a JSON object");
  const std::string what = get<std::string>(a, "action");
  try {
    json r{{"action", what}};
    if (what == "new_object") {
      r["label"] = new_object(get_or<std::string>(a, "name", ""), get_or<uint16_t>(a, "label", 0),
                              get_or<bool>(a, "discard_current", false));
    } else if (what == "add_point") {
      const int z = get<int>(a, "slice");
      add_point(z, {get<double>(a, "x"), get<double>(a, "y"), get_or<int>(a, "label", 1)});
      r["mask_pixels"] = current_mask(z).area();
    } else if (what == "remove_point") {
      const int z = get<int>(a, "slice");
      if (a.contains("index")) {
        remove_point(z, get<size_t>(a, "index"));
      } else {  // the point nearest to (x, y)
        const double x = get<double>(a, "x"), y = get<double>(a, "y");
        const auto& obj = current("remove_point");
        const auto it = obj.prompts.find(z);
        if (it == obj.prompts.end() || it->second.points.empty()) {
          throw InputError("slice " + std::to_string(z) + " has no points");
        }
        size_t best = 0;
        double bd = 1e300;
        for (size_t i = 0; i < it->second.points.size(); ++i) {
          const auto& p = it->second.points[i];
          const double d = (p.x - x) * (p.x - x) + (p.y - y) * (p.y - y);
          if (d < bd) bd = d, best = i;
        }
        remove_point(z, best);
      }
      r["mask_pixels"] = current_mask(z).area();
    } else if (what == "set_box") {
      const int z = get<int>(a, "slice");
      const auto b = get<std::vector<double>>(a, "box");
      if (b.size() != 4) throw InputError("\"box\" must be [x0, y0, x1, y1]");
      set_box(z, {b[0], b[1], b[2], b[3]});
      r["mask_pixels"] = current_mask(z).area();
    } else if (what == "clear_box") {
      clear_box(get<int>(a, "slice"));
    } else if (what == "clear_slice") {
      clear_slice(get<int>(a, "slice"));
    } else if (what == "propagate") {
      PropagationOptions o;
      if (a.contains("projection"))
        o.projection = projection_flags(parse_projection(get<std::string>(a, "projection")));
      o.iou_threshold = get_or<double>(a, "iou_threshold", o.iou_threshold);
      o.box_extension = get_or<double>(a, "box_extension", o.box_extension);
      const auto res = propagate(o);
      r["z_min"] = res.z_min;
      r["z_max"] = res.z_max;
      r["decoded_slices"] = res.steps.size();
    } else if (what == "commit") {
      r["label"] = commit(get_or<bool>(a, "overwrite", false));
    } else if (what == "edit_object") {
      r["label"] = edit_object(get<uint16_t>(a, "label"));
    } else if (what == "discard") {
      discard();
    } else if (what == "delete_object") {
      delete_object(get<uint16_t>(a, "label"));
    } else if (what == "undo") {
      r["done"] = undo();
    } else if (what == "redo") {
      r["done"] = redo();
    } else {
      throw InputError(
          "unknown action (expected new_object, add_point, remove_point, set_box, clear_box, "
          "clear_slice, propagate, commit, edit_object, discard, delete_object, undo, redo)");
    }
    return r;
  } catch (const InputError& e) {
    throw InputError("action \"" + what + "\": " + e.what());
  }
}

}  // namespace medicosam::segment
