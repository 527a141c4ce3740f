#pragma once
// Shared pieces of the Python bindings: the model object shared by predictors,
// NumPy conversions (zero-copy where layouts allow), Ctrl-C checks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "medicosam/predict/predictor.hpp"

namespace medicosam::python {

namespace py = pybind11;

// A loaded model (Python `medicosam.Sam`). The C++ SamPredictor also holds a
// current embedding; every Python predictor keeps its own embedding and sets it
// under `mutex` for each call, so several predictors (and threads) can share
// one model.
struct SamModel {
  std::unique_ptr<predict::SamPredictor> predictor;
  std::mutex mutex;
  std::string path;
  std::string device;
  std::string precision;
  int threads = 0;
};

// Raises KeyboardInterrupt (as py::error_already_set) if Ctrl-C was pressed.
// Call without the GIL, between steps of long work.
void check_interrupt();

// Moves `v` into a NumPy array of `shape` (C order) owned by a capsule: no copy.
template <typename T>
py::array_t<T> to_array(std::vector<T>&& v, const std::vector<py::ssize_t>& shape) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, heap->data(), owner);
}

// Same for 0/1 bytes viewed as numpy bool.
py::array to_bool_array(std::vector<uint8_t>&& v, const std::vector<py::ssize_t>& shape);

// "(3, 4)" for messages.
std::string shape_string(const py::array& a);

// An 8-bit image as the model takes it: HxWx3 RGB (or HxW / HxWx1 gray),
// C-contiguous. Keeps `holder` (the original array when it already had that
// layout, a contiguous copy otherwise) alive while `data` is used.
struct ImageInput {
  py::array holder;
  const uint8_t* data = nullptr;
  int height = 0, width = 0, channels = 0;
};
// `what` names the argument in messages; `bgr` flips BGR to RGB (a copy).
ImageInput image_input(const py::handle& obj, const std::string& what, bool bgr = false);

// Low-res logits given as (L, L), (1, L, L) or (1, 1, L, L).
std::vector<float> mask_input_values(const py::handle& obj, int low_res, const std::string& what);

void bind_predictor(py::module_& m);
void bind_amg(py::module_& m);
void bind_volume(py::module_& m);
void bind_session(py::module_& m);

// The model behind a Python object: a Sam, or anything with a `.model` Sam
// (a SamPredictor), as micro_sam passes predictors where SAM takes models.
std::shared_ptr<SamModel> model_of(const py::handle& obj, const std::string& what);

}  // namespace medicosam::python
