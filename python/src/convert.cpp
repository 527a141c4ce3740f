#include <sstream>

#include "common.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::python {

void check_interrupt() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

py::array to_bool_array(std::vector<uint8_t>&& v, const std::vector<py::ssize_t>& shape) {
  auto* heap = new std::vector<uint8_t>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<uint8_t>*>(p); });
  return py::array(py::dtype::of<bool>(), shape, {}, heap->data(), owner);
}

std::string shape_string(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

namespace {

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

}  // namespace

ImageInput image_input(const py::handle& obj, const std::string& what, bool bgr) {
  if (obj.is_none()) throw InputError(what + ": expected an image array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw InputError(what + ": expected a NumPy array (HxWx3 uint8 RGB or HxW gray)");
  if (!a.dtype().is(py::dtype::of<uint8_t>())) {
    throw InputError(what + ": expected a uint8 image (HxWx3 RGB or HxW gray), got dtype " + dtype_name(a) +
                     "; convert it first, e.g. medicosam.to_uint8(image)");
  }
  int channels = 0;
  if (a.ndim() == 2) {
    channels = 1;
  } else if (a.ndim() == 3 && (a.shape(2) == 3 || a.shape(2) == 1)) {
    channels = static_cast<int>(a.shape(2));
  } else {
    throw InputError(what + ": expected shape (H, W, 3) or (H, W), got " + shape_string(a));
  }
  if (a.shape(0) <= 0 || a.shape(1) <= 0) throw InputError(what + ": empty image of shape " + shape_string(a));
  if (a.shape(0) > (1 << 20) || a.shape(1) > (1 << 20)) {
    throw InputError(what + ": image of shape " + shape_string(a) + " is too large");
  }
  ImageInput in;
  in.height = static_cast<int>(a.shape(0));
  in.width = static_cast<int>(a.shape(1));
  in.channels = channels;
  const bool contiguous = (a.flags() & py::array::c_style) != 0;
  if (bgr && channels == 3) {
    // Reversed channels, as segment_anything does for image_format="BGR".
    py::array_t<uint8_t> rgb({a.shape(0), a.shape(1), py::ssize_t{3}});
    auto src = a.unchecked<uint8_t, 3>();
    auto dst = rgb.mutable_unchecked<3>();
    for (py::ssize_t y = 0; y < src.shape(0); ++y)
      for (py::ssize_t x = 0; x < src.shape(1); ++x)
        for (int c = 0; c < 3; ++c) dst(y, x, c) = src(y, x, 2 - c);
    in.holder = rgb;
  } else if (contiguous) {
    in.holder = a;
  } else {
    in.holder = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(a);
  }
  in.data = static_cast<const uint8_t*>(in.holder.data());
  return in;
}

std::vector<float> mask_input_values(const py::handle& obj, int low_res, const std::string& what) {
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a) throw InputError(what + ": expected a float array of low-res logits");
  const bool ok = a.ndim() >= 2 && a.ndim() <= 4 && a.shape(a.ndim() - 1) == low_res &&
                  a.shape(a.ndim() - 2) == low_res && a.size() == py::ssize_t(low_res) * low_res;
  if (!ok) {
    throw InputError(what + ": expected low-res logits of shape (1, " + std::to_string(low_res) + ", " +
                     std::to_string(low_res) + ") for this model, got " + shape_string(a));
  }
  return std::vector<float>(a.data(), a.data() + a.size());
}

}  // namespace medicosam::python
