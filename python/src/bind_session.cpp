// medicosam.Session: an interactive session on one image or volume with the
// JSON actions of `medicosam session --script` (segment::ImageSession).
#include <chrono>

#include "common.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/image_session.hpp"

namespace medicosam::python {

// bind_volume.cpp
std::shared_ptr<io::Volume> volume_argument(const py::handle& obj, py::object& keep);

namespace {

// Decodes on the model grid of `slices` with a model that others may use in
// between: the slice's embedding (from the cache, or encoded when first
// prompted) is made current before every decoder call. Called with the
// model's mutex held.
class ModelSliceSegmenter : public segment::SliceSegmenter {
 public:
  ModelSliceSegmenter(std::shared_ptr<SamModel> model, std::shared_ptr<const segment::VolumeSlices> slices,
                      std::shared_ptr<segment::EmbeddingCache> cache)
      : model_(std::move(model)), slices_(std::move(slices)), cache_(std::move(cache)) {}
  int num_slices() const override { return slices_->count(); }
  predict::Size2 slice_size() const override { return slices_->model_size(); }
  int low_res_size() const override { return model_->predictor->model().low_res_size; }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask_output) override {
    if (z != current_) {
      if (cache_) {
        embedding_ = cache_->load(z);
      } else {
        const auto img = slices_->model_image(z);
        embedding_ = model_->predictor->encode(img.data.data(), img.height, img.width, 3);
      }
      current_ = z;
    }
    model_->predictor->set_embedding(embedding_);
    return model_->predictor->predict(prompt, multimask_output);
  }

 private:
  std::shared_ptr<SamModel> model_;
  std::shared_ptr<const segment::VolumeSlices> slices_;
  std::shared_ptr<segment::EmbeddingCache> cache_;
  int current_ = -1;
  predict::Embedding embedding_;
};

py::object json_to_py(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }
nlohmann::json py_to_json(const py::handle& o, const std::string& what) {
  std::string text = py::isinstance<py::str>(o) ? o.cast<std::string>()
                                                : py::module_::import("json").attr("dumps")(o).cast<std::string>();
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(what + " is not valid JSON: " + e.what());
  }
}

std::shared_ptr<io::Volume> label_volume(const io::LabelMap& labels) {
  return std::make_shared<io::Volume>(labels.to_volume(io::PixelType::kUInt16));
}

class PySession {
 public:
  PySession(py::object model, const py::handle& image, const py::object& cache, const std::string& axis,
            const std::string& normalize, const std::string& source_path, bool progress)
      : model_(model_of(model, "Session(model)")) {
    std::string source = source_path;
    if (py::isinstance<py::str>(image) || py::hasattr(image, "__fspath__")) {
      const auto path = py::module_::import("os").attr("fspath")(image).cast<std::string>();
      py::gil_scoped_release nogil;
      volume_ = std::make_shared<io::Volume>(io::read_image(path));
      if (source.empty()) source = path;
    } else {
      volume_ = volume_argument(image, volume_obj_);
    }
    const auto norm = io::parse_normalization(normalize.empty() ? "minmax" : normalize);
    const auto ax = io::parse_axis(axis);
    slices_ = std::make_shared<segment::VolumeSlices>(std::shared_ptr<const io::Volume>(volume_), ax, norm);
    if (!cache.is_none()) {
      const auto dir = py::module_::import("os").attr("fspath")(cache).cast<std::string>();
      {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(model_->mutex);
        cache_ = std::make_shared<segment::EmbeddingCache>(segment::open_cache(*model_->predictor, *slices_, dir));
      }
      embed_missing(progress);
    }
    segmenter_ = std::make_shared<ModelSliceSegmenter>(model_, slices_, cache_);
    session_ = std::make_unique<segment::ImageSession>(slices_, segmenter_, source);
  }

  py::object apply(const py::handle& action) {
    const auto j = py_to_json(action, "action");
    nlohmann::json r;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model_->mutex);
      r = session_->apply(j);
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    return json_to_py(r);
  }

  py::list run(const py::handle& actions) {
    auto j = py_to_json(actions, "actions");
    if (j.is_object() && j.contains("actions")) j = j["actions"];
    if (!j.is_array()) throw InputError("actions: expected a list of actions");
    py::list out;
    for (size_t i = 0; i < j.size(); ++i) {
      nlohmann::json r;
      try {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(model_->mutex);
        r = session_->apply(j[i]);
      } catch (const Error& e) {  // the CLI's wording for scripts
        throw InputError("action " + std::to_string(i + 1) + ": " + e.what());
      }
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      out.append(json_to_py(r));
    }
    return out;
  }

  std::shared_ptr<io::Volume> committed() const { return label_volume(session_->committed_labels()); }
  std::shared_ptr<io::Volume> display() const { return label_volume(session_->display_labels()); }
  void export_labels(const std::string& path) const {
    py::gil_scoped_release nogil;
    session_->export_labels(path);
  }
  py::array current_mask(int z) const {
    slices_->check_slice(z);
    auto m = session_->session().current_mask(z);
    const auto ss = slices_->slice_size();
    if (m.data.empty()) return to_bool_array(std::vector<uint8_t>(size_t(ss.height) * ss.width, 0), {ss.height, ss.width});
    m = slices_->mask_to_slice(m);
    return to_bool_array(std::move(m.data), {m.height, m.width});
  }
  py::dict label_counts() const {
    py::dict d;
    for (const auto& [label, n] : session_->session().label_counts()) d[py::int_(label)] = n;
    return d;
  }
  bool undo() { return session_->session().undo(); }
  bool redo() { return session_->session().redo(); }
  void set_autosave(const std::string& path) { session_->session().set_autosave(path); }
  void restore(const std::string& path) { session_->session().restore(path); }
  py::object state() const { return json_to_py(session_->session().to_json()); }
  int num_slices() const { return slices_->count(); }
  py::tuple slice_size() const { return py::make_tuple(slices_->slice_size().height, slices_->slice_size().width); }
  py::object volume() const { return volume_obj_.is_none() ? py::cast(volume_) : volume_obj_; }

 private:
  void embed_missing(bool progress) {
    py::gil_scoped_release nogil;
    std::vector<int> todo;
    for (int z = 0; z < slices_->count(); ++z)
      if (!cache_->has(z)) todo.push_back(z);
    if (!todo.empty()) {
      Progress bar(slices_->count(), "embedding " + std::to_string(slices_->count()) + " slices", progress,
                   slices_->count() - static_cast<int64_t>(todo.size()));
      for (int z : todo) {
        check_interrupt();
        const auto img = slices_->model_image(z);
        predict::Embedding e;
        {
          std::lock_guard<std::mutex> lock(model_->mutex);
          e = model_->predictor->encode(img.data.data(), img.height, img.width, 3);
        }
        cache_->store(z, e);
        bar.advance();
      }
      bar.finish();
    }
    if (!cache_->complete()) cache_->mark_complete();
  }

  std::shared_ptr<SamModel> model_;
  py::object volume_obj_ = py::none();
  std::shared_ptr<io::Volume> volume_;
  std::shared_ptr<segment::VolumeSlices> slices_;
  std::shared_ptr<segment::EmbeddingCache> cache_;
  std::shared_ptr<ModelSliceSegmenter> segmenter_;
  std::unique_ptr<segment::ImageSession> session_;
};

}  // namespace

void bind_session(py::module_& m) {
  py::class_<PySession>(m, "Session",
                        "An interactive session on one image or volume: the JSON actions of `medicosam session "
                        "--script` (docs/volumes.md) with coordinates in slice pixels, undo/redo, autosave.")
      .def(py::init<py::object, py::handle, py::object, std::string, std::string, std::string, bool>(),
           py::arg("model"), py::arg("image"), py::arg("cache") = py::none(), py::arg("axis") = "axial",
           py::arg("normalize") = "minmax", py::arg("source_path") = "", py::arg("progress") = true,
           "image: a path, a Volume or an array; cache: an embedding cache folder (else slices are encoded "
           "when first prompted).")
      .def("apply", &PySession::apply, py::arg("action"), "Applies one action (dict or JSON text); returns its result.")
      .def("run", &PySession::run, py::arg("actions"), "Applies a list of actions; returns their results.")
      .def("committed_labels", &PySession::committed, "uint16 label Volume on the volume's geometry.")
      .def("display_labels", &PySession::display, "Committed labels plus the current object.")
      .def("export", &PySession::export_labels, py::arg("path"),
           "Writes the committed labels (.nii.gz/.nii/.nrrd/.mha, .png for 2D, .dcm for DICOM input).")
      .def("current_mask", &PySession::current_mask, py::arg("slice"), "The current object on a slice (bool).")
      .def("label_counts", &PySession::label_counts)
      .def("undo", &PySession::undo)
      .def("redo", &PySession::redo)
      .def("set_autosave", &PySession::set_autosave, py::arg("path"))
      .def("restore", &PySession::restore, py::arg("path"))
      .def_property_readonly("state", &PySession::state)
      .def_property_readonly("num_slices", &PySession::num_slices)
      .def_property_readonly("slice_size", &PySession::slice_size)
      .def_property_readonly("volume", &PySession::volume);
}

}  // namespace medicosam::python
