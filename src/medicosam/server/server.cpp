#include "medicosam/server/server.hpp"

#include <httplib.h>
#include <signal.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <regex>
#include <thread>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/model/unetr.hpp"
#include "medicosam/segment/amg.hpp"
#include "medicosam/segment/semantic.hpp"
#include "medicosam/server/datastore.hpp"
#include "medicosam/server/embedding_store.hpp"
#include "medicosam/server/requests.hpp"
#include "medicosam/server/sessions.hpp"

namespace medicosam::server {
namespace fs = std::filesystem;
using httplib::Request;
using httplib::Response;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kVersion = "0.1.0";

double seconds_since_epoch() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}


void reply_json(Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

void reply_file(Response& res, std::string bytes, const std::string& content_type, const std::string& filename) {
  res.status = 200;
  res.set_header("Content-Disposition", "attachment; filename=\"" + filename + "\"");
  res.set_content(std::move(bytes), content_type.c_str());
}

// A multipart/form-data reply as MONAI Label sends it (requests_toolbelt):
// a "params" part without filename and an "image" part with one.
void reply_multipart(Response& res, const json& params, const std::string& bytes, const std::string& filename) {
  const std::string b = "medicosam-" + random_hex(24);
  std::string body;
  body += "--" + b + "\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n";
  body += params.dump() + "\r\n";
  body += "--" + b + "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + filename +
          "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
  body += bytes + "\r\n--" + b + "--\r\n";
  res.status = 200;
  res.set_content(std::move(body), ("multipart/form-data; boundary=" + b).c_str());
}

// The value of a form field or uploaded file ("" when absent).
std::string form_value(const Request& req, const std::string& name) {
  return req.has_file(name) ? req.get_file_value(name).content : std::string();
}

// A JSON object from the "params" form field, else the body, else the query's "params".
json request_params(const Request& req) {
  if (req.has_file("params")) return parse_json_object(form_value(req, "params"), "params");
  const auto ct = req.get_header_value("Content-Type");
  if (!req.body.empty() && ct.find("json") != std::string::npos) return parse_json_object(req.body, "the request body");
  if (req.has_param("params")) return parse_json_object(req.get_param_value("params"), "params");
  if (!req.body.empty() && !req.is_multipart_form_data()) return parse_json_object(req.body, "the request body");
  return json::object();
}

std::string param(const Request& req, const std::string& name, const std::string& fallback = "") {
  return req.has_param(name) ? req.get_param_value(name) : fallback;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

// Region update: the voxels of `now` inside the bounding box of where it
// differs from `before` (same grid), x fastest, as uint16 little endian.
json region_update(const io::LabelMap& before, const io::LabelMap& now) {
  const auto& size = now.size();
  int64_t lo[3] = {size[0], size[1], size[2]}, hi[3] = {-1, -1, -1};
  const bool comparable = before.size() == now.size();
  for (int64_t z = 0; z < size[2]; ++z)
    for (int64_t y = 0; y < size[1]; ++y)
      for (int64_t x = 0; x < size[0]; ++x) {
        const int64_t o = now.offset(x, y, z);
        if (comparable && before.data()[o] == now.data()[o]) continue;
        if (!comparable && now.data()[o] == 0) continue;
        const int64_t v[3] = {x, y, z};
        for (int d = 0; d < 3; ++d) lo[d] = std::min(lo[d], v[d]), hi[d] = std::max(hi[d], v[d]);
      }
  json r;
  r["shape"] = {size[0], size[1], size[2]};
  r["dtype"] = "uint16";
  r["encoding"] = "base64";
  r["order"] = "x-fastest";
  if (hi[0] < 0) {
    r["bbox"] = nullptr;
    r["data"] = "";
    return r;
  }
  std::vector<uint8_t> bytes;
  bytes.reserve(static_cast<size_t>((hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1) * 2));
  for (int64_t z = lo[2]; z <= hi[2]; ++z)
    for (int64_t y = lo[1]; y <= hi[1]; ++y)
      for (int64_t x = lo[0]; x <= hi[0]; ++x) {
        const uint16_t v = now.at(x, y, z);
        bytes.push_back(static_cast<uint8_t>(v & 0xff));
        bytes.push_back(static_cast<uint8_t>(v >> 8));
      }
  r["bbox"] = {{lo[0], hi[0] + 1}, {lo[1], hi[1] + 1}, {lo[2], hi[2] + 1}};  // half-open
  r["data"] = base64_encode(bytes.data(), bytes.size());
  return r;
}

struct VolumeCacheEntry {
  std::shared_ptr<const io::Volume> volume;
  Clock::time_point used;
};

class App {
 public:
  explicit App(const ServerOptions& o);
  void install(httplib::Server& svr);
  void housekeeping();
  void stop() { store_->stop(); }
  const std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt>& ring() const { return ring_; }
  void set_ring(std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> r) { ring_ = std::move(r); }

 private:
  using Handler = std::function<void(const Request&, Response&)>;
  httplib::Server::Handler wrap(Handler h, bool needs_auth = true);
  std::string sanitize(std::string message) const;

  // images
  struct ImageRef {
    std::string key;   // unique per file content version (path + mtime)
    std::string path;  // file or DICOM folder
    std::string id;    // datastore id ("" for uploads)
  };
  ImageRef datastore_image(const std::string& id) const;
  ImageRef upload_image(const std::string& path) const;
  std::shared_ptr<const io::Volume> volume(const ImageRef& ref);
  std::shared_ptr<SliceEmbeddings> embeddings(const std::shared_ptr<Model>& model, const ImageRef& ref,
                                              io::Axis axis, const io::Normalization& norm);
  std::shared_ptr<Model> model(const std::string& name) const;
  // The bytes of `labels` written as `ext` (through a temporary file): a DICOM
  // SEG when `source` is given, else a label map (uint16 when asked, else the
  // smallest type that holds the labels).
  std::string write_temp(const io::LabelMap& labels, const std::string& ext, const io::Volume* source = nullptr,
                         const std::string& source_path = "", bool uint16 = false);
  // A volume (image) as .nii.gz bytes, on its own grid: what viewers get for any source format.
  std::string nifti_bytes(const io::Volume& volume);

  // MONAI Label
  json info() const;
  void infer(const Request& req, Response& res, const std::string& model);
  void put_image(const Request& req, Response& res);
  void put_label(const Request& req, Response& res);
  void next_sample(const Request& req, Response& res, const std::string& strategy);
  void put_session(const Request& req, Response& res);

  // native sessions
  std::shared_ptr<NativeSession> lease(const Request& req) { return sessions_->get(req.get_header_value("X-Lease-Token")); }
  void attach(NativeSession& s);
  void set_image(const Request& req, Response& res);
  json act(NativeSession& s, const json& action);
  void interact(const Request& req, Response& res, const std::string& what);

  ServerOptions opt_;
  std::string state_dir_;
  std::unique_ptr<Datastore> ds_;
  std::vector<std::shared_ptr<Model>> models_;
  // Models whose checkpoint carries a UNETR semantic head: name -> head ("<name>_semantic").
  std::map<std::string, std::shared_ptr<const model::SemanticHead>> heads_;
  std::unique_ptr<EmbeddingStore> store_;
  std::unique_ptr<SessionManager> sessions_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring_;
  std::mutex volumes_mutex_;
  std::map<std::string, VolumeCacheEntry> volumes_;
  std::mutex monai_mutex_;
  std::map<std::string, json> monai_sessions_;  // session_id -> session_info
};

App::App(const ServerOptions& o) : opt_(o) {
  if (opt_.datastore.empty() == opt_.studies.url.empty())
    throw InputError("serve: give either --datastore DIR (a folder of images) or --studies URL (a DICOMweb PACS)");
  if (!opt_.studies.url.empty()) {
    state_dir_ = opt_.state_dir.empty() ? default_studies_state_dir() : opt_.state_dir;
    auto studies = opt_.studies;
    if (studies.cache_dir.empty()) studies.cache_dir = default_studies_cache_dir(state_dir_, studies.url);
    ds_ = std::make_unique<DicomWebDatastore>(std::move(studies));
  } else {
    ds_ = std::make_unique<Datastore>(opt_.datastore);
    state_dir_ = opt_.state_dir.empty() ? (fs::path(ds_->root()) / ".medicosam").string() : opt_.state_dir;
  }
  fs::create_directories(fs::path(state_dir_) / "tmp");
  fs::create_directories(fs::path(state_dir_) / "uploads");
  if (opt_.models.empty()) throw InputError("serve: no model");
  for (const auto& [name, path] : opt_.models) {
    check_id(name, "model name");
    for (const auto& m : models_)
      if (m->name == name) throw InputError("serve: two models are named '" + name + "'");
    auto m = std::make_shared<Model>();
    m->name = name;
    m->path = path;
    const auto t0 = Clock::now();
    m->predictor = std::make_shared<predict::SamPredictor>(path, predict::PredictorOptions{opt_.threads, opt_.device, opt_.precision});
    spdlog::info("model '{}': {} ({} parameters, {} input, encoder {}) loaded in {:.0f} ms", name,
                 m->predictor->model().architecture, m->predictor->model().parameters,
                 m->predictor->model().img_size, m->predictor->model().precision, ms_since(t0));
    models_.push_back(m);
    try {
      auto head = std::make_shared<const model::SemanticHead>(model::SemanticHead::load(path, "", opt_.device));
      spdlog::info("model '{}': {} (served as '{}_semantic')", name, head->config().describe(), name);
      heads_[name] = std::move(head);
    } catch (const CheckpointError& e) {
      // A plain SAM checkpoint has no head; a head that is there but broken is an error.
      if (std::string(e.what()).find("no semantic segmentation head") == std::string::npos) throw;
    }
  }
  store_ = std::make_unique<EmbeddingStore>(opt_.memory_budget, (fs::path(state_dir_) / "cache").string());
  sessions_ = std::make_unique<SessionManager>(state_dir_, opt_.max_sessions, opt_.idle_timeout);
}

std::string App::sanitize(std::string m) const {
  auto replace_all = [&](const std::string& from, const std::string& to) {
    if (from.empty()) return;
    for (size_t p = m.find(from); p != std::string::npos; p = m.find(from, p + to.size())) m.replace(p, from.size(), to);
  };
  replace_all(state_dir_ + "/", "");
  replace_all(ds_->root() + "/", "");
  replace_all(ds_->root(), "<datastore>");
  // Any other absolute path: keep only the file name.
  static const std::regex abs_path(R"((^|[\s'"(])/(?:[^\s'"/]+/)+([^\s'"/]*))");
  m = std::regex_replace(m, abs_path, "$1$2");
  const auto nl = m.find('\n');  // torch appends backtraces
  if (nl != std::string::npos) m = m.substr(0, nl);
  return m.substr(0, 1000);
}

httplib::Server::Handler App::wrap(Handler h, bool needs_auth) {
  return [this, h, needs_auth](const Request& req, Response& res) {
    try {
      if (needs_auth && !opt_.api_key.empty()) {
        const auto a = req.get_header_value("Authorization");
        if (a != "Bearer " + opt_.api_key) throw HttpError(401, "missing or wrong API key (Authorization: Bearer KEY)");
      }
      h(req, res);
    } catch (const HttpError& e) {
      if (e.status() == 503) res.set_header("Retry-After", std::to_string(sessions_->retry_after()));
      reply_json(res, {{"detail", sanitize(e.what())}}, e.status());
    } catch (const IoError& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      reply_json(res, {{"detail", "the server could not write its result: " + sanitize(e.what())}}, 500);
    } catch (const InputError& e) {
      reply_json(res, {{"detail", sanitize(e.what())}}, 400);
    } catch (const json::exception& e) {  // a field of the wrong type
      reply_json(res, {{"detail", "malformed request: " + sanitize(e.what())}}, 400);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: internal error: {}", req.method, req.path, e.what());
      reply_json(res, {{"detail", "internal error (see the server log)"}}, 500);
    }
  };
}

std::shared_ptr<Model> App::model(const std::string& name) const {
  for (const auto& m : models_)
    if (m->name == name) return m;
  throw HttpError(404, "no model '" + name + "'");
}

App::ImageRef App::datastore_image(const std::string& id) const {
  ImageRef r;
  r.id = id;
  r.path = ds_->image_path(id);
  std::error_code ec;
  const auto t = fs::last_write_time(r.path, ec);
  r.key = "ds:" + id + "@" + std::to_string(t.time_since_epoch().count());
  return r;
}

App::ImageRef App::upload_image(const std::string& path) const {
  ImageRef r;
  r.path = path;
  r.key = "up:" + fs::path(path).parent_path().filename().string() + "/" + fs::path(path).filename().string();
  return r;
}

std::shared_ptr<const io::Volume> App::volume(const ImageRef& ref) {
  std::lock_guard<std::mutex> lock(volumes_mutex_);
  auto it = volumes_.find(ref.key);
  if (it != volumes_.end()) {
    it->second.used = Clock::now();
    return it->second.volume;
  }
  auto v = std::make_shared<const io::Volume>(io::read_image(ref.path));
  if (volumes_.size() >= 8) {  // keep the most recently used volumes
    auto oldest = std::min_element(volumes_.begin(), volumes_.end(),
                                   [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    volumes_.erase(oldest);
  }
  volumes_[ref.key] = {v, Clock::now()};
  return v;
}

std::shared_ptr<SliceEmbeddings> App::embeddings(const std::shared_ptr<Model>& m, const ImageRef& ref, io::Axis axis,
                                                 const io::Normalization& norm) {
  if (auto e = store_->find(*m, ref.key, axis, norm)) return e;
  return store_->open(m, ref.key, std::make_shared<segment::VolumeSlices>(volume(ref), axis, norm));
}

std::string App::write_temp(const io::LabelMap& labels, const std::string& ext, const io::Volume* source,
                            const std::string& source_path, bool uint16) {
  const ScratchPath tmp((fs::path(state_dir_) / "tmp" / ("result-" + random_hex(16) + ext)).string());
  if (source) {
    io::write_segmentation(tmp.path(), labels, *source, source_path);
  } else {
    io::LabelWriteOptions o;
    if (uint16) o.type = io::LabelWriteOptions::Type::kUInt16;
    io::write_label_map(tmp.path(), labels, o);
  }
  return read_file(tmp.path());
}

std::string App::nifti_bytes(const io::Volume& volume) {
  const ScratchPath tmp((fs::path(state_dir_) / "tmp" / ("image-" + random_hex(16) + ".nii.gz")).string());
  io::write_image(tmp.path(), volume);
  return read_file(tmp.path());
}

void App::housekeeping() {
  sessions_->reap();
  std::lock_guard<std::mutex> lock(monai_mutex_);
  const double now = seconds_since_epoch();
  for (auto it = monai_sessions_.begin(); it != monai_sessions_.end();) {
    if (now - it->second.value("last_access_ts", now) > it->second.value("expiry", 3600.0)) {
      std::error_code ec;
      fs::remove_all(fs::path(state_dir_) / "uploads" / it->first, ec);
      it = monai_sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

// ------------------------------------------------------------------ MONAI Label

json App::info() const {
  json models = json::object();
  for (const auto& m : models_) {
    const auto& s = m->predictor->model();
    const std::string what = s.architecture + ", " + std::to_string(s.parameters) + " parameters";
    models[m->name + "_2d"] = {{"type", "deepgrow"},
                               {"labels", {{"object", 1}}},
                               {"dimension", 2},
                               {"description", "SAM (" + what + "): clicks or a box on one slice -> that slice"},
                               {"config", json::object()}};
    models[m->name + "_3d"] = {
        {"type", "deepgrow"},
        {"labels", {{"object", 1}}},
        {"dimension", 3},
        {"description", "SAM (" + what + "): clicks on one slice -> the object propagated through the volume"},
        {"config", json::object()}};
    models[m->name + "_automatic"] = {
        {"type", "segmentation"},
        {"labels", json::object()},
        {"dimension", 2},
        {"description", "SAM automatic mask generator on one slice (instances, no prompts)"},
        {"config", json::object()}};
    if (const auto h = heads_.find(m->name); h != heads_.end()) {
      const auto& c = h->second->config();
      json labels = json::object();
      if (c.num_classes == 1) {
        labels["foreground"] = 1;
      } else {
        for (int64_t l = 1; l < c.num_classes; ++l) labels["class " + std::to_string(l)] = l;
      }
      models[m->name + "_semantic"] = {
          {"type", "segmentation"},
          {"labels", labels},
          {"dimension", 3},
          {"description", "automatic semantic segmentation, slice by slice (" + c.describe() + ")"},
          {"config", json::object()}};
    }
  }
  json stats;
  try {
    stats = ds_->describe("stats");
  } catch (const HttpError& e) {  // the PACS is down: the models still answer, the counts say why they are 0
    stats = {{"total", 0}, {"completed", 0}, {"label_tags", json::object()}, {"error", sanitize(e.what())}};
  }
  json datastore = {{"total", stats["total"]}, {"completed", stats["completed"]}, {"label_tags", stats["label_tags"]}};
  if (stats.contains("error")) datastore["error"] = stats["error"];
  return {{"name", "medicosam"},
          {"description", "Segment-Anything-family interactive segmentation (medicosam " + std::string(kVersion) + ")"},
          {"version", kVersion},
          {"labels", {"object"}},
          {"models", models},
          {"trainers", json::object()},
          {"strategies",
           {{"random", {{"description", "a random image without a final label"}}},
            {"first", {{"description", "the first image (by id) without a final label"}}}}},
          {"scoring", json::object()},
          {"train_stats", json::object()},
          {"datastore", datastore}};
}

void App::infer(const Request& req, Response& res, const std::string& name) {
  const auto t_start = Clock::now();
  // "<model>_2d" | "<model>_3d" | "<model>_automatic" | "<model>_semantic"
  const auto us = name.rfind('_');
  if (us == std::string::npos) throw HttpError(404, "no model '" + name + "'");
  const auto kind = name.substr(us + 1);
  if (kind != "2d" && kind != "3d" && kind != "automatic" && kind != "semantic")
    throw HttpError(404, "no model '" + name + "'");
  const auto m = model(name.substr(0, us));
  const auto head = heads_.find(m->name);
  if (kind == "semantic" && head == heads_.end())
    throw HttpError(404, "no model '" + name + "': the checkpoint of '" + m->name + "' has no semantic head");
  const auto params = parse_infer_params(request_params(req));
  const auto output = param(req, "output", "all");
  if (output != "all" && output != "image" && output != "json" && output != "dicom_seg")
    throw HttpError(400, "output must be image, json, all or dicom_seg");

  // The image: a MONAI session, a datastore id, or an uploaded file.
  ImageRef ref;
  if (req.has_param("session_id")) {
    const auto sid = param(req, "session_id");
    check_id(sid, "session_id");
    std::lock_guard<std::mutex> lock(monai_mutex_);
    const auto it = monai_sessions_.find(sid);
    if (it == monai_sessions_.end()) throw HttpError(404, "no session '" + sid + "' (it may have expired)");
    it->second["last_access_ts"] = seconds_since_epoch();
    ref = upload_image(it->second["path"].get<std::string>());
  } else if (req.has_param("image") && !param(req, "image").empty()) {
    ref = datastore_image(param(req, "image"));
  } else if (req.has_file("file")) {
    const auto& f = req.get_file_value("file");
    const auto ext = image_extension(f.filename);
    if (ext.empty()) throw HttpError(400, "the uploaded 'file' is not a supported image");
    const auto dir = fs::path(state_dir_) / "uploads" / ("infer-" + random_hex(16));
    fs::create_directories(dir);
    write_file_atomic((dir / ("image" + ext)).string(), f.content);
    ref = upload_image((dir / ("image" + ext)).string());
  } else {
    throw HttpError(400, "no image: pass ?image=<datastore id>, ?session_id=, or a 'file'");
  }
  const auto vol = volume(ref);
  json result = {{"label_names", {{params.label.empty() ? std::string("object") : params.label, 1}}}};
  io::LabelMap labels(vol->geometry());
  std::string axis_used = "axial";
  int slice_used = -1;

  if (kind == "semantic") {
    // Every slice through the head; slices already embedded (by clicks, or an
    // earlier run) cost only the head.
    auto e = embeddings(m, ref, io::Axis::kAxial, {});
    const auto& slices = e->slices();
    const auto t0 = Clock::now();
    std::map<int, std::vector<uint16_t>> per_slice;
    for (int z = 0; z < slices.count(); ++z) {
      e->prefetch(z);
      const auto emb = e->get(z);
      const auto orig = emb.original_size(), input = emb.input_size();
      per_slice[z] = head->second->segment(emb.to_npy(), input.height, input.width, orig.height, orig.width,
                                           m->predictor->model().img_size);
    }
    labels = slices.label_map(per_slice);
    segment::describe_semantic_classes(labels, head->second->config().num_classes);
    json names = json::object();
    for (const auto& seg : labels.segments) names[seg.name] = seg.label;
    result["label_names"] = names;
    result["latencies"] = {{"infer", ms_since(t0) / 1000.0}};
  } else if (kind == "automatic") {
    auto e = embeddings(m, ref, io::Axis::kAxial, {});
    const auto& slices = e->slices();
    const int k = static_cast<int>(params.slice.value_or(slices.count() / 2));
    slices.check_slice(k);
    const auto rgb = slices.model_image(k);
    // The model's own AMG thresholds (checkpoint metadata medicosam.amg), else SAM's.
    const auto amg_defaults = segment::read_amg_defaults(m->path);
    segment::AmgOptions amg_options;
    amg_options.pred_iou_thresh = amg_defaults.pred_iou_thresh;
    amg_options.stability_score_thresh = amg_defaults.stability_score_thresh;
    std::vector<segment::AmgMask> masks;
    {
      std::lock_guard<std::mutex> lock(m->encode_mutex);  // generate_masks sets the predictor's image
      masks = segment::generate_masks(*m->predictor, rgb.data.data(), rgb.height, rgb.width, amg_options);
    }
    spdlog::info("automatic masks: {} (pred_iou_thresh {}, stability_score_thresh {}: {})", masks.size(),
                 amg_options.pred_iou_thresh, amg_options.stability_score_thresh, amg_defaults.describe());
    result["amg_thresholds"] = {{"pred_iou_thresh", amg_options.pred_iou_thresh},
                                {"stability_score_thresh", amg_options.stability_score_thresh},
                                {"source", amg_defaults.describe()}};
    labels = slices.label_map({{k, segment::masks_to_label_map(masks, rgb.height, rgb.width)}});
    json names = json::object();
    for (uint16_t l = 1; l <= labels.max_label(); ++l) names["object " + std::to_string(l)] = l;
    result["label_names"] = names;
    result["masks"] = masks.size();
    slice_used = k;
  } else {
    if (params.foreground.empty() && params.background.empty() && !params.roi)
      throw HttpError(400, "no prompt: send \"foreground\" clicks ([[i, j, k], ...]) or a \"roi\"");
    if (params.foreground.empty() && !params.roi)
      throw HttpError(400, "only background clicks: add at least one \"foreground\" click or a \"roi\"");
    // The view the clicks were made on: the patient axis whose slice index all
    // prompts share (2D images: the image).
    std::vector<Voxel> all = params.foreground;
    all.insert(all.end(), params.background.begin(), params.background.end());
    io::Axis axis = io::Axis::kAxial;
    std::shared_ptr<SliceEmbeddings> e;
    int k = -1;
    for (auto a : {io::Axis::kAxial, io::Axis::kCoronal, io::Axis::kSagittal}) {
      auto slices = std::make_shared<segment::VolumeSlices>(vol, a, io::Normalization{});
      std::vector<int> ks;
      for (const auto& v : all) ks.push_back(slices->from_voxel(v).slice);
      if (params.roi && all.empty()) {
        const auto& r = *params.roi;
        const int lo = slices->from_voxel({r[0], r[2], r[4]}).slice, hi = slices->from_voxel({r[1], r[3], r[5]}).slice;
        const int want = params.slice ? static_cast<int>(*params.slice) : (lo + hi) / 2;
        ks.push_back(std::clamp(want, std::min(lo, hi), std::max(lo, hi)));
      }
      if (std::all_of(ks.begin(), ks.end(), [&](int x) { return x == ks[0]; })) {
        axis = a;
        k = ks[0];
        break;
      }
      if (vol->is_2d()) break;
    }
    if (k < 0)
      throw HttpError(400, "the clicks are not on one slice of any axis; a 2D or 3D model needs the clicks of one slice");
    e = embeddings(m, ref, axis, {});
    const auto& slices = e->slices();
    predict::Prompt prompt;
    for (const auto& v : params.foreground) {
      const auto p = slices.from_voxel(v);
      prompt.points.push_back({p.x + 0.5, p.y + 0.5, 1});
    }
    for (const auto& v : params.background) {
      const auto p = slices.from_voxel(v);
      prompt.points.push_back({p.x + 0.5, p.y + 0.5, 0});
    }
    if (params.roi) {
      const auto& r = *params.roi;
      double x0 = 1e18, y0 = 1e18, x1 = -1, y1 = -1;
      for (int64_t i : {r[0], r[1]})
        for (int64_t j : {r[2], r[3]})
          for (int64_t kk : {r[4], r[5]}) {
            const auto s = vol->size();
            const auto p = slices.from_voxel({std::clamp<int64_t>(i, 0, s[0] - 1), std::clamp<int64_t>(j, 0, s[1] - 1),
                                              std::clamp<int64_t>(kk, 0, s[2] - 1)});
            x0 = std::min(x0, p.x), y0 = std::min(y0, p.y), x1 = std::max(x1, p.x + 1), y1 = std::max(y1, p.y + 1);
          }
      prompt.box = predict::Box{x0, y0, x1, y1};
    }
    e->prefetch(k);
    StoredSliceSegmenter seg(e);
    const auto t0 = Clock::now();
    auto mask = segment::segment_from_prompt(seg, k, slices.prompt_to_model(prompt));
    result["latencies"] = {{"infer", ms_since(t0) / 1000.0}};
    slices.paste(labels, k, mask, 1);
    if (kind == "3d" && !mask.empty() && slices.count() > 1) {
      const auto ms = slices.model_size();
      std::vector<segment::BinaryMask> masks(slices.count(), segment::BinaryMask(ms.height, ms.width));
      masks[k] = mask;
      const auto r = segment::segment_mask_in_volume(seg, masks, {k});
      for (int z = r.z_min; z <= r.z_max; ++z) slices.paste(labels, z, masks[z], 1);
      result["z_min"] = r.z_min;
      result["z_max"] = r.z_max;
    }
    axis_used = io::axis_name(axis);
    slice_used = k;
  }
  result["axis"] = axis_used;
  result["slice"] = slice_used;
  int64_t voxels = 0;
  for (int64_t i = 0; i < labels.num_voxels(); ++i) voxels += labels.data()[i] != 0;
  result["voxels"] = voxels;
  if (!result.contains("latencies")) result["latencies"] = json::object();
  result["latencies"]["total"] = ms_since(t_start) / 1000.0;
  if (output == "json") return reply_json(res, result);
  if (output == "dicom_seg") {
    if (vol->format != "DICOM") throw HttpError(400, "output=dicom_seg needs a DICOM image");
    return reply_file(res, write_temp(labels, ".dcm", vol.get(), ref.path), "application/dicom", "result.dcm");
  }
  const std::string ext = params.result_extension == ".seg.nrrd" ? ".nrrd" : params.result_extension;
  auto bytes = write_temp(labels, ext, nullptr, "", params.result_dtype == "uint16");
  const std::string filename = "result" + params.result_extension;
  if (output == "image") return reply_file(res, std::move(bytes), "application/octet-stream", filename);
  reply_multipart(res, result, bytes, filename);
}

void App::put_image(const Request& req, Response& res) {
  const auto id_param = param(req, "image", param(req, "id"));
  if (!req.has_file("file")) throw HttpError(400, "no 'file' in the upload");
  const auto& f = req.get_file_value("file");
  std::string id = id_param;
  if (id.empty()) {
    const auto ext = image_extension(f.filename);
    id = fs::path(f.filename).filename().string();
    if (!ext.empty()) id = id.substr(0, id.size() - ext.size());
  }
  check_id(id, "image id");
  ds_->add_image(id, f.filename, f.content);
  const auto params = request_params(req);
  if (!params.empty()) ds_->set_image_info(id, params);
  spdlog::info("datastore: image '{}' added ({} bytes)", id, f.content.size());
  reply_json(res, {{"image", id}});
}

void App::put_label(const Request& req, Response& res) {
  const auto id = param(req, "image");
  const auto tag = param(req, "tag", "final");
  check_id(id, "image id");
  check_id(tag, "label tag");
  if (!req.has_file("label")) throw HttpError(400, "no 'label' in the upload");
  const auto& f = req.get_file_value("label");
  const auto ref = datastore_image(id);
  const auto vol = volume(ref);
  io::LabelMap labels(vol->geometry());
  if (lower(f.filename).size() >= 4 && ends_with(lower(f.filename), ".bin")) {
    const auto values = decode_bin_label(f.content, vol->size());
    std::copy(values.begin(), values.end(), labels.data());
  } else {
    const auto ext = image_extension(f.filename);
    if (ext.empty() && !ends_with(lower(f.filename), ".seg.nrrd"))
      throw HttpError(400, "the label must be .nii.gz, .nii, .nrrd, .mha or .bin");
    const ScratchPath tmp((fs::path(state_dir_) / "tmp" / ("label-" + random_hex(16) + (ext.empty() ? ".nrrd" : ext))).string());
    write_file_atomic(tmp.path(), f.content);
    const auto up = io::read_label_map(tmp.path());
    if (up.size() != vol->size()) {
      const auto s = up.size(), v = vol->size();
      throw HttpError(400, "the label is " + std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" +
                               std::to_string(s[2]) + ", the image '" + id + "' is " + std::to_string(v[0]) + "x" +
                               std::to_string(v[1]) + "x" + std::to_string(v[2]));
    }
    std::copy(up.data(), up.data() + up.num_voxels(), labels.data());
    labels.segments = up.segments;
  }
  const auto params = request_params(req);
  if (params.contains("label_info") && params["label_info"].is_array()) {
    for (const auto& li : params["label_info"]) {
      if (!li.is_object() || !li.contains("idx") || !li["idx"].is_number_integer()) continue;
      io::SegmentInfo s;
      s.label = static_cast<uint16_t>(li["idx"].get<int>());
      s.name = li.value("name", "");
      labels.segments.push_back(s);
    }
  }
  json info = params;
  info["label_counts"] = json::object();
  for (auto l : labels.labels_present()) info["label_counts"][std::to_string(l)] = labels.count(l);
  ds_->save_label(id, tag, labels, *vol, info);  // DICOMweb: also a DICOM SEG on the PACS
  spdlog::info("datastore: label '{}' of '{}' saved", tag, id);
  reply_json(res, {{"image", id}, {"label", id}, {"tag", tag}});
}

void App::next_sample(const Request& req, Response& res, const std::string& strategy) {
  (void)req;
  if (strategy != "random" && strategy != "first") throw HttpError(404, "no strategy '" + strategy + "'");
  const auto ids = ds_->unlabeled("final");
  if (ids.empty()) return reply_json(res, json::object());
  std::string id = ids.front();
  if (strategy == "random") {
    std::random_device rd;
    id = ids[rd() % ids.size()];
  }
  const auto path = ds_->image_path(id);  // DICOMweb: fetched now, the client asks for it next
  const auto info = ds_->image_info(id);
  reply_json(res, {{"id", id},
                   {"weight", 1.0},
                   // A DICOM series (a folder) is no file Slicer can load: it downloads
                   // GET /datastore/image (NIfTI) under this name instead.
                   {"name", fs::is_directory(path) ? id + ".nii.gz" : info.value("name", id)},
                   {"path", fs::is_directory(path) ? std::string() : path},
                   {"ts", info.value("ts", 0.0)},
                   {"strategy", {{"name", strategy}, {"remaining", ids.size()}}}});
}

void App::put_session(const Request& req, Response& res) {
  const httplib::MultipartFormData* file = nullptr;
  for (const auto& [name, f] : req.files)
    if (!f.filename.empty() && (name == "files" || name == "file")) {
      file = &f;
      break;
    }
  if (!file) throw HttpError(400, "no 'files' in the upload");
  const auto ext = image_extension(file->filename);
  if (ext.empty()) throw HttpError(400, "the uploaded file is not a supported image (.nii.gz, .nrrd, .mha, ...)");
  const auto sid = random_hex(32);
  const auto dir = fs::path(state_dir_) / "uploads" / sid;
  fs::create_directories(dir);
  const auto path = (dir / ("image" + ext)).string();
  write_file_atomic(path, file->content);
  try {
    io::probe_image(path);
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw HttpError(400, std::string("the uploaded image cannot be read: ") + e.what());
  }
  double expiry = 3600;
  if (req.has_param("expiry")) {
    try {
      expiry = std::stod(param(req, "expiry"));
    } catch (const std::exception&) {
      throw HttpError(400, "expiry must be a number of seconds");
    }
  }
  const double now = seconds_since_epoch();
  json info = {{"name", fs::path(file->filename).filename().string()},
               {"path", path},
               {"image", path},
               {"meta", json::object()},
               {"create_ts", now},
               {"last_access_ts", now},
               {"expiry", expiry}};
  {
    std::lock_guard<std::mutex> lock(monai_mutex_);
    monai_sessions_[sid] = info;
  }
  json shown = info;
  shown.erase("path");
  shown["image"] = shown["name"];
  reply_json(res, {{"session_id", sid}, {"session_info", shown}});
}

// --------------------------------------------------------------- native sessions

void App::attach(NativeSession& s) {
  if (s.image) return;
  if (s.meta.empty()) throw HttpError(409, "no image set: POST /api/set_image first");
  const auto m = model(s.meta.value("model", models_.front()->name));
  ImageRef ref = s.meta.value("image", "").empty() ? upload_image(s.meta["upload"].get<std::string>())
                                                   : datastore_image(s.meta["image"].get<std::string>());
  const auto norm = s.meta.value("normalize", "").empty() ? io::Normalization{}
                                                          : io::parse_normalization(s.meta["normalize"].get<std::string>());
  s.embeddings = embeddings(m, ref, io::parse_axis(s.meta.value("axis", "axial")), norm);
  auto seg = std::make_shared<StoredSliceSegmenter>(s.embeddings);
  auto image = std::make_unique<segment::ImageSession>(s.embeddings->slices_ptr(), seg, ref.path);
  std::error_code ec;
  if (fs::exists(s.state_path(), ec)) image->session().restore(s.state_path());
  image->session().set_autosave(s.state_path());
  s.shown = image->display_labels();
  s.image = std::move(image);
}

void App::set_image(const Request& req, Response& res) {
  auto s = lease(req);
  std::lock_guard<std::mutex> lock(s->mutex);
  auto body = request_params(req);
  json meta = {{"model", body.value("model", models_.front()->name)},
               {"axis", body.value("axis", "axial")},
               {"normalize", body.value("normalize", "")}};
  model(meta["model"]);
  io::parse_axis(meta["axis"]);
  if (!meta["normalize"].get<std::string>().empty()) io::parse_normalization(meta["normalize"]);
  if (req.has_file("file")) {
    const auto& f = req.get_file_value("file");
    const auto ext = image_extension(f.filename);
    if (ext.empty()) throw HttpError(400, "the uploaded 'file' is not a supported image (.nii.gz, .nrrd, .mha, .png, ...)");
    const auto path = (fs::path(s->dir) / ("upload" + ext)).string();
    write_file_atomic(path, f.content);
    try {
      io::probe_image(path);
    } catch (const Error& e) {
      std::error_code ec;
      fs::remove(path, ec);
      throw HttpError(400, std::string("the uploaded image cannot be read: ") + e.what());
    }
    meta["upload"] = path;
    meta["image"] = "";
  } else {
    if (!body.contains("image") || !body["image"].is_string()) throw HttpError(400, "set_image needs \"image\": <datastore id> or a 'file' upload");
    meta["image"] = body["image"].get<std::string>();
    ds_->image_path(meta["image"]);  // 404 early
  }
  // A new image: the previous one's state goes.
  std::error_code ec;
  fs::remove(s->state_path(), ec);
  s->image.reset();
  s->meta = meta;
  write_file_atomic(s->meta_path(), meta.dump(2));
  attach(*s);
  const auto& slices = s->embeddings->slices();
  const auto& g = slices.volume().geometry();
  s->embeddings->prefetch(body.value("slice", slices.count() / 2));
  reply_json(res, {{"image", meta["image"]},
                   {"model", meta["model"]},
                   {"axis", io::axis_name(slices.axis())},
                   {"shape", {g.size[0], g.size[1], g.size[2]}},
                   {"spacing", {g.spacing[0], g.spacing[1], g.spacing[2]}},
                   {"slices", slices.count()},
                   {"slice_size", {slices.slice_size().height, slices.slice_size().width}},
                   {"embedded", s->embeddings->available()}});
}

json App::act(NativeSession& s, const json& action) {
  attach(s);
  const auto t0 = Clock::now();
  auto r = s.image->apply(action);  // decode + autosave
  const auto t1 = Clock::now();
  auto now = s.image->display_labels();
  r["region"] = region_update(s.shown, now);
  r["timings_ms"] = {{"segment", std::chrono::duration<double, std::milli>(t1 - t0).count()},
                     {"region", ms_since(t1)}};
  s.shown = std::move(now);
  const auto& st = s.image->session();
  r["undo_depth"] = st.undo_depth();
  r["redo_depth"] = st.redo_depth();
  r["current"] = st.state().current ? json(st.state().current->label) : json(nullptr);
  return r;
}

void App::interact(const Request& req, Response& res, const std::string& what) {
  auto s = lease(req);
  std::lock_guard<std::mutex> lock(s->mutex);
  attach(*s);
  const auto body = request_params(req);
  const auto t0 = Clock::now();
  const auto& slices = s->embeddings->slices();
  auto ensure_object = [&] {
    if (!s->image->session().state().current) s->image->apply({{"action", "new_object"}});
  };
  json r;
  if (what == "point") {
    const auto p = parse_point_request(body);
    int k = p.slice;
    double x = p.x, y = p.y;
    if (p.voxel) {
      const auto sp = slices.from_voxel(*p.voxel);
      k = sp.slice, x = sp.x + 0.5, y = sp.y + 0.5;  // the voxel's centre
    }
    slices.check_slice(k);
    ensure_object();
    r = act(*s, {{"action", "add_point"}, {"slice", k}, {"x", x}, {"y", y}, {"label", p.positive ? 1 : 0}});
    r["slice"] = k;
    s->embeddings->prefetch(k);
  } else if (what == "box") {
    const auto b = parse_box_request(body);
    int k = b.slice;
    std::array<double, 4> box = b.box;
    if (b.voxels) {
      const auto p0 = slices.from_voxel((*b.voxels)[0]), p1 = slices.from_voxel((*b.voxels)[1]);
      if (p0.slice != p1.slice)
        throw HttpError(400, "the box corners lie on different " + std::string(io::axis_name(slices.axis())) +
                                 " slices (" + std::to_string(p0.slice) + ", " + std::to_string(p1.slice) + ")");
      k = p0.slice;
      box = {std::min(p0.x, p1.x), std::min(p0.y, p1.y), std::max(p0.x, p1.x) + 1, std::max(p0.y, p1.y) + 1};
    }
    slices.check_slice(k);
    ensure_object();
    r = act(*s, {{"action", "set_box"}, {"slice", k}, {"box", box}});
    r["slice"] = k;
  } else if (what == "propagate") {
    json a = body;
    a["action"] = "propagate";
    r = act(*s, a);
  } else if (what == "commit") {
    r = act(*s, {{"action", "commit"}, {"overwrite", body.value("overwrite", false)}});
  } else if (what == "new_object") {
    json a = {{"action", "new_object"}, {"discard_current", body.value("discard_current", false)}};
    if (body.contains("name")) a["name"] = body["name"];
    r = act(*s, a);
  } else if (what == "reset") {
    if (s->image->session().state().current) {
      r = act(*s, {{"action", "discard"}});
    } else {
      r = act(*s, {{"action", "undo"}});  // nothing to reset: answer with an empty region
      if (r.value("done", false)) r = act(*s, {{"action", "redo"}});
      r["action"] = "reset";
    }
  } else if (what == "undo" || what == "redo" || what == "discard") {
    r = act(*s, {{"action", what}});
  } else if (what == "edit_object" || what == "delete_object") {
    if (!body.contains("label") || !body["label"].is_number_integer()) throw HttpError(400, "\"label\" (an integer) is required");
    r = act(*s, {{"action", what}, {"label", body["label"]}});
  } else {
    throw HttpError(404, "no action '" + what + "'");
  }
  r["latency_ms"] = ms_since(t0);
  reply_json(res, r);
}

void App::install(httplib::Server& svr) {
  // --- service
  svr.Get(R"(/auth/?)", wrap([this](const Request&, Response& res) {
            reply_json(res, {{"enabled", !opt_.api_key.empty()}, {"client_id", "medicosam"}, {"realm", "medicosam"}});
          }, false));
  svr.Post(R"(/auth/token/?)", wrap([this](const Request& req, Response& res) {
             if (opt_.api_key.empty()) return reply_json(res, {{"access_token", ""}, {"token_type", "bearer"}});
             const auto pw = req.has_file("password") ? form_value(req, "password") : param(req, "password");
             if (pw != opt_.api_key) throw HttpError(401, "wrong password (the server's API key)");
             reply_json(res, {{"access_token", opt_.api_key}, {"token_type", "bearer"}});
           }, false));
  svr.Get(R"(/auth/token/valid/?)", wrap([](const Request&, Response& res) { reply_json(res, {{"valid", true}}); }));
  svr.Get(R"(/api/healthz/?)", wrap([](const Request&, Response& res) { reply_json(res, {{"ok", true}}); }, false));
  svr.Get("/", wrap([this](const Request&, Response& res) {
            if (!opt_.web_dir.empty()) return res.set_redirect("/ui/");
            res.set_content(std::string("medicosam ") + kVersion +
                                " annotation server. MONAI Label clients: use this URL. Native API: /api/ (docs/server.md).\n",
                            "text/plain");
          }, false));
  svr.Get(R"(/info/?)", wrap([this](const Request&, Response& res) { reply_json(res, info()); }));
  svr.Get(R"(/logs/?)", wrap([this](const Request& req, Response& res) {
            int lines = 300;
            try {
              lines = std::clamp(std::stoi(param(req, "lines", "300")), 1, 10000);
            } catch (const std::exception&) {
              throw HttpError(400, "lines must be an integer");
            }
            std::string text;
            for (const auto& l : ring_->last_formatted(static_cast<size_t>(lines))) text += l;
            res.set_content(text, "text/plain");
          }));

  // --- inference
  svr.Post(R"(/infer/([^/]+)/?)", wrap([this](const Request& req, Response& res) { infer(req, res, req.matches[1]); }));

  // --- datastore
  svr.Get(R"(/datastore/?)", wrap([this](const Request& req, Response& res) {
            const auto out = param(req, "output", "stats");
            if (out != "stats" && out != "all" && out != "train") throw HttpError(400, "output must be stats, all or train");
            reply_json(res, ds_->describe(out));
          }));
  auto put_image = wrap([this](const Request& req, Response& res) { this->put_image(req, res); });
  svr.Put(R"(/datastore/?)", put_image);  // Slicer still uses the deprecated form
  svr.Put(R"(/datastore/image/?)", put_image);
  svr.Post(R"(/datastore/image/?)", put_image);
  svr.Delete(R"(/datastore/image/?)", wrap([this](const Request& req, Response& res) {
               const auto id = param(req, "id", param(req, "image"));
               ds_->delete_image(id);
               reply_json(res, {{"image", id}, {"deleted", true}});
             }));
  auto get_image = wrap([this](const Request& req, Response& res) {
    const auto id = param(req, "image", param(req, "id"));
    const auto path = ds_->image_path(id);
    if (fs::is_directory(path)) {
      // A DICOM series goes out as NIfTI on the grid the server works on (as MONAI
      // Label sends series to 3D Slicer), so clicks and labels line up with it.
      const auto vol = volume(datastore_image(id));
      std::string bytes = nifti_bytes(*vol);
      if (req.method == "HEAD") {
        res.set_header("Content-Length", std::to_string(bytes.size()));
        res.status = 200;
        return;
      }
      return reply_file(res, std::move(bytes), "application/octet-stream", id + ".nii.gz");
    }
    if (req.method == "HEAD") {
      res.set_header("Content-Length", std::to_string(fs::file_size(path)));
      res.status = 200;
      return;
    }
    reply_file(res, read_file(path), "application/octet-stream", fs::path(path).filename().string());
  });
  svr.Get(R"(/datastore/image/?)", get_image);
  svr.Get(R"(/datastore/image/info/?)", wrap([this](const Request& req, Response& res) {
            reply_json(res, ds_->image_info(param(req, "image")));
          }));
  svr.Put(R"(/datastore/image/info/?)", wrap([this](const Request& req, Response& res) {
            const auto id = param(req, "image");
            ds_->set_image_info(id, request_params(req));
            reply_json(res, ds_->image_info(id));
          }));
  svr.Put(R"(/datastore/label/?)", wrap([this](const Request& req, Response& res) { put_label(req, res); }));
  svr.Get(R"(/datastore/label/?)", wrap([this](const Request& req, Response& res) {
            const auto id = param(req, "label", param(req, "image"));
            const auto tag = param(req, "tag", "final");
            if (!ds_->has_label(id, tag)) throw HttpError(404, "image '" + id + "' has no label '" + tag + "'");
            reply_file(res, read_file(ds_->label_file(id, tag)), "application/octet-stream", id + ".nii.gz");
          }));
  svr.Delete(R"(/datastore/label/?)", wrap([this](const Request& req, Response& res) {
               const auto id = param(req, "id", param(req, "label", param(req, "image")));
               const auto tag = param(req, "tag", "final");
               ds_->delete_label(id, tag);
               reply_json(res, {{"label", id}, {"tag", tag}, {"deleted", true}});
             }));
  svr.Get(R"(/datastore/label/info/?)", wrap([this](const Request& req, Response& res) {
            reply_json(res, ds_->label_info(param(req, "label", param(req, "image")), param(req, "tag", "final")));
          }));
  svr.Put(R"(/datastore/label/info/?)", wrap([this](const Request& req, Response& res) {
            const auto id = param(req, "label", param(req, "image"));
            const auto tag = param(req, "tag", "final");
            if (!ds_->has_label(id, tag)) throw HttpError(404, "image '" + id + "' has no label '" + tag + "'");
            ds_->set_label_info(id, tag, request_params(req));
            reply_json(res, ds_->label_info(id, tag));
          }));
  svr.Get(R"(/datastore/dataset/?)", wrap([](const Request&, Response&) {
            throw HttpError(501, "dataset download is not offered; fetch images and labels one by one (/datastore/?output=all)");
          }));

  // --- active learning, MONAI sessions, training
  svr.Post(R"(/activelearning/([^/]+)/?)",
           wrap([this](const Request& req, Response& res) { next_sample(req, res, req.matches[1]); }));
  svr.Put(R"(/session/?)", wrap([this](const Request& req, Response& res) { put_session(req, res); }));
  svr.Get(R"(/session/([^/]+)/?)", wrap([this](const Request& req, Response& res) {
            const std::string sid = req.matches[1];
            check_id(sid, "session_id");
            json info;
            {
              std::lock_guard<std::mutex> lock(monai_mutex_);
              const auto it = monai_sessions_.find(sid);
              if (it == monai_sessions_.end()) throw HttpError(404, "no session '" + sid + "'");
              info = it->second;
            }
            if (param(req, "image") == "true")
              return reply_file(res, read_file(info["path"]), "application/octet-stream", info["name"].get<std::string>());
            info.erase("path");
            info["image"] = info["name"];
            reply_json(res, {{"session_id", sid}, {"session_info", info}});
          }));
  svr.Delete(R"(/session/([^/]+)/?)", wrap([this](const Request& req, Response& res) {
               const std::string sid = req.matches[1];
               check_id(sid, "session_id");
               std::lock_guard<std::mutex> lock(monai_mutex_);
               if (!monai_sessions_.erase(sid)) throw HttpError(404, "no session '" + sid + "'");
               std::error_code ec;
               fs::remove_all(fs::path(state_dir_) / "uploads" / sid, ec);
               reply_json(res, {{"session_id", sid}, {"deleted", true}});
             }));
  auto no_training = wrap([](const Request&, Response&) {
    throw HttpError(501, "training from the server is not offered; run `medicosam train --config` on the datastore's final labels");
  });
  svr.Get(R"(/train/?)", wrap([](const Request&, Response& res) {
            reply_json(res, {{"detail", "no training task: this server does not train"}}, 404);
          }));
  svr.Post(R"(/train/.*)", no_training);
  svr.Delete(R"(/train/?)", no_training);
  svr.Post(R"(/scoring/.*)", wrap([](const Request&, Response&) { throw HttpError(501, "no scoring methods are offered"); }));

  // --- native session API
  svr.Get(R"(/api/capabilities/?)", wrap([this](const Request&, Response& res) {
            json models = json::array();
            for (const auto& m : models_) models.push_back({{"name", m->name}, {"architecture", m->predictor->model().architecture}});
            reply_json(res, {{"supported_interactions", {"point", "bbox"}},
                             {"supports_undo", true},
                             {"supports_redo", true},
                             {"supports_propagation", true},
                             {"region_updates", true},
                             {"models", models},
                             {"max_sessions", sessions_->max_sessions()},
                             {"idle_timeout_seconds", sessions_->idle_timeout()},
                             {"version", kVersion}});
          }));
  svr.Post(R"(/api/claim/?)", wrap([this](const Request&, Response& res) {
             const auto s = sessions_->claim();
             reply_json(res, {{"lease_token", s->token},
                              {"idle_timeout_seconds", sessions_->idle_timeout()},
                              {"max_sessions", sessions_->max_sessions()}});
           }));
  svr.Post(R"(/api/release/?)", wrap([this](const Request& req, Response& res) {
             sessions_->release(req.get_header_value("X-Lease-Token"));
             reply_json(res, {{"released", true}});
           }));
  auto heartbeat = wrap([this](const Request& req, Response& res) {
    const auto s = lease(req);
    reply_json(res, {{"remaining_seconds", sessions_->remaining_seconds(*s)}, {"image", s->meta.value("image", "")}});
  });
  svr.Post(R"(/api/heartbeat/?)", heartbeat);
  svr.Get(R"(/api/lease_status/?)", heartbeat);
  svr.Post(R"(/api/set_image/?)", wrap([this](const Request& req, Response& res) { set_image(req, res); }));
  svr.Post(R"(/api/set_slice/?)", wrap([this](const Request& req, Response& res) {
             auto s = lease(req);
             std::lock_guard<std::mutex> lock(s->mutex);
             attach(*s);
             const auto body = request_params(req);
             int k = 0;
             if (body.contains("voxel")) {
               k = s->embeddings->slices().from_voxel(parse_point_request(body).voxel.value()).slice;
             } else {
               if (!body.contains("slice") || !body["slice"].is_number_integer()) throw HttpError(400, "\"slice\" (an integer) or \"voxel\" is required");
               k = body["slice"].get<int>();
             }
             s->embeddings->slices().check_slice(k);
             s->embeddings->prefetch(k);
             reply_json(res, {{"slice", k}, {"embedded", s->embeddings->available()}, {"slices", s->embeddings->count()}});
           }));
  svr.Get(R"(/api/progress/?)", wrap([this](const Request& req, Response& res) {
            auto s = lease(req);
            std::lock_guard<std::mutex> lock(s->mutex);
            attach(*s);
            reply_json(res, {{"embedded", s->embeddings->available()}, {"slices", s->embeddings->count()}});
          }));
  svr.Get(R"(/api/state/?)", wrap([this](const Request& req, Response& res) {
            auto s = lease(req);
            std::lock_guard<std::mutex> lock(s->mutex);
            attach(*s);
            const auto& st = s->image->session();
            json objects = json::array();
            const auto counts = st.label_counts();
            for (const auto& [l, name] : st.state().names)
              objects.push_back({{"label", l}, {"name", name}, {"pixels", counts.count(l) ? counts.at(l) : 0}});
            json cur = nullptr;
            if (st.state().current) cur = {{"label", st.state().current->label}, {"name", st.state().current->name}};
            reply_json(res, {{"image", s->meta.value("image", "")},
                             {"objects", objects},
                             {"current", cur},
                             {"undo_depth", st.undo_depth()},
                             {"redo_depth", st.redo_depth()},
                             {"embedded", s->embeddings->available()},
                             {"slices", s->embeddings->count()}});
          }));
  for (const char* a : {"point", "box", "propagate", "commit", "new_object", "reset", "undo", "redo", "discard",
                        "edit_object", "delete_object"}) {
    const std::string what = a;
    svr.Post("/api/" + what + "/?", wrap([this, what](const Request& req, Response& res) { interact(req, res, what); }));
  }
  svr.Get(R"(/api/labels/?)", wrap([this](const Request& req, Response& res) {  // what the viewer shows
            auto s = lease(req);
            std::lock_guard<std::mutex> lock(s->mutex);
            attach(*s);
            s->shown = s->image->display_labels();
            reply_file(res, write_temp(s->shown, ".nii.gz"), "application/octet-stream", "labels.nii.gz");
          }));
  svr.Get(R"(/api/image/?)", wrap([this](const Request& req, Response& res) {  // the image itself, for a viewer
            auto s = lease(req);
            std::lock_guard<std::mutex> lock(s->mutex);
            attach(*s);
            // NIfTI on the exact voxel grid of the region updates (voxel [i,j,k] = file index),
            // whatever the source format (DICOM series, NRRD, PNG...): one format for every viewer.
            reply_file(res, nifti_bytes(s->embeddings->slices().volume()), "application/octet-stream", "image.nii.gz");
          }));
  svr.Get(R"(/api/export/?)", wrap([this](const Request& req, Response& res) {
            auto s = lease(req);
            std::lock_guard<std::mutex> lock(s->mutex);
            attach(*s);
            const auto format = param(req, "format", "nii.gz");
            if (format != "nii.gz" && format != "nii" && format != "nrrd" && format != "mha" && format != "dcm")
              throw HttpError(400, "format must be nii.gz, nii, nrrd, mha or dcm");
            const auto& slices = s->embeddings->slices();
            const auto bytes = write_temp(s->image->committed_labels(), "." + format, &slices.volume(),
                                          s->meta.value("upload", "").empty() ? ds_->image_path(s->meta["image"])
                                                                               : s->meta["upload"].get<std::string>());
            reply_file(res, bytes, format == "dcm" ? "application/dicom" : "application/octet-stream", "labels." + format);
          }));
  svr.Post(R"(/api/save/?)", wrap([this](const Request& req, Response& res) {
             auto s = lease(req);
             std::lock_guard<std::mutex> lock(s->mutex);
             attach(*s);
             const auto body = request_params(req);
             const auto tag = body.value("tag", "final");
             check_id(tag, "label tag");
             const auto id = s->meta.value("image", "");
             if (id.empty()) throw HttpError(400, "this session's image was uploaded, not from the datastore: use /api/export");
             const auto labels = s->image->committed_labels();
             json names = json::array();
             for (const auto& seg : labels.segments) names.push_back({{"idx", seg.label}, {"name", seg.name}});
             ds_->save_label(id, tag, labels, s->embeddings->slices().volume(),
                             {{"label_info", names}, {"source", "medicosam session"}});
             reply_json(res, {{"image", id}, {"tag", tag}, {"objects", labels.labels_present().size()}});
           }));

  svr.set_error_handler([](const Request&, Response& res) {
    if (res.body.empty()) {
      const char* what = res.status == 404   ? "not found"
                         : res.status == 413 ? "the request is larger than the server accepts (--max-upload)"
                                             : "bad request";
      res.set_content(json{{"detail", what}}.dump(), "application/json");
    }
  });
}

}  // namespace

void run_server(const ServerOptions& options) {
  // SIGINT / SIGTERM are handled by one thread (sigwait): every other thread
  // inherits the blocked mask, so a signal never interrupts a write.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(2000);
  ring->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v\n");
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("medicosam", spdlog::sinks_init_list{console, ring});
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);

  App app(options);
  app.set_ring(ring);
  httplib::Server svr;
  const int workers = std::max(1, options.workers);
  svr.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<size_t>(workers)); };
  svr.set_payload_max_length(static_cast<size_t>(options.max_upload));
  svr.set_read_timeout(options.request_timeout, 0);
  svr.set_write_timeout(options.request_timeout, 0);
  // Idle keep-alive connections close after 5 s: a stop (SIGTERM) waits for
  // them, and clients reconnect on loopback in well under a millisecond.
  svr.set_keep_alive_timeout(5);
  // Headers and body go out in separate writes: without TCP_NODELAY the body
  // waits for the client's delayed ACK (40 ms per click measured).
  svr.set_tcp_nodelay(true);
  static thread_local Clock::time_point request_start;
  svr.set_pre_routing_handler([](const Request& req, Response& res) {
    request_start = Clock::now();
    // Without a length, httplib would read a POST/PUT body until the client
    // closes the connection (a bare `curl -X POST` hangs until the timeout).
    if ((req.method == "POST" || req.method == "PUT" || req.method == "PATCH") &&
        !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      reply_json(res, {{"detail", "send a Content-Length (an empty body is fine: curl -d '')"}}, 411);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_logger([](const Request& req, const Response& res) {
    spdlog::info("{} {} {} {:.1f} ms {}", req.method, req.path, res.status, ms_since(request_start),
                 req.remote_addr);
  });
  app.install(svr);
  if (!options.web_dir.empty()) {
    const auto index = std::filesystem::path(options.web_dir) / "index.html";
    if (!std::filesystem::is_regular_file(index) || !svr.set_mount_point("/ui/", options.web_dir))
      throw InputError("serve: no web UI in " + options.web_dir + " (index.html missing; build the 'web' target)");
    // Static files need no key: they hold no data, and the page asks for the key itself.
    svr.set_file_request_handler([](const Request&, Response& res) { res.set_header("Cache-Control", "no-cache"); });
  }

  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
    if (port < 0) throw InputError("serve: cannot listen on " + options.host);
  } else if (!svr.bind_to_port(options.host, port)) {
    throw InputError("serve: cannot listen on " + options.host + ":" + std::to_string(port) +
                     " (in use, or not an address of this machine)");
  }
  const std::string url = "http://" + options.host + ":" + std::to_string(port);
  spdlog::info("listening on {} (datastore {}, {} model(s), auth {})", url,
               options.studies.url.empty() ? options.datastore : options.studies.url, options.models.size(),
               options.api_key.empty() ? "off" : "on");
  if (options.on_listening) {
    options.on_listening(url);
  } else {
    std::printf("medicosam serve: listening on %s\n", url.c_str());
    std::fflush(stdout);
  }

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (!done) {
      spdlog::info("{} received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      svr.stop();
    }
  });
  std::thread housekeeping([&] {
    while (!done) {
      for (int i = 0; i < 50 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      try {
        app.housekeeping();
      } catch (const std::exception& e) {
        spdlog::warn("housekeeping: {}", e.what());
      }
    }
  });
  svr.listen_after_bind();
  done = true;
  pthread_kill(signal_thread.native_handle(), SIGTERM);  // wake sigwait if no signal came
  signal_thread.join();
  housekeeping.join();
  app.stop();
  spdlog::info("stopped");
}

}  // namespace medicosam::server
