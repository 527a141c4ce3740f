// medicosam.load / Sam / SamPredictor / ImageEmbedding: segment_anything's
// predictor API over medicosam::predict::SamPredictor.
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <type_traits>

#include "common.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::python {
namespace {

// PredictorOptions gains `precision` with the speed work; until then only the
// values that mean today's behaviour are accepted.
template <typename T, typename = void>
struct HasPrecision : std::false_type {};
template <typename T>
struct HasPrecision<T, std::void_t<decltype(std::declval<T&>().precision)>> : std::true_type {};

template <typename Options>
void set_precision(Options& o, const std::string& precision) {
  if constexpr (HasPrecision<Options>::value) {
    o.precision = precision;
  } else {
    if (precision != "auto" && precision != "fp32") {
      throw InputError("precision '" + precision + "': this build supports only 'auto' and 'fp32'");
    }
  }
}

std::shared_ptr<SamModel> load_model(const std::string& path, const std::string& device, const std::string& precision,
                                      int threads) {
  if (device != "cpu" && device != "cuda" && device.rfind("cuda:", 0) != 0) {
    throw InputError("device '" + device + "': expected 'cpu' or 'cuda'");
  }
  if (threads < 0) throw InputError("threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  predict::PredictorOptions o;
  o.threads = threads;
  o.device = device;
  set_precision(o, precision);
  auto model = std::make_shared<SamModel>();
  {
    py::gil_scoped_release nogil;
    model->predictor = std::make_unique<predict::SamPredictor>(path, o);
  }
  model->path = path;
  model->device = device;
  model->precision = precision;
  model->threads = threads;
  return model;
}

template <typename Summary>
std::string resolved_precision(const Summary& s, const std::string& requested) {
  if constexpr (HasPrecision<Summary>::value) {
    return s.precision;
  } else {
    return requested == "auto" ? "fp32" : requested;
  }
}

py::dict model_info(const SamModel& m) {
  const auto& s = m.predictor->model();
  py::dict d;
  d["path"] = s.path;
  d["format"] = s.format;
  d["layout"] = s.layout;
  d["architecture"] = s.architecture;
  d["parameters"] = s.parameters;
  d["img_size"] = s.img_size;
  d["embedding_size"] = s.embedding_size;
  d["embedding_channels"] = s.embedding_channels;
  d["low_res_size"] = s.low_res_size;
  d["device"] = m.device;
  d["precision"] = resolved_precision(s, m.precision);
  return d;
}

py::tuple size_tuple(predict::Size2 s) { return py::make_tuple(s.height, s.width); }

predict::Size2 size_from(const py::handle& obj, const std::string& what) {
  try {
    auto v = obj.cast<std::vector<int64_t>>();
    if (v.size() == 2 && v[0] > 0 && v[1] > 0 && v[0] < (1 << 20) && v[1] < (1 << 20)) {
      return {static_cast<int>(v[0]), static_cast<int>(v[1])};
    }
  } catch (const py::cast_error&) {
  }
  throw InputError(what + ": expected (height, width) with positive integers, got " +
                   py::repr(obj).cast<std::string>());
}

// The features of an embedding as float32 NumPy (1, C, g, g).
py::array embedding_array(const predict::Embedding& e) {
  NpyArray a;
  {
    py::gil_scoped_release nogil;
    a = e.to_npy();
  }
  std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
  std::vector<float> values(a.numel());
  std::memcpy(values.data(), a.data.data(), a.data.size());
  return to_array(std::move(values), shape);
}

predict::Embedding embedding_from_array(const py::handle& obj, predict::Size2 original,
                                        std::optional<predict::Size2> input, int img_size) {
  py::array a = py::array::ensure(obj);
  if (!a) throw InputError("set_embedding: expected a float array (1, C, g, g)");
  NpyArray n;
  if (a.dtype().is(py::dtype::of<float>()) || a.dtype().kind() != 'f' || a.itemsize() != 2) {
    auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    n.type = NpyType::kFloat32;
    n.data.assign(reinterpret_cast<const uint8_t*>(f.data()), reinterpret_cast<const uint8_t*>(f.data()) + f.nbytes());
  } else {  // float16 as stored by `embed --fp16` caches
    auto c = py::array::ensure(a, py::array::c_style);
    n.type = NpyType::kFloat16;
    n.data.assign(static_cast<const uint8_t*>(c.data()), static_cast<const uint8_t*>(c.data()) + c.nbytes());
  }
  for (py::ssize_t i = 0; i < a.ndim(); ++i) n.shape.push_back(a.shape(i));
  if (n.shape.size() == 3) n.shape.insert(n.shape.begin(), 1);
  if (n.shape.size() != 4 || n.shape[0] != 1) {
    throw InputError("set_embedding: expected features of shape (1, C, g, g), got " + shape_string(a));
  }
  const auto in = input ? *input : predict::preprocess_shape(original.height, original.width, img_size);
  return predict::Embedding::from_npy(n, original, in);
}

// One SamPredictor per image: its own embedding, the shared model.
class PySamPredictor {
 public:
  explicit PySamPredictor(py::object model) : model_obj_(model), model_(model_of(model, "SamPredictor(model)")) {}

  py::object model() const { return model_obj_; }

  void set_image(const py::handle& image, const std::string& image_format) {
    if (image_format != "RGB" && image_format != "BGR") {
      throw InputError("image_format '" + image_format + "': expected 'RGB' or 'BGR'");
    }
    const auto in = image_input(image, "set_image", image_format == "BGR");
    predict::Embedding e;
    {
      py::gil_scoped_release nogil;
      e = model_->predictor->encode(in.data, in.height, in.width, in.channels);
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    embedding_ = std::move(e);
  }

  void set_embedding(const py::handle& features, const py::object& original_size, const py::object& input_size) {
    predict::Embedding e;
    if (py::isinstance<predict::Embedding>(features)) {
      e = features.cast<predict::Embedding>();
      if (!original_size.is_none() || !input_size.is_none()) {
        throw InputError("set_embedding: original_size/input_size come with an ImageEmbedding; pass only it");
      }
    } else {
      if (original_size.is_none()) {
        throw InputError("set_embedding: original_size=(height, width) of the image is required with an array");
      }
      std::optional<predict::Size2> in;
      if (!input_size.is_none()) in = size_from(input_size, "set_embedding input_size");
      e = embedding_from_array(features, size_from(original_size, "set_embedding original_size"), in,
                               model_->predictor->model().img_size);
    }
    {
      // Validates the embedding against the model (shape, sizes).
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model_->mutex);
      model_->predictor->set_embedding(e);
    }
    embedding_ = std::move(e);
  }

  void reset_image() { embedding_ = predict::Embedding(); }
  bool is_image_set() const { return !embedding_.empty(); }
  py::object original_size() const {
    return embedding_.empty() ? py::object(py::none()) : py::object(size_tuple(embedding_.original_size()));
  }
  py::object input_size() const {
    return embedding_.empty() ? py::object(py::none()) : py::object(size_tuple(embedding_.input_size()));
  }
  const predict::Embedding& require_embedding() const {
    if (embedding_.empty()) throw Error("An image must be set with .set_image(...) before mask prediction.");
    return embedding_;
  }
  py::array image_embedding() const {
    if (embedding_.empty()) throw Error("An image must be set with .set_image(...) to generate an embedding.");
    return embedding_array(embedding_);
  }
  const predict::Embedding& embedding() const { return require_embedding(); }

  // Per-call seconds of the C++ API alone (set_embedding + predict, as each
  // Python predict call does), for measuring the bindings' overhead.
  std::vector<double> time_cpp_predict(double x, double y, bool multimask, int repeats) {
    const auto& emb = require_embedding();
    predict::Prompt prompt;
    prompt.points.push_back({x, y, 1});
    std::vector<double> out;
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(model_->mutex);
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      model_->predictor->set_embedding(emb);
      auto p = model_->predictor->predict(prompt, multimask, false);
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

  py::tuple predict(const py::object& point_coords, const py::object& point_labels, const py::object& box,
                    const py::object& mask_input, bool multimask_output, bool return_logits) {
    const auto& emb = require_embedding();
    predict::Prompt prompt;
    if (!point_coords.is_none()) {
      if (point_labels.is_none()) throw InputError("point_labels must be supplied if point_coords is supplied.");
      auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(point_coords);
      auto l = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(point_labels);
      if (!c || c.ndim() != 2 || c.shape(1) != 2) {
        throw InputError("point_coords: expected shape (N, 2) with x, y in image pixels, got " +
                         (c ? shape_string(c) : std::string("a non-numeric value")));
      }
      if (!l || l.ndim() != 1 || l.shape(0) != c.shape(0)) {
        throw InputError("point_labels: expected shape (" + std::to_string(c.shape(0)) + ",) to match point_coords, got " +
                         (l ? shape_string(l) : std::string("a non-numeric value")));
      }
      for (py::ssize_t i = 0; i < c.shape(0); ++i) {
        const double x = c.at(i, 0), y = c.at(i, 1), lab = l.at(i);
        if (!std::isfinite(x) || !std::isfinite(y)) {
          throw InputError("point_coords[" + std::to_string(i) + "] is not finite");
        }
        if (lab != 0 && lab != 1) {
          throw InputError("point_labels[" + std::to_string(i) + "] = " + py::repr(py::float_(lab)).cast<std::string>() +
                           ": labels must be 1 (object) or 0 (background)");
        }
        prompt.points.push_back({x, y, static_cast<int>(lab)});
      }
    } else if (!point_labels.is_none()) {
      throw InputError("point_labels given without point_coords");
    }
    if (!box.is_none()) {
      auto b = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(box);
      if (!b || b.size() != 4 || b.ndim() > 2 || (b.ndim() == 2 && b.shape(0) != 1)) {
        throw InputError("box: expected shape (4,) as x0, y0, x1, y1 in image pixels, got " +
                         (b ? shape_string(b) : std::string("a non-numeric value")));
      }
      const double* v = b.data();
      for (int i = 0; i < 4; ++i)
        if (!std::isfinite(v[i])) throw InputError("box is not finite");
      prompt.box = predict::Box{v[0], v[1], v[2], v[3]};
    }
    const int L = model_->predictor->model().low_res_size;
    if (!mask_input.is_none()) prompt.mask_input = mask_input_values(mask_input, L, "mask_input");
    if (prompt.empty()) {
      throw InputError("no prompt given: pass point_coords + point_labels, a box or a mask_input");
    }
    predict::Prediction p;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model_->mutex);
      model_->predictor->set_embedding(emb);
      p = model_->predictor->predict(prompt, multimask_output, return_logits);
    }
    return prediction_tuple(std::move(p), return_logits);
  }

 private:
  static py::tuple prediction_tuple(predict::Prediction&& p, bool logits) {
    const py::ssize_t C = p.num_masks, H = p.height, W = p.width, L = p.low_res_size;
    py::object masks = logits ? py::object(to_array(std::move(p.logits), {C, H, W}))
                              : py::object(to_bool_array(std::move(p.masks), {C, H, W}));
    return py::make_tuple(masks, to_array(std::move(p.iou_predictions), {C}),
                          to_array(std::move(p.low_res_logits), {C, L, L}));
  }

  py::object model_obj_;
  std::shared_ptr<SamModel> model_;
  predict::Embedding embedding_;
};

}  // namespace

std::shared_ptr<SamModel> model_of(const py::handle& obj, const std::string& what) {
  if (py::isinstance<SamModel>(obj)) return obj.cast<std::shared_ptr<SamModel>>();
  if (py::hasattr(obj, "model")) {
    py::object inner = obj.attr("model");
    if (py::isinstance<SamModel>(inner)) return inner.cast<std::shared_ptr<SamModel>>();
  }
  throw InputError(what + ": expected a medicosam.Sam (from medicosam.load) or a medicosam.SamPredictor, got " +
                   py::repr(py::type::of(obj)).cast<std::string>());
}

void bind_predictor(py::module_& m) {
  py::class_<SamModel, std::shared_ptr<SamModel>>(m, "Sam", "A loaded SAM-family model (medicosam.load).")
      .def_property_readonly("info", &model_info, "Checkpoint format, architecture, sizes (dict).")
      .def_property_readonly("device", [](const SamModel& s) { return s.device; })
      .def_property_readonly("path", [](const SamModel& s) { return s.path; })
      .def_property_readonly("image_format", [](const SamModel&) { return "RGB"; })
      .def_property_readonly("mask_threshold", [](const SamModel&) { return 0.0; })
      .def_property_readonly("img_size", [](const SamModel& s) { return s.predictor->model().img_size; })
      .def("__repr__", [](const SamModel& s) {
        const auto& i = s.predictor->model();
        return "<medicosam.Sam " + i.architecture + " from '" + s.path + "' on " + s.device + ">";
      });

  m.def("_load", &load_model, py::arg("path"), py::arg("device") = "cpu", py::arg("precision") = "auto",
        py::arg("threads") = 0);

  py::class_<predict::Embedding>(m, "ImageEmbedding",
                                 "An image embedding and the sizes needed to decode against it.")
      .def_property_readonly("features", &embedding_array, "float32 (1, C, g, g) (a copy).")
      .def_property_readonly("original_size", [](const predict::Embedding& e) { return size_tuple(e.original_size()); })
      .def_property_readonly("input_size", [](const predict::Embedding& e) { return size_tuple(e.input_size()); })
      .def_property_readonly("shape", [](const predict::Embedding& e) { return e.shape(); });

  py::class_<PySamPredictor>(m, "SamPredictor",
                             "segment_anything.SamPredictor's API: set_image once, predict many prompts.")
      .def(py::init<py::object>(), py::arg("sam_model"))
      .def_property_readonly("model", &PySamPredictor::model)
      .def("set_image", &PySamPredictor::set_image, py::arg("image"), py::arg("image_format") = "RGB",
           "Encodes an HxWx3 uint8 image (or HxW gray).")
      .def("set_embedding", &PySamPredictor::set_embedding, py::arg("features"), py::arg("original_size") = py::none(),
           py::arg("input_size") = py::none(),
           "Makes a precomputed embedding current: an ImageEmbedding, or a (1, C, g, g) array with the "
           "original image's (height, width).")
      .def("predict", &PySamPredictor::predict, py::arg("point_coords") = py::none(),
           py::arg("point_labels") = py::none(), py::arg("box") = py::none(), py::arg("mask_input") = py::none(),
           py::arg("multimask_output") = true, py::arg("return_logits") = false,
           "Returns (masks CxHxW bool, iou_predictions C float32, low_res_logits CxLxL float32).")
      .def("get_image_embedding", &PySamPredictor::image_embedding, "float32 (1, C, g, g) NumPy array.")
      .def("get_embedding", &PySamPredictor::embedding, "The current ImageEmbedding (no copy).")
      .def("reset_image", &PySamPredictor::reset_image)
      .def("_time_cpp_predict", &PySamPredictor::time_cpp_predict)
      .def_property_readonly("is_image_set", &PySamPredictor::is_image_set)
      .def_property_readonly("original_size", &PySamPredictor::original_size)
      .def_property_readonly("input_size", &PySamPredictor::input_size)
      .def_property_readonly("features", &PySamPredictor::image_embedding)
      .def_property_readonly("device", [](const PySamPredictor& p) { return model_of(p.model(), "")->device; });
}

}  // namespace medicosam::python
